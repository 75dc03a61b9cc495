"""A simulated IEC 60870-5-104 outstation (RTU / plant gateway) on :class:`DeviceServer`.

Serves a configurable point list (IOA -> type, quantity, unit, scale) from a ValueSource and energy/carbon
:class:`Counter` registers: STARTDT/STOPDT/TESTFR, general interrogation (actcon, points with COT 20,
actterm), counter interrogation (COT 37, freeze/reset), clock sync (sets the :class:`DeviceClock`), and
spontaneous time-tagged measured values while data transfer is active, all through the sans-IO
:class:`~carbonflow.protocols.iec104.link.Link` so k/w and t1..t3 are the protocol's own.  With
``background_s`` a background scan (COT 2, untagged) repeats every measured point not sent for that long.

Counter acquisition (IEC 60870-5-101 §7.4.7 modes): with ``freeze_period_s`` the RTU freezes its
integrated totals at every multiple of that period of ITS OWN clock (UTC epoch) and sends each freeze
spontaneously (mode A) as ``M_IT_TB_1``, COT 3, tagged with the freeze time and the freeze's BCR
sequence number; freezes made while no master listens are kept (the last :data:`FREEZE_LOG`) and sent
when one starts data transfer.  ``C_CI_NA_1`` with FRZ=1 freezes now (mode C), FRZ=0 returns the last
freeze (periodic or commanded) as ``M_IT_TB_1`` with its freeze time, COT 37 - or, before any freeze,
the registers now tagged now.  The value frozen is the register at the boundary itself, however late the
RTU notices it.  Without a freeze period the RTU behaves as before: FRZ=1 freezes for the next read only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from carbonflow.devices.base import (
    Connection,
    Counter,
    DeviceClock,
    DeviceServer,
    Faults,
    StaticSource,
    ValueSource,
)
from carbonflow.devices.freeze import next_boundary
from carbonflow.protocols import ProtocolError
from carbonflow.protocols.iec104 import apci, asdu
from carbonflow.protocols.iec104.asdu import TIME_TAGGED, TYPE_IDS, Asdu, Cause, InformationObject
from carbonflow.protocols.iec104.cp56time import CP56Time2a
from carbonflow.protocols.iec104.link import AsduReceived, Link, LinkConfig, LinkTimeout, Started

log = logging.getLogger(__name__)

BROADCAST_ADDRESS = 0xFFFF
MEASURED_TYPES = {"M_ME_NA_1", "M_ME_NB_1", "M_ME_NC_1", "M_ME_TD_1", "M_ME_TE_1", "M_ME_TF_1"}
COUNTER_TYPES = {"M_IT_NA_1", "M_IT_TB_1"}
FROZEN_TYPE = "M_IT_TB_1"  # frozen totals always go out with their freeze time
FREEZE_LOG = 96  # freezes an RTU keeps for a master that is not listening (a day of 15-minute freezes)


@dataclass(frozen=True)
class Freeze:
    """One freeze of the integrated totals: when (device clock), its BCR sequence number, and per IOA the
    value and quality flags frozen.  ``number`` counts freezes since start (0, 1, ...)."""

    number: int
    time: datetime
    sequence: int
    values: dict[int, tuple[Decimal, frozenset[str]]]
    periodic: bool = True


@dataclass(frozen=True)
class PointSpec:
    """One point of the RTU's list.

    ``scale``: engineering units per count for scaled values and counters (``0.1`` kV -> 2205 = 220.5 kV),
    the full-scale value for normalised ones (wire = value / full scale), a divisor for floats (usually 1).
    ``deadband``: spontaneous transmission only when the value moved by more than this (engineering units).
    """

    ioa: int
    type_name: str
    quantity: str
    unit: str
    scale: Decimal = Decimal(1)
    deadband: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.type_name not in MEASURED_TYPES | COUNTER_TYPES:
            known = ", ".join(sorted(MEASURED_TYPES | COUNTER_TYPES))
            raise ValueError(f"point {self.ioa}: type {self.type_name} not served (use one of {known})")
        if not 1 <= self.ioa <= asdu.MAX_IOA:
            raise ValueError(f"point IOA {self.ioa} outside 1..{asdu.MAX_IOA}")
        if Decimal(self.scale) <= 0:
            raise ValueError(f"point {self.ioa}: scale must be positive")

    @property
    def is_counter(self) -> bool:
        return self.type_name in COUNTER_TYPES


def points_from_table(rows: Iterable[Mapping[str, object]]) -> list[PointSpec]:
    """Point list from configuration rows ``{ioa, type, quantity, unit, scale?, deadband?}``."""
    return [
        PointSpec(
            ioa=int(str(row["ioa"]), 0),
            type_name=str(row["type"]),
            quantity=str(row["quantity"]),
            unit=str(row.get("unit", "")),
            scale=Decimal(str(row.get("scale", "1"))),
            deadband=Decimal(str(row.get("deadband", "0"))),
        )
        for row in rows
    ]


class Iec104Rtu(DeviceServer):
    protocol = "iec104"

    def __init__(
        self,
        name: str,
        points: Iterable[PointSpec],
        source: ValueSource,
        counters: Mapping[str, Counter] | None = None,
        common_address: int = 1,
        link_config: LinkConfig | None = None,
        cycle_s: float = 1.0,
        station_tz: tzinfo = UTC,
        send_end_of_init: bool = True,
        faults: Faults | None = None,
        clock: DeviceClock | None = None,
        freeze_period_s: int | None = None,
        background_s: float | None = None,
    ) -> None:
        super().__init__(name, faults, clock)
        if freeze_period_s is not None and freeze_period_s <= 0:
            raise ValueError(f"freeze_period_s must be positive, got {freeze_period_s}")
        if background_s is not None and background_s <= 0:
            raise ValueError(f"background_s must be positive, got {background_s}")
        self.background_s = background_s
        self.points = {point.ioa: point for point in points}
        self.source = source
        self.counters = dict(counters or {})
        self.common_address = common_address
        self.link_config = link_config or LinkConfig()
        self.cycle_s = cycle_s
        self.station_tz = station_tz
        self.send_end_of_init = send_end_of_init
        self.freeze_sequence = 0  # BCR sequence number, advanced by each freeze
        self._frozen: dict[int, tuple[Decimal, frozenset[str]]] | None = None
        self.freeze_period_s = freeze_period_s
        self.freezes: deque[Freeze] = deque(maxlen=FREEZE_LOG)  # newest last
        self._freeze_count = 0
        self._next_freeze: datetime | None = None
        self._freezes_sent = -1  # number of the newest freeze queued to any master
        self.clock_syncs = 0
        self.connections_accepted = 0

    def counter_registers(self) -> dict[str, Counter]:
        return dict(self.counters)

    def _set_counters(self, counters: Mapping[str, Counter]) -> None:
        self.counters.update(counters)

    # -- reading points ---------------------------------------------------------------------------
    def wire_value(self, point: PointSpec, t: datetime) -> tuple[Decimal, frozenset[str]]:
        """The value as transmitted (after scale and type rounding) and its quality flags."""
        try:
            if point.is_counter:
                engineering = self.counters[point.quantity].value(t)
            else:
                number = self.source.read(point.quantity, t)
                if not math.isfinite(number):
                    return Decimal(0), frozenset({"IV"})
                engineering = Decimal(repr(number))
        except (KeyError, ValueError, ArithmeticError) as error:
            log.debug("device %s: point %s unreadable: %s", self.name, point.ioa, error)
            return Decimal(0), frozenset({"IV"})
        ratio = engineering / Decimal(point.scale)
        kind = asdu.TYPES[TYPE_IDS[point.type_name]].kind
        if kind == "float":
            try:
                return asdu.float32_decimal(asdu.decimal_float32(ratio)), frozenset()
            except ProtocolError:
                return Decimal(0), frozenset({"OV", "IV"})
        if kind == "normalised":
            raw = int((ratio * 32768).to_integral_value(ROUND_HALF_EVEN))
            clamped = min(max(raw, -32768), 32767)
            return Decimal(clamped) / 32768, frozenset({"OV"}) if clamped != raw else frozenset()
        if kind == "scaled":
            raw = int(ratio.to_integral_value(ROUND_HALF_EVEN))
            clamped = min(max(raw, -32768), 32767)
            return Decimal(clamped), frozenset({"OV"}) if clamped != raw else frozenset()
        raw = int(ratio.to_integral_value(ROUND_FLOOR))  # counters: whole counts, as the register shows
        wrapped = (raw + 2**31) % 2**32 - 2**31
        return Decimal(wrapped), frozenset({"CY"}) if wrapped != raw else frozenset()

    def _object(self, point: PointSpec, t: datetime, timed: bool) -> InformationObject:
        value, quality = self.wire_value(point, t)
        return self._make_object(point, value, quality, t, timed)

    def _type_sent(self, point: PointSpec, spontaneous: bool) -> int:
        """A point goes out in its configured type; spontaneously in that type's time-tagged variant."""
        type_id = TYPE_IDS[point.type_name]
        return TIME_TAGGED.get(type_id, type_id) if spontaneous else type_id

    def _make_object(self, point, value, quality, t: datetime, timed: bool) -> InformationObject:
        tag = CP56Time2a.from_datetime(t.astimezone(self.station_tz)) if timed else None
        sequence = self.freeze_sequence if point.is_counter else None
        return InformationObject(point.ioa, value, quality, tag, sequence)

    def _packed(self, type_name: str, cot: int, objects: list[InformationObject]) -> list[bytes]:
        """ASDUs of one type holding as many objects as fit the 249-octet limit."""
        type_id = TYPE_IDS[type_name]
        per_asdu = (apci.MAX_ASDU_LENGTH - asdu.HEADER_SIZE) // (asdu.IOA_SIZE + asdu.TYPES[type_id].size)
        per_asdu = min(per_asdu, asdu.MAX_COUNT)
        return [
            asdu.encode(Asdu(type_id, cot, self.common_address, tuple(objects[i : i + per_asdu])))
            for i in range(0, len(objects), per_asdu)
        ]

    def _grouped(self, points: Iterable[PointSpec], cot: int, t: datetime, spontaneous: bool) -> list[bytes]:
        by_type: dict[str, list[InformationObject]] = {}
        for point in sorted(points, key=lambda p: p.ioa):
            info = asdu.TYPES[self._type_sent(point, spontaneous)]
            by_type.setdefault(info.name, []).append(self._object(point, t, info.timed))
        return self._packed_by_type(by_type, cot)

    def _packed_by_type(self, by_type: dict[str, list[InformationObject]], cot: int) -> list[bytes]:
        return [frame for name, objects in by_type.items() for frame in self._packed(name, cot, objects)]

    # -- freezing ---------------------------------------------------------------------------------
    @property
    def last_freeze(self) -> Freeze | None:
        return self.freezes[-1] if self.freezes else None

    def freeze_due(self, t: datetime) -> None:
        """Make every periodic freeze whose boundary (device clock) is at or before ``t``; call before
        anything reads the registers at ``t``, so each freeze reads them at its boundary."""
        if not self.freeze_period_s:
            return
        period = timedelta(seconds=self.freeze_period_s)
        if self._next_freeze is None or t < self._next_freeze - period:  # first call, or clock set back
            self._next_freeze = next_boundary(t, self.freeze_period_s)
        missed = (t - self._next_freeze) // period + 1
        if missed > FREEZE_LOG:  # the clock jumped ahead: only the freezes the RTU can keep
            self._next_freeze += (missed - FREEZE_LOG) * period
        while self._next_freeze <= t:
            self._freeze(self._next_freeze, periodic=True)
            self._next_freeze += period

    def _freeze(self, t: datetime, periodic: bool) -> Freeze:
        self.freeze_sequence = (self.freeze_sequence + 1) % 32
        freeze = Freeze(self._freeze_count, t, self.freeze_sequence, self._read_counters(t), periodic)
        self._freeze_count += 1
        self.freezes.append(freeze)
        return freeze

    def _freeze_frames(self, freeze: Freeze, cot: int) -> list[bytes]:
        tag = CP56Time2a.from_datetime(freeze.time.astimezone(self.station_tz))
        objects = [
            InformationObject(ioa, value, quality, tag, freeze.sequence)
            for ioa, (value, quality) in freeze.values.items()
        ]
        return self._packed(FROZEN_TYPE, cot, objects) if objects else []

    def _unsent_freezes(self, connection: Connection) -> list[bytes]:
        """Periodic freezes this master has not been sent yet (spontaneous, COT 3)."""
        link: Link = connection.state["link"]  # type: ignore[assignment]
        if not link.started:
            return []
        cursor: int = connection.state["freezes_sent"]  # type: ignore[assignment]
        frames = []
        for freeze in self.freezes:
            if freeze.number > cursor and freeze.periodic:
                frames.extend(self._freeze_frames(freeze, Cause.SPONTANEOUS))
        if self.freezes:
            connection.state["freezes_sent"] = self.freezes[-1].number
            self._freezes_sent = max(self._freezes_sent, self.freezes[-1].number)
        return frames

    # -- DeviceServer -----------------------------------------------------------------------------
    def split_frames(self, buffer: bytearray) -> list[bytes]:
        try:
            return apci.split(buffer)
        except ProtocolError:
            # lost sync: drop up to the next possible start byte; the link decides about the rest
            next_start = buffer.find(apci.START, 1)
            del buffer[: next_start if next_start > 0 else len(buffer)]
            return self.split_frames(buffer) if buffer else []

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """104 has no checksum (TCP carries one); the nearest fault is a broken APCI start byte."""
        return bytes([frame[0] ^ 0x01]) + frame[1:] if frame else frame

    async def on_connect(self, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        self.connections_accepted += 1
        connection.state["link"] = Link("outstation", self.link_config, loop.time())
        connection.state["queue"] = deque()
        connection.state["sent"] = {}  # IOA -> last value/quality sent on this connection
        connection.state["sent_at"] = {}  # IOA -> device time it was last sent (background scan)
        connection.state["freezes_sent"] = self._freezes_sent  # freezes nobody was sent yet go to it
        connection.state["lock"] = asyncio.Lock()
        connection.state["task"] = asyncio.create_task(self._supervise(connection))

    async def on_disconnect(self, connection: Connection) -> None:
        task = connection.state.get("task")
        if isinstance(task, asyncio.Task) and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def handle(self, frame: bytes, connection: Connection) -> None:
        link: Link = connection.state["link"]  # type: ignore[assignment]
        now = asyncio.get_running_loop().time()
        try:
            events = link.receive_frame(frame, now)
            for event in events:
                if isinstance(event, AsduReceived):
                    self._answer_asdu(event.asdu, connection)
                elif isinstance(event, Started) and self.send_end_of_init:
                    end_of_init = asdu.command(70, Cause.INITIALIZED, self.common_address, qualifier=0)
                    self._queue(connection, [asdu.encode(end_of_init)])
        except ProtocolError as error:
            log.info("device %s: closing link to %s: %s", self.name, connection.peer, error)
            connection.writer.close()
            return None
        await self._transmit(connection)
        return None  # replies go out through _transmit, which keeps I-frames in N(S) order

    # -- application ------------------------------------------------------------------------------
    def _queue(self, connection: Connection, frames: list[bytes]) -> None:
        connection.state["queue"].extend(frames)  # type: ignore[union-attr]

    def _mirror(self, unit: Asdu, cot: int, negative: bool = True) -> bytes:
        return asdu.encode(
            Asdu(
                unit.type_id,
                cot,
                unit.common_address,
                unit.objects,
                unit.originator,
                negative,
                unit.test,
                unit.sequence,
                unit.raw_objects,
                unit.count,
            )
        )

    def _answer_asdu(self, data: bytes, connection: Connection) -> None:
        unit = asdu.decode(data)
        if unit.common_address not in (self.common_address, BROADCAST_ADDRESS):
            self._queue(connection, [self._mirror(unit, Cause.UNKNOWN_COMMON_ADDRESS)])
            return
        if unit.type_id not in (100, 101, 103):
            self._queue(connection, [self._mirror(unit, Cause.UNKNOWN_TYPE)])
            return
        if unit.cot != Cause.ACTIVATION:
            self._queue(connection, [self._mirror(unit, Cause.UNKNOWN_CAUSE)])
            return
        if unit.objects[0].ioa != 0:
            self._queue(connection, [self._mirror(unit, Cause.UNKNOWN_IOA)])
            return
        t = self.clock.now()
        self.freeze_due(t)
        self._queue(connection, self._unsent_freezes(connection))  # in time order, before any answer
        if unit.type_id == 100:
            self._queue(connection, self._interrogation(unit, t, connection))
        elif unit.type_id == 101:
            self._queue(connection, self._counter_interrogation(unit, t))
        else:
            self._queue(connection, self._clock_sync(unit))

    def _confirm(self, unit: Asdu, cot: int, negative: bool = False, **changes) -> bytes:
        obj = unit.objects[0]
        if changes:
            obj = InformationObject(obj.ioa, qualifier=obj.qualifier, time=changes.get("time", obj.time))
        return asdu.encode(
            Asdu(unit.type_id, cot, self.common_address, (obj,), unit.originator, negative=negative)
        )

    def _interrogation(self, unit: Asdu, t: datetime, connection: Connection) -> list[bytes]:
        qoi = unit.objects[0].qualifier or 0
        if not 20 <= qoi <= 36:
            return [self._confirm(unit, Cause.ACTIVATION_CON, negative=True)]
        measured = [p for p in self.points.values() if not p.is_counter] if qoi == 20 else []  # no groups
        frames = self._grouped(measured, qoi, t, spontaneous=False)
        sent, sent_at = connection.state["sent"], connection.state["sent_at"]
        for point in measured:
            sent[point.ioa] = self.wire_value(point, t)  # type: ignore[index]
            sent_at[point.ioa] = t  # type: ignore[index]
        return [
            self._confirm(unit, Cause.ACTIVATION_CON),
            *frames,
            self._confirm(unit, Cause.ACTIVATION_TERMINATION),
        ]

    def _counter_interrogation(self, unit: Asdu, t: datetime) -> list[bytes]:
        qcc = unit.objects[0].qualifier or 0
        request, freeze = qcc & 0x3F, qcc >> 6
        if not 1 <= request <= 5:
            return [self._confirm(unit, Cause.ACTIVATION_CON, negative=True)]
        counters = [p for p in self.points.values() if p.is_counter] if request == 5 else []
        frames: list[bytes] = []
        cot = Cause.REQUESTED_BY_GENERAL_COUNTER + (0 if request == 5 else request)
        if freeze == 0 and self.freeze_period_s and counters:
            # the last freeze with its time; before any, the registers now, tagged now
            last = self.last_freeze or Freeze(-1, t, self.freeze_sequence, self._read_counters(t), False)
            frames = self._freeze_frames(last, cot)
        elif freeze == 0:  # read: frozen values if a freeze is pending, else the registers now
            by_type: dict[str, list[InformationObject]] = {}
            for point in sorted(counters, key=lambda p: p.ioa):
                value, quality = (self._frozen or {}).get(point.ioa) or self.wire_value(point, t)
                timed = asdu.TYPES[TYPE_IDS[point.type_name]].timed
                obj = self._make_object(point, value, quality, t, timed)
                by_type.setdefault(point.type_name, []).append(obj)
            self._frozen = None
            frames = self._packed_by_type(by_type, cot)
        else:
            if freeze in (1, 2):
                frozen = self._freeze(t, periodic=False)
                self._frozen = None if self.freeze_period_s else frozen.values
            else:  # reset only: a new counting period, so a new sequence number
                self.freeze_sequence = (self.freeze_sequence + 1) % 32
            if freeze in (2, 3):
                for point in counters:
                    register = self.counters.get(point.quantity)
                    if register is not None:
                        register.add(-register.exact)
        return [
            self._confirm(unit, Cause.ACTIVATION_CON),
            *frames,
            self._confirm(unit, Cause.ACTIVATION_TERMINATION),
        ]

    def _read_counters(self, t: datetime) -> dict[int, tuple[Decimal, frozenset[str]]]:
        counters = sorted((p for p in self.points.values() if p.is_counter), key=lambda p: p.ioa)
        return {p.ioa: self.wire_value(p, t) for p in counters}

    def _clock_sync(self, unit: Asdu) -> list[bytes]:
        tag = unit.objects[0].time
        try:
            self.clock.set(tag.to_datetime(self.station_tz))  # type: ignore[union-attr]
        except (ProtocolError, AttributeError):
            return [self._confirm(unit, Cause.ACTIVATION_CON, negative=True)]
        self.clock_syncs += 1
        now_tag = CP56Time2a.from_datetime(self.clock.now().astimezone(self.station_tz))
        return [self._confirm(unit, Cause.ACTIVATION_CON, time=now_tag)]

    def _spontaneous(self, connection: Connection) -> list[bytes]:
        t = self.clock.now()
        sent: dict[int, tuple[Decimal, frozenset[str]]] = connection.state["sent"]  # type: ignore[assignment]
        sent_at: dict[int, datetime] = connection.state["sent_at"]  # type: ignore[assignment]
        changed = []
        for point in self.points.values():
            if point.is_counter:
                continue
            value, quality = self.wire_value(point, t)
            previous = sent.get(point.ioa)
            moved = previous is None or previous[1] != quality
            if previous is not None and not moved:
                moved = abs(value - previous[0]) * Decimal(point.scale) > Decimal(point.deadband)
            if moved:
                sent[point.ioa] = (value, quality)
                sent_at[point.ioa] = t
                changed.append(point)
        return self._grouped(changed, Cause.SPONTANEOUS, t, spontaneous=True)

    def _background(self, connection: Connection) -> list[bytes]:
        """Background scan (COT 2): each measured point not sent for ``background_s`` (device clock) goes
        out again, untagged.  A master then sees a steady value as alive and a frozen transducer as a
        value that repeats, instead of silence it cannot tell from data on its way."""
        if self.background_s is None:
            return []
        t = self.clock.now()
        sent: dict[int, tuple[Decimal, frozenset[str]]] = connection.state["sent"]  # type: ignore[assignment]
        sent_at: dict[int, datetime] = connection.state["sent_at"]  # type: ignore[assignment]
        due = []
        for point in self.points.values():
            last = sent_at.get(point.ioa)
            # a clock set back (synchronised, skewed) must not silence the scan until it catches up
            if point.is_counter or (last is not None and 0 <= (t - last).total_seconds() < self.background_s):
                continue
            sent[point.ioa] = self.wire_value(point, t)
            sent_at[point.ioa] = t
            due.append(point)
        return self._grouped(due, Cause.BACKGROUND, t, spontaneous=False)

    # -- transmission and timers ------------------------------------------------------------------
    async def _transmit(self, connection: Connection) -> None:
        """Move queued ASDUs into the k window and write whatever the link has to send, in order."""
        link: Link = connection.state["link"]  # type: ignore[assignment]
        queue: deque[bytes] = connection.state["queue"]  # type: ignore[assignment]
        async with connection.state["lock"]:  # type: ignore[attr-defined]
            now = asyncio.get_running_loop().time()
            while queue and link.can_send:
                link.send_asdu(queue.popleft(), now)
            await self.transmit(connection, link.data_to_send())

    async def _supervise(self, connection: Connection) -> None:
        """Per connection: run the link timers and the spontaneous-transmission cycle."""
        link: Link = connection.state["link"]  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        next_cycle = loop.time() + self.cycle_s
        try:
            while not connection.writer.is_closing():
                link_deadline = link.next_deadline()
                deadline = next_cycle if link_deadline is None else min(link_deadline, next_cycle)
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                now = loop.time()
                for event in link.on_timer(now):
                    if isinstance(event, LinkTimeout):
                        log.info("device %s: %s; closing %s", self.name, event.reason, connection.peer)
                        connection.writer.close()
                        return
                if now >= next_cycle:
                    next_cycle = now + self.cycle_s
                    self.freeze_due(self.clock.now())
                    if link.started:
                        self._queue(connection, self._unsent_freezes(connection))
                        self._queue(connection, self._spontaneous(connection))
                        self._queue(connection, self._background(connection))
                await self._transmit(connection)
        except (ConnectionError, asyncio.CancelledError):
            pass


# -- presets --------------------------------------------------------------------------------------
def _rate(source: ValueSource, quantity: str, factor: float = 1.0, times: str | None = None):
    def rate(t: datetime) -> float:
        value = source.read(quantity, t) * factor
        return value * source.read(times, t) if times else value

    return rate


def plant_rtu(
    name: str = "plant-rtu",
    source: ValueSource | None = None,
    common_address: int = 1,
    energy_start_kwh: Decimal | str = "0",
    carbon_start_kg: Decimal | str = "0",
    measured_type: str = "M_ME_NC_1",
    counter_type: str = "M_IT_NA_1",
    **kwargs,
) -> Iec104Rtu:
    """A generating unit's gateway: output (MW), carbon factor (g/kWh) as short floats at 4001H/4002H;
    on-grid energy (kWh) and unit carbon (kg) counters at 6401H/6402H, integrated from the source.

    Source quantities: ``p_mw`` (unit output) and ``intensity_g_per_kwh`` (unit carbon factor);
    1 MW for 1 h at e g/kWh emits e kg (MW x g/kWh = kg/h).  ``measured_type``/``counter_type`` pick
    the ASDU types (e.g. ``M_ME_TF_1``/``M_IT_TB_1`` for masters that expect time tags everywhere).
    """
    source = source or StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
    counters = {
        "export_energy_kwh": Counter(_rate(source, "p_mw", 1000.0), energy_start_kwh, resolution="1"),
        "carbon_kg": Counter(
            _rate(source, "p_mw", 1.0, "intensity_g_per_kwh"), carbon_start_kg, resolution="1"
        ),
    }
    points = [
        PointSpec(0x4001, measured_type, "p_mw", "MW", deadband=Decimal("0.1")),
        PointSpec(0x4002, measured_type, "intensity_g_per_kwh", "g/kWh", deadband=Decimal("0.5")),
        PointSpec(0x6401, counter_type, "export_energy_kwh", "kWh"),
        PointSpec(0x6402, counter_type, "carbon_kg", "kg"),
    ]
    return Iec104Rtu(name, points, source, counters, common_address, **kwargs)


def substation_rtu(
    name: str = "substation-rtu",
    source: ValueSource | None = None,
    branches: Iterable[str] = ("L1", "L2"),
    buses: Iterable[str] = ("B1",),
    common_address: int = 1,
    **kwargs,
) -> Iec104Rtu:
    """A substation RTU: per branch P (MW) and Q (Mvar) as short floats from 4001H (two IOAs per
    branch), per bus voltage (kV) as scaled values in 0.1 kV steps from 4101H.

    Source quantities: ``<branch>.p_mw``, ``<branch>.q_mvar``, ``<bus>.u_kv``.
    """
    branches, buses = list(branches), list(buses)
    if source is None:
        source = StaticSource({f"{branch}.p_mw": 100.0 for branch in branches})
        for branch in branches:
            source.set(f"{branch}.q_mvar", 20.0)
        for bus in buses:
            source.set(f"{bus}.u_kv", 220.0)
    band = Decimal("0.1")
    points = []
    for index, branch in enumerate(branches):
        points.append(PointSpec(0x4001 + 2 * index, "M_ME_NC_1", f"{branch}.p_mw", "MW", deadband=band))
        points.append(PointSpec(0x4002 + 2 * index, "M_ME_NC_1", f"{branch}.q_mvar", "Mvar", deadband=band))
    for index, bus in enumerate(buses):
        points.append(PointSpec(0x4101 + index, "M_ME_NB_1", f"{bus}.u_kv", "kV", band, 2 * band))
    return Iec104Rtu(name, points, source, None, common_address, **kwargs)

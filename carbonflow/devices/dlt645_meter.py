"""A simulated DL/T 645-2007 multi-function (electric-carbon) meter on :class:`DeviceServer`.

Physical values come from the :class:`ValueSource` by name: ``p_kw`` (import > 0, export < 0),
``q_kvar``, per-phase ``u_a_v``/``u_b_v``/``u_c_v`` (else ``u_v``, else ``nominal_v``), per-phase
currents ``i_a_a``/``i_b_a``/``i_c_a`` (else ``i_a``, else derived from S and U), per-phase
``p_a_kw``... (else P/phases), ``f_hz`` (else ``frequency_hz``).  Energy registers are :class:`Counter`
integrals of ``p_kw``; the tariff registers split the same increments by the tariff in force, so
total == sum of tariffs as on a real meter.  The vendor carbon registers (example DIs ``F0…``, see
:mod:`carbonflow.protocols.dlt645.di_table`) accumulate Δenergy × the carbon factor in force, the factor
being writable with 14H so a center can download it.

Answers read (11H, with follow-up frames 12H for payloads above ``max_payload``), read address (13H),
write (14H, password checked), broadcast time sync (08H, sets the device clock), freeze (16H).  A DI the
meter cannot serve gets an abnormal reply with the right error bit.

Freezing: ``99999999`` (16H) takes an instant-freeze record (瞬时冻结, DIs ``0501 xx 01..03``).  With a
``freeze_period_s`` (whole minutes, 1..60) the meter runs DL/T 645's 整点冻结 (hourly freeze) with that
interval: ``04001202`` holds the interval in minutes (writable; ``00`` = off), ``04001201`` the start time;
at every start + k x interval of the meter's own clock - by default the multiples of the period since
the UTC epoch - it records the freeze time (``0504 00 NN``, YYMMDDhhmm local) and the forward / reverse
active energy totals (``0504 01 NN`` / ``0504 02 NN``) of record NN = 01 (the last) .. FE.  The simulated
meter takes the records it owes when it is next asked anything, with the registers' values at each
boundary (its registers integrate the source in order, so nothing is lost by taking them late).

Requests for other addresses are ignored, as on a shared RS-485 bus; ``AA`` digit pairs match any digits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from carbonflow.devices.base import (
    FORWARD_ENERGY,
    REVERSE_ENERGY,
    Connection,
    Counter,
    DeviceClock,
    DeviceServer,
    Faults,
    StaticSource,
    ValueSource,
)
from carbonflow.protocols import dlt645
from carbonflow.protocols.dlt645 import DataItem, DiTable, ProtocolError
from carbonflow.protocols.dlt645.bcd import FieldFormat
from carbonflow.protocols.dlt645.di_table import (
    DAILY_FREEZE,
    FREEZE_FORWARD,
    FREEZE_REVERSE,
    FREEZE_TIME,
    HOURLY_FREEZE,
    HOURLY_FREEZE_DEPTH,
    HOURLY_FREEZE_INTERVAL,
    HOURLY_FREEZE_START,
    INSTANT_FREEZE,
    INSTANT_FREEZE_DEPTH,
)

PHASES = "abc"
ENERGY_ROLLOVER = Decimal("1000000")  # XXXXXX.XX registers wrap at 10^6 kWh
FREEZE_DEPTHS = {DAILY_FREEZE: 62, INSTANT_FREEZE: INSTANT_FREEZE_DEPTH, HOURLY_FREEZE: HOURLY_FREEZE_DEPTH}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FrozenRecord = tuple[datetime, list[Decimal], list[Decimal]]  # local freeze time, forward, reverse


def hourly_freeze_minutes(freeze_period_s: int | None) -> int:
    """The 整点冻结 interval (minutes) for a freeze period; 0 for none; ValueError if 645 cannot do it."""
    if not freeze_period_s:
        return 0
    if freeze_period_s % 60 or not 1 <= freeze_period_s // 60 <= 60:
        raise ValueError(
            f"freeze period {freeze_period_s} s: a DL/T 645 hourly freeze runs every 1..60 minutes"
        )
    return freeze_period_s // 60


def epoch_aligned_start(period_s: int, tz: timezone, after: datetime = datetime(2000, 1, 1)) -> datetime:
    """The first multiple of ``period_s`` since the UTC epoch at or after ``after`` (local), as local time."""
    seconds = (after.replace(tzinfo=tz) - EPOCH).total_seconds()
    aligned = EPOCH + timedelta(seconds=-(-seconds // period_s) * period_s)
    return aligned.astimezone(tz).replace(tzinfo=None)


def default_tariff(local: datetime) -> int:
    """A simple time-of-use schedule: 1 peak 08-11 and 18-21, 2 shoulder 11-18, 3 flat 21-23, 4 valley."""
    hour = local.hour
    if 8 <= hour < 11 or 18 <= hour < 21:
        return 1
    if 11 <= hour < 18:
        return 2
    if 21 <= hour < 23:
        return 3
    return 4


class _NoData(Exception):
    """The meter has no value for this DI (-> abnormal reply "no requested data")."""


class _Reject(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _quantize(value: float | Decimal, field: FieldFormat) -> Decimal:
    step = Decimal(1).scaleb(-field.scale)
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return number.quantize(step, rounding=ROUND_HALF_EVEN)


class Dlt645Meter(DeviceServer):
    protocol = "dlt645"

    def __init__(
        self,
        name: str,
        address: str = "000000000001",
        source: ValueSource | None = None,
        *,
        table: DiTable = dlt645.DEFAULT_TABLE,
        phases: int = 3,
        tariffs: int = 4,
        tariff_of: Callable[[datetime], int] = default_tariff,
        password: str = dlt645.DEFAULT_PASSWORD,
        nominal_v: float = 220.0,
        frequency_hz: float = 50.0,
        utc_offset: timedelta = timedelta(hours=8),
        carbon_factor: str = "0.5703",
        reply_preamble: int = 0,
        max_payload: int = 200,
        faults: Faults | None = None,
        clock: DeviceClock | None = None,
        freeze_period_s: int | None = None,
    ) -> None:
        super().__init__(name, faults, clock)
        minutes = hourly_freeze_minutes(freeze_period_s)
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        dlt645.encode_address(address)  # validate early
        self.address = address.rjust(12, "0")
        self.source = source or StaticSource()
        self.table = table
        self.phases = phases
        self.tariffs = tariffs
        self.tariff_of = tariff_of
        self.password = password
        self.nominal_v = nominal_v
        self.frequency_hz = frequency_hz
        self.tz = timezone(utc_offset)
        self.reply_preamble = reply_preamble
        self.max_payload = max_payload
        self.last_operator: str | None = None
        self.freeze_schedule: list[str] = []  # non-immediate freeze times received (not executed)
        # freeze records by series (DI3 DI2: 0501 instant, 0504 hourly, 0506 daily), newest first
        self.frozen: dict[str, list[FrozenRecord]] = {series: [] for series in FREEZE_DEPTHS}
        self._freezes_checked: datetime | None = None  # hourly freezes are taken up to this clock time

        def rate(sign: float, quantity: str) -> Callable[[datetime], float]:
            return lambda t: max(0.0, sign * self.source.read(quantity, t))

        self.forward = Counter(rate(1.0, "p_kw"), rollover=ENERGY_ROLLOVER)
        self.reverse = Counter(rate(-1.0, "p_kw"), rollover=ENERGY_ROLLOVER)
        self.reactive_1 = Counter(rate(1.0, "q_kvar"), rollover=ENERGY_ROLLOVER)
        self.reactive_2 = Counter(rate(-1.0, "q_kvar"), rollover=ENERGY_ROLLOVER)
        self.forward_tariffs = [Counter(lambda t: 0.0, rollover=ENERGY_ROLLOVER) for _ in range(tariffs)]
        self.reverse_tariffs = [Counter(lambda t: 0.0, rollover=ENERGY_ROLLOVER) for _ in range(tariffs)]
        self.forward_carbon = Counter(lambda t: 0.0, rollover=ENERGY_ROLLOVER)
        self.reverse_carbon = Counter(lambda t: 0.0, rollover=ENERGY_ROLLOVER)
        self.max_demand: dict[str, tuple[Decimal, datetime] | None] = {"01010000": None, "01020000": None}
        # writable parameters by DI; vendor rw DIs of the table without a value here are stored as written
        self.settings: dict[str, Any] = {
            "F0030000": Decimal(carbon_factor),
            "F0030001": None,
            "04000402": self.address,
            HOURLY_FREEZE_INTERVAL: Decimal(minutes),
            HOURLY_FREEZE_START: epoch_aligned_start(max(minutes, 1) * 60, self.tz),
        }

    def counter_registers(self) -> dict[str, Counter]:
        return {FORWARD_ENERGY: self.forward, REVERSE_ENERGY: self.reverse}

    def _set_counters(self, counters: Mapping[str, Counter]) -> None:
        self.forward = counters.get(FORWARD_ENERGY, self.forward)
        self.reverse = counters.get(REVERSE_ENERGY, self.reverse)

    # -- register values --------------------------------------------------------------------------
    def local_now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    def _read(self, quantity: str, t: datetime, fallback: str | None = None, default: float | None = None):
        for name in (quantity, fallback):
            if name is None:
                continue
            try:
                return self.source.read(name, t)
            except KeyError:
                continue
        if default is not None:
            return default
        raise _NoData(quantity)

    def advance_energy(self, t: datetime) -> None:
        """Integrate active energy up to ``t``; split the increments over tariffs and carbon registers."""
        before_fwd, before_rev = self.forward.exact, self.reverse.exact
        try:
            self.forward.advance(t)
            self.reverse.advance(t)
        except KeyError:
            raise _NoData("p_kw") from None
        tariff = min(max(self.tariff_of(t.astimezone(self.tz)), 1), self.tariffs) - 1
        factor = self.settings.get("F0030000") or Decimal(0)
        for before, counter, tariff_counters, carbon in (
            (before_fwd, self.forward, self.forward_tariffs, self.forward_carbon),
            (before_rev, self.reverse, self.reverse_tariffs, self.reverse_carbon),
        ):
            delta = counter.exact - before
            if delta < 0:  # the register rolled over
                delta += ENERGY_ROLLOVER
            tariff_counters[tariff].add(delta)
            carbon.add(delta * factor)
        with contextlib.suppress(KeyError):  # reactive registers run only if the source has q_kvar
            self.reactive_1.advance(t)
            self.reactive_2.advance(t)
        p_kw = Decimal(repr(self.source.read("p_kw", t))).quantize(Decimal("0.0001"))
        for di, demand in (("01010000", p_kw), ("01020000", -p_kw)):
            record = self.max_demand[di]
            if demand > 0 and (record is None or demand > record[0]):
                self.max_demand[di] = (demand, t.astimezone(self.tz))

    def _energy_block(self, total: Counter, tariff_counters: list[Counter], t: datetime) -> list[Decimal]:
        self.advance_energy(t)
        return [total.value(), *(c.value() for c in tariff_counters)]

    def _phase_values(self, t: datetime) -> dict[str, list[float | None]]:
        """Per-phase U, I, P, Q, S, PF (None for phases a single-phase meter lacks)."""
        p_total = self._read("p_kw", t)
        q_total = self._read("q_kvar", t, default=0.0)
        values: dict[str, list[float | None]] = {k: [] for k in ("u", "i", "p", "q", "s", "pf")}
        for index, phase in enumerate(PHASES):
            if index >= self.phases:
                for series in values.values():
                    series.append(None)
                continue
            u = self._read(f"u_{phase}_v", t, "u_v", self.nominal_v)
            p = self._read(f"p_{phase}_kw", t, default=p_total / self.phases)
            q = self._read(f"q_{phase}_kvar", t, default=q_total / self.phases)
            s = math.hypot(p, q)
            i = self._read(f"i_{phase}_a", t, "i_a", s * 1000.0 / u if u else 0.0)
            values["u"].append(u)
            values["i"].append(math.copysign(abs(i), p))  # current carries the sign of the power flow
            values["p"].append(p)
            values["q"].append(q)
            values["s"].append(math.copysign(s, p))
            values["pf"].append(p / s if s else 1.0)
        return values

    def value(self, item: DataItem, t: datetime) -> Any:
        """The value the meter shows for ``item`` at ``t`` (shape as ``item.decode`` returns it)."""
        di = item.di
        if di in self.settings:
            return self.settings[di]
        energy = {
            "0001": (self.forward, self.forward_tariffs),
            "0002": (self.reverse, self.reverse_tariffs),
        }
        if di[:4] in energy and di[6:] == "00":
            block = self._energy_block(*energy[di[:4]], t)
            return self._pick(block, di[4:6], item)
        if di[:4] == "0000" and di[6:] == "00":
            forward = self._energy_block(self.forward, self.forward_tariffs, t)
            reverse = self._energy_block(self.reverse, self.reverse_tariffs, t)
            combined = [(f + r) % ENERGY_ROLLOVER for f, r in zip(forward, reverse)]  # mode word 05
            return self._pick(combined, di[4:6], item)
        if di in ("00030000", "00040000"):
            counter = self.reactive_1 if di == "00030000" else self.reactive_2
            try:
                return counter.value(t)
            except KeyError:
                raise _NoData("q_kvar") from None
        if di in self.max_demand:
            self.advance_energy(t)
            record = self.max_demand[di]
            if record is None:
                return (Decimal("0.0000"), t.astimezone(self.tz))
            return record
        if di[:4] in ("0201", "0202", "0203", "0204", "0205", "0206") and di[6:] == "00":
            return self._instantaneous(di, item, t)
        if di == "02800002":
            return _quantize(self._read("f_hz", t, default=self.frequency_hz), item.fields[0])
        if di == "04000101":
            return self.local_now().date()
        if di == "04000102":
            return self.local_now().replace(tzinfo=None)
        if di == "04000401":
            return self.address
        if di == "04000409":
            return Decimal(1200)
        if di.startswith("040005"):
            return "0000"
        if di[:4] in self.frozen:
            return self._frozen(di)
        if di in ("F0010000", "F0020000"):
            self.advance_energy(t)
            return (self.forward_carbon if di == "F0010000" else self.reverse_carbon).value()
        if di == "F0040000":
            factor = self.settings.get("F0030000") or Decimal(0)
            return _quantize(Decimal(repr(self._read("p_kw", t))) * factor, item.fields[0])
        raise _NoData(di)

    def _pick(self, block: list[Decimal], index_digits: str, item: DataItem) -> Any:
        if item.is_block:
            return block
        index = int(index_digits, 16)
        if index >= len(block):
            raise _NoData(item.di)
        return block[index]

    def _instantaneous(self, di: str, item: DataItem, t: datetime) -> Any:
        quantity = {"0201": "u", "0202": "i", "0203": "p", "0204": "q", "0205": "s", "0206": "pf"}[di[:4]]
        if quantity == "q" and "q_kvar" not in self._known_quantities(t):
            raise _NoData("q_kvar")
        per_phase = self._phase_values(t)[quantity]
        with_total = quantity not in ("u", "i")
        if with_total:
            p_total = self._read("p_kw", t)
            q_total = self._read("q_kvar", t, default=0.0)
            s_total = math.copysign(math.hypot(p_total, q_total), p_total)
            pf_total = p_total / abs(s_total) if s_total else 1.0
            total = {"p": p_total, "q": q_total, "s": s_total, "pf": pf_total}
            series: list[float | None] = [total[quantity], *per_phase]
        else:
            series = per_phase
        field = item.fields[0]
        quantized = [None if v is None else _quantize(v, field) for v in series]
        if item.is_block:
            return quantized
        index = int(di[4:6], 16) - (0 if with_total else 1)
        if not 0 <= index < len(quantized) or quantized[index] is None:
            raise _NoData(di)
        return quantized[index]

    def _known_quantities(self, t: datetime) -> set[str]:
        try:
            self.source.read("q_kvar", t)
        except KeyError:
            return set()
        return {"q_kvar"}

    def _frozen(self, di: str) -> Any:
        records = self.frozen[di[:4]]
        number = int(di[6:], 16)
        if not 1 <= number <= len(records):
            raise _NoData(di)
        moment, forward, reverse = records[number - 1]
        columns = {FREEZE_TIME: moment, FREEZE_FORWARD: forward, FREEZE_REVERSE: reverse}
        if di[4:6] not in columns:
            raise _NoData(di)
        value = columns[di[4:6]]
        if isinstance(value, list) and di[:4] == HOURLY_FREEZE:
            return value[0]  # the hourly freeze keeps the totals only
        return value

    def _record(self, series: str, t: datetime) -> None:
        """Freeze the energy registers as of ``t`` (the meter's clock) into ``series``."""
        forward = self._energy_block(self.forward, self.forward_tariffs, t)
        reverse = self._energy_block(self.reverse, self.reverse_tariffs, t)
        local = t.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0)
        records = self.frozen[series]
        records.insert(0, (local, forward, reverse))
        del records[FREEZE_DEPTHS[series] :]

    def freeze(self, t: datetime) -> None:
        """Instant freeze (16H ``99999999``)."""
        self._record(INSTANT_FREEZE, t)

    def hourly_freeze_times(self, after: datetime, until: datetime) -> list[datetime]:
        """The hourly-freeze moments of the meter's clock in ``(after, until]`` (the last depth of them)."""
        minutes = int(self.settings.get(HOURLY_FREEZE_INTERVAL) or 0)
        start_text = self.settings.get(HOURLY_FREEZE_START)
        if minutes <= 0 or start_text is None or until <= after:
            return []
        step = timedelta(minutes=minutes)
        start = datetime.fromisoformat(str(start_text)).replace(tzinfo=self.tz)
        first = max(0, (after - start) // step + 1)
        last = (until - start) // step
        first = max(first, last - HOURLY_FREEZE_DEPTH + 1)
        return [start + k * step for k in range(first, last + 1)]

    def catch_up_freezes(self, t: datetime) -> None:
        """Take every hourly-freeze record due by ``t`` (the meter's clock) and not yet taken, each with
        the registers at its own boundary.  The first call only starts the bookkeeping."""
        checked = self._freezes_checked
        self._freezes_checked = t if checked is None else max(checked, t)
        if checked is None:
            return
        for moment in self.hourly_freeze_times(checked, t):
            with contextlib.suppress(_NoData):  # no power value: nothing to freeze
                self._record(HOURLY_FREEZE, moment)

    # -- writes -----------------------------------------------------------------------------------
    def write(self, request: dlt645.Request, t: datetime) -> None:
        item = self.table.get(request.di or "")
        if item is None:
            raise _Reject(dlt645.ERR_NO_DATA)
        if request.password != self.password or not item.writable:
            raise _Reject(dlt645.ERR_UNAUTHORISED)
        try:
            value = item.decode(request.payload)
        except ProtocolError:
            raise _Reject(dlt645.ERR_OTHER) from None
        self.last_operator = request.operator
        if item.di == "04000101":
            local = self.local_now()
            moment = datetime.strptime(str(value), "%Y-%m-%d").replace(
                hour=local.hour, minute=local.minute, second=local.second
            )
            self.set_local_time(moment)
        elif item.di == "04000102":
            local = self.local_now()
            hh, mm, ss = (int(part) for part in str(value).split(":"))
            self.set_local_time(local.replace(tzinfo=None, hour=hh, minute=mm, second=ss, microsecond=0))
        elif item.di == "04000401":
            self.address = str(value)
        elif item.di == HOURLY_FREEZE_INTERVAL and not 0 <= int(str(value)) <= 60:
            raise _Reject(dlt645.ERR_OTHER)
        else:
            if item.di == "F0030000":
                self.advance_energy(t)  # carbon so far was earned at the old factor
            self.settings[item.di] = value

    def set_local_time(self, moment: datetime) -> None:
        self.clock.set(moment.replace(tzinfo=self.tz))

    # -- serving ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        now = self.clock.now()
        self.catch_up_freezes(now)
        with contextlib.suppress(_NoData):  # the registers integrate from the moment of switch-on
            self.advance_energy(now)
        return await super().start(host, port)

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """645's CS sits before the end byte 16."""
        return frame[:-2] + bytes([frame[-2] ^ 0xFF]) + frame[-1:] if len(frame) >= 2 else frame

    def split_frames(self, buffer: bytearray) -> list[bytes]:
        frames = []
        while (frame := dlt645.take_frame(buffer)) is not None:
            frames.append(frame)
        return frames

    async def handle(self, frame: bytes, connection: Connection) -> bytes | None:
        try:
            request = dlt645.parse_request(dlt645.parse_frame(frame))
        except ProtocolError:
            return None  # a meter stays silent on frames it cannot read
        t = self.clock.now()
        self.catch_up_freezes(t)  # a meter freezes on its own: the records due are taken first
        function = request.function
        broadcast = request.address == dlt645.BROADCAST
        if function == dlt645.TIME_SYNC:
            if broadcast or dlt645.address_matches(request.address, self.address):
                self.set_local_time(dlt645.parse_time(request.time or ""))
            return None
        if not (broadcast or dlt645.address_matches(request.address, self.address)):
            return None
        try:
            reply = self._answer(request, t, connection)
        except _NoData:
            reply = dlt645.error_reply(self.address, function, dlt645.ERR_NO_DATA, self.reply_preamble)
        except _Reject as rejection:
            reply = dlt645.error_reply(self.address, function, rejection.code, self.reply_preamble)
        except (ProtocolError, KeyError, ValueError, ArithmeticError):  # a value that does not fit
            reply = dlt645.error_reply(self.address, function, dlt645.ERR_OTHER, self.reply_preamble)
        return None if broadcast else reply

    def _answer(self, request: dlt645.Request, t: datetime, connection: Connection) -> bytes | None:
        function, preamble = request.function, self.reply_preamble
        if function == dlt645.READ_ADDRESS:
            return dlt645.read_address_reply(self.address, preamble)
        if function == dlt645.READ:
            item = self.table.get(request.di or "")
            if item is None or not item.readable:
                raise _NoData(request.di)
            payload = item.encode(self.value(item, t))
            chunks = dlt645.split_payload(item, payload, self.max_payload)
            connection.state["follow_up"] = (item.di, chunks)
            return dlt645.read_reply(self.address, item.di, chunks[0], len(chunks) > 1, preamble=preamble)
        if function == dlt645.READ_FOLLOW_UP:
            di, chunks = connection.state.get("follow_up", ("", []))  # type: ignore[misc]
            seq = request.seq or 0
            if di != request.di or not 1 <= seq < len(chunks):
                raise _NoData(request.di)
            more = seq + 1 < len(chunks)
            return dlt645.read_reply(self.address, di, chunks[seq], more, seq=seq, preamble=preamble)
        if function == dlt645.WRITE:
            self.write(request, t)
            return dlt645.ack_reply(self.address, function, preamble)
        if function == dlt645.FREEZE:
            if request.freeze_at == dlt645.FREEZE_NOW:
                self.freeze(t)
            else:
                self.freeze_schedule.append(request.freeze_at or "")
            return dlt645.ack_reply(self.address, function, preamble)
        raise _Reject(dlt645.ERR_OTHER)

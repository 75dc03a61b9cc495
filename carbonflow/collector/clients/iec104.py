"""asyncio IEC 60870-5-104 master: connect + STARTDT, general and counter interrogation, clock sync,
and spontaneous data into a queue/callback, over the sans-IO :class:`~carbonflow.protocols.iec104.link.Link`
(TESTFR on idle t3, S-frame acknowledgements after w frames or t2, t1 expiry -> close and reconnect).

Every received value becomes a :class:`Reading` ``(ioa, value, quality, timestamp, ...)``: ``value`` is
the wire value as a Decimal, multiplied by the point's scale when one is configured; ``timestamp`` is the
CP56Time2a tag when the type carries one (for integrated totals ``M_IT_TB_1``: the time they were
frozen, with the BCR ``sequence`` number), else the time of reception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import TypeVar

from carbonflow.collector.clients.base import close_stream, open_stream, with_retries
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, RetryPolicy
from carbonflow.delivery.tasks import cancel_and_wait
from carbonflow.protocols import ProtocolError
from carbonflow.protocols.iec104 import asdu
from carbonflow.protocols.iec104.asdu import Asdu, Cause, InformationObject, cause_name
from carbonflow.protocols.iec104.cp56time import CP56Time2a
from carbonflow.protocols.iec104.link import (
    Acknowledged,
    AsduReceived,
    Link,
    LinkConfig,
    LinkTimeout,
    Started,
    TestConfirmed,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

READINGS_QUEUE_SIZE = 10_000
_NEGATIVE_CAUSES = {Cause.UNKNOWN_TYPE, Cause.UNKNOWN_CAUSE, Cause.UNKNOWN_COMMON_ADDRESS, Cause.UNKNOWN_IOA}


@dataclass(frozen=True)
class Reading:
    ioa: int
    value: Decimal
    quality: frozenset[str]
    timestamp: datetime
    time_tagged: bool  # timestamp from the device's CP56Time2a (else: time of reception)
    type_id: int
    cot: int
    common_address: int
    sequence: int | None = None  # integrated totals: the BCR sequence number of the freeze

    @property
    def valid(self) -> bool:
        return "IV" not in self.quality


@dataclass
class _Exchange:
    """One command in flight: its confirmation, the data it triggers, its termination."""

    type_id: int
    data_causes: frozenset[int]
    done: asyncio.Future
    confirmed: bool = False
    readings: dict[int, Reading] = field(default_factory=dict)


class Iec104Client:
    def __init__(
        self,
        host: str,
        port: int = 2404,
        *,
        common_address: int = 1,
        originator: int = 0,
        name: str | None = None,
        link_config: LinkConfig | None = None,
        policy: RetryPolicy | None = None,
        scales: dict[int, Decimal] | None = None,
        on_reading: Callable[[Reading], None] | None = None,
        station_tz: tzinfo = UTC,
        auto_reconnect: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.common_address = common_address
        self.originator = originator
        self.name = name or f"{host}:{port}"
        self.link_config = link_config or LinkConfig()
        self.policy = policy or RetryPolicy()
        self.scales = {ioa: Decimal(scale) for ioa, scale in (scales or {}).items()}
        self.on_reading = on_reading
        self.station_tz = station_tz
        self.auto_reconnect = auto_reconnect
        self.readings: asyncio.Queue[Reading] = asyncio.Queue(READINGS_QUEUE_SIZE)
        self.reconnects = 0
        self.last_error: str | None = None
        self._link: Link | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._started: asyncio.Future | None = None
        self._test: asyncio.Future | None = None
        self._exchange: _Exchange | None = None
        self._window = asyncio.Event()
        self._request_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._closing = False

    def __repr__(self) -> str:
        return f"iec104 {self.name}"

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.started and self._link.failed is None

    # -- connection -------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the TCP link and start data transfer (STARTDT), with the retry policy."""
        self._closing = False
        await self._retrying(self._ensure_connected, "connect")

    async def close(self) -> None:
        self._closing = True
        task = self._reconnect_task
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task])
        await self._drop()

    async def __aenter__(self) -> Iec104Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_connected(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            await self._drop()
            loop = asyncio.get_running_loop()
            reader, writer = await open_stream(self.host, self.port)
            self._writer = writer
            self._link = Link("master", self.link_config, loop.time())
            self._started = loop.create_future()
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer, self._link))
            self._link.start(loop.time())
            self._flush()
            await self._started  # resolved by STARTDT con, failed by t1 / a closed link

    async def _drop(self) -> None:
        """Close the current TCP link (a late answer must never be taken for the next request's)."""
        task, self._reader_task = self._reader_task, None
        writer, self._writer = self._writer, None
        self._link = None
        if task is not None and task is not asyncio.current_task():
            # first, so that the reader does not take our own close for a lost link; cancelled until
            # done (a single cancel can be swallowed, and the close would wait for good)
            await cancel_and_wait([task])
        await close_stream(writer)

    def _flush(self) -> None:
        if self._link is not None and self._writer is not None and not self._writer.is_closing():
            data = self._link.data_to_send()
            if data:
                self._writer.write(data)

    def _fail_waiters(self, reason: str) -> None:
        self.last_error = reason
        error = DeviceError(f"{self}: {reason}")
        for future in (self._started, self._test, self._exchange.done if self._exchange else None):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved: nobody may be waiting any more
        self._window.set()

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link
    ) -> None:
        loop = asyncio.get_running_loop()
        reason = "connection closed by the device"
        try:
            while True:
                deadline = link.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                    async with asyncio.timeout(timeout):  # arrives with the data (close then hung)
                        data = await reader.read(4096)
                except TimeoutError:
                    events = link.on_timer(loop.time())
                else:
                    if not data:
                        break
                    events = link.receive(data, loop.time())
                timeout_event = next((e for e in events if isinstance(e, LinkTimeout)), None)
                if timeout_event is not None:
                    reason = f"{timeout_event.timer} expired: {timeout_event.reason}"
                    break
                for event in events:
                    self._on_event(event)
                self._flush()
        except ProtocolError as error:
            reason = f"bad frame from the device: {error}"
        except (ConnectionError, OSError) as error:
            reason = f"connection lost: {error}"
        except asyncio.CancelledError:
            self._fail_waiters("connection closed")
            raise
        log.info("%s: %s", self, reason)
        link.failed = link.failed or reason
        writer.close()
        self._fail_waiters(reason)
        if self.auto_reconnect and not self._closing:
            self._reconnect_task = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        with contextlib.suppress(DeviceError):
            await self._retrying(self._ensure_connected, "reconnect")
            self.reconnects += 1

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """``attempt`` with the retry policy; a failed attempt drops the link (no late answers)."""
        return await with_retries(attempt, f"{self}: {what}", self.policy, on_failure=self._drop)

    # -- incoming ---------------------------------------------------------------------------------
    def _on_event(self, event: object) -> None:
        if isinstance(event, Started):
            if self._started is not None and not self._started.done():
                self._started.set_result(None)
        elif isinstance(event, Acknowledged):
            self._window.set()
        elif isinstance(event, TestConfirmed):
            if self._test is not None and not self._test.done():
                self._test.set_result(None)
        elif isinstance(event, AsduReceived):
            self._on_asdu(asdu.decode(event.asdu))

    def _on_asdu(self, unit: Asdu) -> None:
        exchange = self._exchange
        if unit.type_id in (100, 101, 103):
            if exchange is None or exchange.type_id != unit.type_id or exchange.done.done():
                return  # a late or foreign confirmation
            if unit.negative or unit.cot in _NEGATIVE_CAUSES:
                exchange.done.set_exception(
                    DeviceRejected(
                        f"{self}: {unit.type_name} CA {unit.common_address} rejected: negative confirmation "
                        f"({cause_name(unit.cot)})"
                    )
                )
            elif unit.cot == Cause.ACTIVATION_CON:
                exchange.confirmed = True
                if unit.type_id == 103:
                    exchange.done.set_result(unit.objects[0].time)
            elif unit.cot == Cause.ACTIVATION_TERMINATION:
                exchange.done.set_result(exchange.readings)
            return
        if unit.type_id == 70:
            coi = unit.objects[0].qualifier
            log.info("%s: station %s initialised (COI %s)", self, unit.common_address, coi)
            return
        received_at = datetime.now(UTC)
        for obj in unit.objects:
            if obj.value is None:
                continue
            reading = self._reading(unit, obj, received_at)
            if exchange is not None and unit.cot in exchange.data_causes and not exchange.done.done():
                exchange.readings[obj.ioa] = reading
            self._deliver(reading)

    def _reading(self, unit: Asdu, obj: InformationObject, received_at: datetime) -> Reading:
        value = obj.value if obj.value is not None else Decimal(0)
        if obj.ioa in self.scales:
            value = value * self.scales[obj.ioa]
        timestamp = received_at
        if obj.time is not None:
            with contextlib.suppress(ProtocolError):
                timestamp = obj.time.to_datetime(self.station_tz)
        return Reading(
            obj.ioa,
            value,
            obj.quality,
            timestamp,
            obj.time is not None,
            unit.type_id,
            unit.cot,
            unit.common_address,
            obj.sequence,
        )

    def _deliver(self, reading: Reading) -> None:
        if self.readings.full():  # nobody drains the queue: keep the newest
            self.readings.get_nowait()
        self.readings.put_nowait(reading)
        if self.on_reading is not None:
            try:
                self.on_reading(reading)
            except Exception:
                log.exception("%s: reading callback failed", self)

    # -- requests ---------------------------------------------------------------------------------
    async def general_interrogation(self, qoi: int = 20) -> dict[int, Reading]:
        """Station (20) or group (21..36) interrogation; returns the points sent before actterm."""
        if not 20 <= qoi <= 36:
            raise ValueError(f"QOI {qoi} outside 20..36")
        command = asdu.command(
            100, Cause.ACTIVATION, self.common_address, qualifier=qoi, originator=self.originator
        )
        return await self._request(f"general interrogation QOI {qoi}", command, frozenset({qoi}))

    async def counter_interrogation(self, rqt: int = 5, freeze: int = 0) -> dict[int, Reading]:
        """Counter interrogation: rqt 5 = all counters (1..4 = group); freeze 0 read, 1 freeze,
        2 freeze and reset, 3 reset.  Returns the counters sent before actterm (none for a freeze)."""
        if not 1 <= rqt <= 5 or not 0 <= freeze <= 3:
            raise ValueError(f"RQT {rqt} / FRZ {freeze} outside 1..5 / 0..3")
        command = asdu.command(
            101,
            Cause.ACTIVATION,
            self.common_address,
            qualifier=rqt | freeze << 6,
            originator=self.originator,
        )
        causes = frozenset({Cause.REQUESTED_BY_GENERAL_COUNTER + (0 if rqt == 5 else rqt)})
        return await self._request(f"counter interrogation RQT {rqt} FRZ {freeze}", command, causes)

    async def clock_sync(self, when: datetime | None = None) -> CP56Time2a | None:
        """Set the station's clock (to now by default); returns the time in its confirmation."""
        when = (when or datetime.now(UTC)).astimezone(self.station_tz)
        command = asdu.command(
            103,
            Cause.ACTIVATION,
            self.common_address,
            time=CP56Time2a.from_datetime(when),
            originator=self.originator,
        )
        return await self._request("clock synchronisation", command, frozenset())

    async def test_frame(self) -> None:
        """Send TESTFR act and wait for the confirmation (the link does this by itself after t3)."""

        async def attempt() -> None:
            await self._ensure_connected()
            loop = asyncio.get_running_loop()
            self._test = loop.create_future()
            self._link.test(loop.time())  # type: ignore[union-attr]
            self._flush()
            await self._test

        async with self._request_lock:
            await self._retrying(attempt, "TESTFR")

    async def _request(self, what: str, command: Asdu, data_causes: frozenset[int]):
        async def attempt():
            await self._ensure_connected()
            loop = asyncio.get_running_loop()
            exchange = _Exchange(command.type_id, data_causes, loop.create_future())
            self._exchange = exchange
            try:
                await self._send(asdu.encode(command))
                return await exchange.done
            finally:
                self._exchange = None

        async with self._request_lock:
            return await self._retrying(attempt, f"{what} CA {self.common_address}")

    async def _send(self, data: bytes) -> None:
        while True:
            link = self._link
            if link is None or link.failed:
                raise DeviceError(f"{self}: link closed ({self.last_error or 'not connected'})")
            if link.can_send:
                link.send_asdu(data, asyncio.get_running_loop().time())
                self._flush()
                return
            self._window.clear()
            await self._window.wait()

"""What every simulated field device shares: a clock, a pluggable value source, energy counters,
fault injection and an asyncio TCP server that serves one protocol's frames.

A device takes its physical values (power, voltage, ...) from a :class:`ValueSource`; the simulator
plugs its AC power-flow time series in there, tests plug constants.  Counters integrate a rate from the
source over the device's own clock, as a real meter's registers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ValueSource(Protocol):
    """Physical values by quantity name at a time, e.g. ``p_kw``, ``q_kvar``, ``u_v``, ``i_a``."""

    def read(self, quantity: str, t: datetime) -> float: ...


class StaticSource:
    """Values set by hand or by functions of time; the default source of a stand-alone device."""

    def __init__(self, values: dict[str, float | Callable[[datetime], float]] | None = None) -> None:
        self._values: dict[str, float | Callable[[datetime], float]] = dict(values or {})

    def set(self, quantity: str, value: float | Callable[[datetime], float]) -> None:
        self._values[quantity] = value

    def read(self, quantity: str, t: datetime) -> float:
        try:
            value = self._values[quantity]
        except KeyError:
            raise KeyError(f"no value for quantity {quantity!r}") from None
        return float(value(t)) if callable(value) else float(value)


@dataclass
class Faults:
    """Misbehaviour to inject; each field can be changed while the device runs."""

    offline: bool = False  # refuse new connections and drop open ones
    delay_s: float = 0.0  # answer this much later (a slow link or a busy meter)
    garbage: bool = False  # answer with random bytes instead of a frame
    bad_checksum: bool = False  # answer with a frame whose checksum is wrong
    silent: bool = False  # accept requests but never answer


@dataclass
class DeviceClock:
    """The device's own clock: true time plus an offset that drifts, settable by a time-sync command."""

    offset_s: float = 0.0
    drift_ppm: float = 0.0
    now_fn: Callable[[], datetime] = utc_now
    _epoch: datetime = field(default_factory=utc_now)

    def now(self) -> datetime:
        true_now = self.now_fn()
        drift = (true_now - self._epoch).total_seconds() * self.drift_ppm * 1e-6
        return true_now + timedelta(seconds=self.offset_s + drift)

    def set(self, device_time: datetime) -> None:
        """Time sync: from now on the device shows ``device_time`` advancing with true time."""
        true_now = self.now_fn()
        self._epoch = true_now
        self.offset_s = (device_time - true_now).total_seconds()


class Counter:
    """An accumulating register (energy, carbon): integral of a rate, floored to the resolution.

    ``rate_per_hour`` gives the register's increase per hour at a time (e.g. kW for a kWh register);
    integration is by the trapezoidal rule between successive reads, so reading more often is more
    accurate, as with a real meter's sampling.  Only non-negative increments count unless
    ``bidirectional`` (a forward-energy register never runs backwards).
    """

    def __init__(
        self,
        rate_per_hour: Callable[[datetime], float],
        start: Decimal | str = "0",
        resolution: Decimal | str = "0.01",
        rollover: Decimal | str | None = None,
        bidirectional: bool = False,
    ) -> None:
        self._rate = rate_per_hour
        self._exact = Decimal(start)
        self.resolution = Decimal(resolution)
        self.rollover = None if rollover is None else Decimal(rollover)
        self.bidirectional = bidirectional
        self._last_t: datetime | None = None
        self._last_rate = 0.0

    def advance(self, t: datetime) -> None:
        rate = self._rate(t)
        if self._last_t is not None and t > self._last_t:
            hours = (t - self._last_t).total_seconds() / 3600.0
            increment = 0.5 * (rate + self._last_rate) * hours
            if increment > 0 or self.bidirectional:
                self._exact += Decimal(repr(increment))
        self._last_t, self._last_rate = t, rate
        if self.rollover is not None and self._exact >= self.rollover:
            self._exact -= self.rollover

    def add(self, amount: Decimal) -> None:
        self._exact += amount

    def value(self, t: datetime | None = None) -> Decimal:
        """The register as the device shows it: floored to the resolution, with its digits."""
        if t is not None:
            self.advance(t)
        return self._exact.quantize(self.resolution, rounding=ROUND_FLOOR)

    @property
    def exact(self) -> Decimal:
        return self._exact


class Connection:
    """One client connection to a device server; protocols with spontaneous data keep it to push."""

    def __init__(self, server: DeviceServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.state: dict[str, object] = {}  # per-connection protocol state (sequence numbers, ...)

    async def send(self, frame: bytes) -> None:
        if self.server.faults.offline or self.writer.is_closing():
            return
        self.writer.write(frame)
        await self.writer.drain()


class DeviceServer:
    """An asyncio TCP server speaking one protocol, with fault injection.

    Subclasses implement :meth:`split_frames` (cut complete frames from the receive buffer, dropping
    bytes that cannot start a frame) and :meth:`handle` (one request frame -> reply frame or None);
    :meth:`corrupt_checksum` says how to break this protocol's checksum.  Protocols that push data
    (IEC 104 spontaneous transmission) use :meth:`on_connect` and :meth:`Connection.send`.
    """

    protocol = "?"

    def __init__(self, name: str, faults: Faults | None = None, clock: DeviceClock | None = None) -> None:
        self.name = name
        self.faults = faults or Faults()
        self.clock = clock or DeviceClock()
        self.connections: set[Connection] = set()
        self.requests_served = 0
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._random = random.Random(name)

    # -- to implement -----------------------------------------------------------------------------
    def split_frames(self, buffer: bytearray) -> list[bytes]:
        raise NotImplementedError

    async def handle(self, frame: bytes, connection: Connection) -> bytes | list[bytes] | None:
        raise NotImplementedError

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """Default: flip the last byte (override where the checksum sits elsewhere)."""
        return frame[:-1] + bytes([frame[-1] ^ 0xFF]) if frame else frame

    async def on_connect(self, connection: Connection) -> None:
        """Called when a client connects."""

    async def on_disconnect(self, connection: Connection) -> None:
        """Called when a client goes away."""

    # -- serving ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"device {self.name} is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self.__serve, host, port)
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> DeviceServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def __serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.offline:
            writer.close()
            return
        connection = Connection(self, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        buffer = bytearray()
        try:
            await self.on_connect(connection)
            while not reader.at_eof():
                chunk = await reader.read(4096)
                if not chunk or self.faults.offline:
                    break
                buffer.extend(chunk)
                for frame in self.split_frames(buffer):
                    await self.__answer(frame, connection)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the device is stopping: both end this connection quietly
        except Exception:  # a device must survive whatever a client sends; log and drop the link
            log.exception("device %s: error serving %s", self.name, connection.peer)
        finally:
            self._handlers.discard(task)
            self.connections.discard(connection)
            with contextlib.suppress(Exception):
                await self.on_disconnect(connection)
            writer.close()

    async def __answer(self, frame: bytes, connection: Connection) -> None:
        replies = await self.handle(frame, connection)
        self.requests_served += 1
        if replies is None or self.faults.silent:
            return
        if isinstance(replies, bytes | bytearray):
            replies = [bytes(replies)]
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        for reply in replies:
            await self.transmit(connection, reply, delayed=True)

    async def transmit(self, connection: Connection, frame: bytes, delayed: bool = False) -> None:
        """Send one frame as this device would with its faults: silent, slow, garbage, broken.
        Pushing protocols call this for unsolicited frames (``delayed``: the delay was applied)."""
        if self.faults.silent or not frame:
            return
        if self.faults.delay_s and not delayed:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.garbage:
            frame = self._random.randbytes(len(frame))
        elif self.faults.bad_checksum:
            frame = self.corrupt_checksum(frame)
        await connection.send(frame)

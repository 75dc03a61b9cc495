"""What every simulated field device shares: a clock, a pluggable value source, energy counters,
fault injection and an asyncio TCP server that serves one protocol's frames.

A device takes its physical values (power, voltage, ...) from a :class:`ValueSource`; the simulator
plugs its AC power-flow time series in there, tests plug constants.  Counters integrate a rate from the
source over the device's own clock, as a real meter's registers do.

Every device offers the simulator the same few calls (:class:`DeviceServer`): :meth:`~DeviceServer.bind`
a value source and a clock, :meth:`~DeviceServer.bind_counters` to replace its energy registers,
:meth:`~DeviceServer.inject` a fault object, :meth:`~DeviceServer.start` serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

log = logging.getLogger(__name__)

# the names a meter's forward/reverse active-energy registers go by in counter_registers()
FORWARD_ENERGY, REVERSE_ENERGY = "energy_forward_kwh", "energy_reverse_kwh"


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


class DerivedSource:
    """What a three-phase meter shows besides P, Q and U when its source has only those: per-phase
    voltages, currents, power factor and frequency derived from them (balanced phases, 50 Hz)."""

    def __init__(self, inner: ValueSource, f_hz: float = 50.0) -> None:
        self.inner, self.f_hz = inner, f_hz

    def _try(self, quantity: str, t: datetime) -> float | None:
        try:
            return self.inner.read(quantity, t)
        except KeyError:
            return None

    def read(self, quantity: str, t: datetime) -> float:
        value = self._try(quantity, t)
        if value is not None:
            return value
        if quantity in ("u_v", "u_b_v", "u_c_v"):
            return self.inner.read("u_a_v", t)
        p = self.inner.read("p_kw", t)
        q = self._try("q_kvar", t) or 0.0
        s_kva = math.hypot(p, q)
        if quantity in ("i_a", "i_a_a", "i_b_a", "i_c_a"):
            u = self.read("u_a_v", t)
            return s_kva * 1000.0 / (3.0 * u) if u else 0.0
        if quantity == "pf":
            return abs(p) / s_kva if s_kva else 1.0
        if quantity in ("f_hz", "frequency_hz"):
            return self.f_hz
        raise KeyError(f"no value for quantity {quantity!r}")


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

    def show(self, total: Decimal, t: datetime) -> None:
        """Show ``total`` (wrapped at the roll-over) as of ``t``: a register fed its total from outside
        instead of integrating its rate."""
        self._exact = total % self.rollover if self.rollover is not None else total
        self._last_t = t

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


class DeviceServer(ABC):
    """An asyncio TCP server speaking one protocol, with fault injection.

    Subclasses implement :meth:`split_frames` (cut complete frames from the receive buffer, dropping
    bytes that cannot start a frame) and :meth:`handle` (one request frame -> reply frame or None);
    :meth:`corrupt_checksum` says how to break this protocol's checksum.  Protocols that push data
    (IEC 104 spontaneous transmission) use :meth:`on_connect` and :meth:`Connection.send`.
    """

    protocol = "?"
    reads_at_true_time = False  # True: asks its source at true time (clock.now_fn), not at its clock's time

    def __init__(self, name: str, faults: Faults | None = None, clock: DeviceClock | None = None) -> None:
        self.name = name
        self.faults = faults or Faults()
        self.clock = clock or DeviceClock()
        self.source: ValueSource = StaticSource()
        self.connections: set[Connection] = set()
        self.requests_served = 0
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._random = random.Random(name)

    # -- to implement -----------------------------------------------------------------------------
    @abstractmethod
    def split_frames(self, buffer: bytearray) -> list[bytes]:
        """Take every complete request frame off the front of ``buffer``."""

    @abstractmethod
    async def handle(self, frame: bytes, connection: Connection) -> bytes | list[bytes] | None:
        """The answer(s) to one request frame (None: no answer)."""

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """Default: flip the last byte (override where the checksum sits elsewhere)."""
        return frame[:-1] + bytes([frame[-1] ^ 0xFF]) if frame else frame

    async def on_connect(self, connection: Connection) -> None:  # noqa: B027  (optional hook)
        """Called when a client connects."""

    # -- what the simulator calls -----------------------------------------------------------------
    def bind(self, source: ValueSource, clock: DeviceClock | None = None) -> None:
        """Take physical values from ``source`` (and tell time by ``clock``) from now on."""
        self.source = source
        if clock is not None:
            self.clock = clock

    def inject(self, faults: Faults) -> None:
        """Misbehave as ``faults`` says; the caller may change (or drive) the object while serving."""
        self.faults = faults

    def counter_registers(self) -> dict[str, Counter]:
        """The accumulating registers a binding may replace, by the quantity each counts."""
        return {}

    def bind_counters(self, counters: Mapping[str, Counter]) -> None:
        """Replace registers of :meth:`counter_registers` (e.g. by counters that follow a truth)."""
        unknown = sorted(set(counters) - set(self.counter_registers()))
        if unknown:
            raise KeyError(f"device {self.name} has no counter {', '.join(unknown)}")
        self._set_counters(counters)

    def _set_counters(self, counters: Mapping[str, Counter]) -> None:  # noqa: B027  (optional hook)
        """Store checked counters (devices with counters override)."""

    def garbled(self, frame: bytes) -> bytes:
        """Random bytes as long as ``frame`` (the garbage fault)."""
        return self._random.randbytes(len(frame))

    async def on_disconnect(self, connection: Connection) -> None:  # noqa: B027  (optional hook)
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
            frame = self.garbled(frame)
        elif self.faults.bad_checksum:
            frame = self.corrupt_checksum(frame)
        await connection.send(frame)

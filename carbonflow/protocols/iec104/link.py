"""The IEC 60870-5-104 link layer as a sans-IO state machine: bytes and time in, bytes and events out.

One :class:`Link` per TCP connection, for either end (``master`` = controlling station, ``outstation`` =
controlled station).  The asyncio layers call :meth:`Link.receive` with what the socket read,
:meth:`Link.send_asdu` / :meth:`Link.start` / :meth:`Link.stop` to transmit, write out
:meth:`Link.data_to_send`, and call :meth:`Link.on_timer` at :meth:`Link.next_deadline`.  Times are
plain seconds on any monotonic clock (``loop.time()``), so tests drive the machine with made-up times.

Rules kept (IEC 60870-5-104 §5, §9):

* **k**: at most k I-frames sent and not yet acknowledged; :attr:`Link.can_send` says when there is room.
* **w**: acknowledge at the latest after w received I-frames (an S-frame, unless an I-frame goes first).
* **t1**: a sent I-frame or a U activation not acknowledged/confirmed within t1 -> :class:`LinkTimeout`
  (the connection must be closed).
* **t2**: received I-frames are acknowledged at the latest t2 after the first unacknowledged one.
* **t3**: after t3 without receiving anything, send TESTFR act (which t1 then supervises).
* Sequence numbers are 15-bit; a received N(S) out of order or an N(R) acknowledging frames never sent
  raises :class:`LinkError` (close the connection; 104 has no in-band recovery).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.iec104 import apci
from carbonflow.protocols.iec104.apci import IFrame, SFrame, UFrame, UFunction, seq_add, seq_distance

Role = Literal["master", "outstation"]


class LinkError(ProtocolError):
    """The peer broke the link procedure (sequence numbers, acknowledgements); close the connection."""


@dataclass(frozen=True)
class LinkConfig:
    k: int = 12
    w: int = 8
    t1_s: float = 15.0  # wait for acknowledgement / confirmation
    t2_s: float = 10.0  # acknowledge received I-frames at the latest after this
    t3_s: float = 20.0  # idle time before a test frame

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 32767 or not 1 <= self.w <= 32767:
            raise ValueError(f"k={self.k} and w={self.w} must lie in 1..32767")
        if self.w > self.k:
            raise ValueError(f"w={self.w} must not exceed k={self.k}")
        if not 0 < self.t2_s < self.t1_s:
            raise ValueError(f"need 0 < t2 ({self.t2_s}) < t1 ({self.t1_s})")
        if self.t3_s <= 0:
            raise ValueError(f"t3 ({self.t3_s}) must be positive")


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AsduReceived:
    asdu: bytes
    send_seq: int


@dataclass(frozen=True)
class Started:
    """Data transfer is active (STARTDT confirmed, or confirmed by us on the outstation)."""


@dataclass(frozen=True)
class Stopped:
    """Data transfer stopped (STOPDT confirmed)."""


@dataclass(frozen=True)
class Acknowledged:
    """The peer acknowledged ``count`` of our I-frames: the send window has room again."""

    count: int


@dataclass(frozen=True)
class TestConfirmed:
    """The peer answered our TESTFR act."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True)
class LinkTimeout:
    """A timer ran out; the connection must be closed."""

    timer: str
    reason: str


Event = AsduReceived | Started | Stopped | Acknowledged | TestConfirmed | LinkTimeout


class Link:
    def __init__(self, role: Role = "master", config: LinkConfig | None = None, now: float = 0.0) -> None:
        if role not in ("master", "outstation"):
            raise ValueError(f"role must be master or outstation, not {role!r}")
        self.role = role
        self.config = config or LinkConfig()
        self.started = False
        self.failed: str | None = None
        self.send_seq = 0  # V(S): N(S) of our next I-frame
        self.recv_seq = 0  # V(R): N(S) we expect next from the peer
        self._unacked: deque[tuple[int, float]] = deque()  # (N(S), time sent) of our I-frames
        self._received_unacked = 0
        self._t2_deadline: float | None = None
        self._pending_u: dict[UFunction, float] = {}  # U activations awaiting con -> t1 deadline
        self._stop_requested = False  # peer asked STOPDT while our I-frames were unacknowledged
        self._last_received = now
        self._rx = bytearray()
        self._tx = bytearray()

    # -- inspection -------------------------------------------------------------------------------
    @property
    def unacknowledged(self) -> int:
        return len(self._unacked)

    @property
    def can_send(self) -> bool:
        """True when an I-frame may go out now: data transfer active and the k window not full."""
        return (
            self.failed is None
            and self.started
            and not self._stop_requested
            and UFunction.STOPDT_ACT not in self._pending_u
            and len(self._unacked) < self.config.k
        )

    def data_to_send(self) -> bytes:
        out = bytes(self._tx)
        self._tx.clear()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing to supervise, e.g. after a failure)."""
        if self.failed is not None:
            return None
        deadlines = [self._last_received + self.config.t3_s]
        if self._unacked:
            deadlines.append(self._unacked[0][1] + self.config.t1_s)
        deadlines.extend(self._pending_u.values())
        if self._t2_deadline is not None:
            deadlines.append(self._t2_deadline)
        return min(deadlines)

    # -- commands from the application ------------------------------------------------------------
    def start(self, now: float) -> None:
        """Master: ask the outstation to start data transfer (STARTDT act)."""
        self._send_u_activation(UFunction.STARTDT_ACT, now)

    def stop(self, now: float) -> None:
        """Master: ask to stop data transfer; received I-frames are acknowledged first."""
        self._acknowledge_received()
        self._send_u_activation(UFunction.STOPDT_ACT, now)

    def test(self, now: float) -> None:
        if UFunction.TESTFR_ACT not in self._pending_u:
            self._send_u_activation(UFunction.TESTFR_ACT, now)

    def send_asdu(self, asdu: bytes, now: float) -> None:
        if not self.can_send:
            why = self.failed or ("data transfer not started" if not self.started else "send window (k) full")
            raise LinkError(f"cannot send an I-frame now: {why}")
        self._tx += apci.encode_i(self.send_seq, self.recv_seq, asdu)
        self._unacked.append((self.send_seq, now))
        self.send_seq = seq_add(self.send_seq)
        self._received_unacked = 0  # the I-frame's N(R) acknowledges everything received
        self._t2_deadline = None

    # -- input from the peer ----------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the socket; complete APDUs are processed, a partial one is kept."""
        self._rx += data
        events: list[Event] = []
        for frame in apci.split(self._rx):
            events.extend(self.receive_frame(frame, now))
        return events

    def receive_frame(self, frame: bytes, now: float) -> list[Event]:
        if self.failed is not None:
            raise LinkError(f"link already failed: {self.failed}")
        apdu = apci.decode(frame)
        self._last_received = now
        if isinstance(apdu, IFrame):
            return self._on_i_frame(apdu, now)
        if isinstance(apdu, SFrame):
            return self._on_ack(apdu.recv_seq)
        return self._on_u_frame(apdu)

    def on_timer(self, now: float) -> list[Event]:
        """Run the timers due at ``now``: a t1 expiry fails the link, t2 acknowledges, t3 tests."""
        if self.failed is not None:
            return []
        t1 = self.config.t1_s
        if self._unacked and now >= self._unacked[0][1] + t1:
            return [self._fail("t1", f"I-frame N(S)={self._unacked[0][0]} not acknowledged within t1={t1} s")]
        for function, deadline in self._pending_u.items():
            if now >= deadline:
                return [self._fail("t1", f"{function.label} not confirmed within t1={t1} s")]
        if self._t2_deadline is not None and now >= self._t2_deadline:
            self._acknowledge_received()
        if now >= self._last_received + self.config.t3_s:
            self.test(now)
            self._last_received = now  # re-arm t3; t1 now supervises the test frame
        return []

    # -- internals --------------------------------------------------------------------------------
    def _fail(self, timer: str, reason: str) -> LinkTimeout:
        self.failed = reason
        self.started = False
        return LinkTimeout(timer, reason)

    def _send_u_activation(self, function: UFunction, now: float) -> None:
        self._tx += apci.encode_u(function)
        self._pending_u[function] = now + self.config.t1_s

    def _acknowledge_received(self) -> None:
        if self._received_unacked:
            self._tx += apci.encode_s(self.recv_seq)
            self._received_unacked = 0
        self._t2_deadline = None

    def _on_i_frame(self, frame: IFrame, now: float) -> list[Event]:
        if frame.send_seq != self.recv_seq:
            raise LinkError(f"sequence error: expected N(S)={self.recv_seq}, received N(S)={frame.send_seq}")
        events = self._on_ack(frame.recv_seq)
        self.recv_seq = seq_add(self.recv_seq)
        self._received_unacked += 1
        if self._t2_deadline is None:
            self._t2_deadline = now + self.config.t2_s
        if self._received_unacked >= self.config.w:
            self._acknowledge_received()
        events.append(AsduReceived(frame.asdu, frame.send_seq))
        return events

    def _on_ack(self, recv_seq: int) -> list[Event]:
        oldest = self._unacked[0][0] if self._unacked else self.send_seq
        if seq_distance(oldest, recv_seq) > len(self._unacked):
            raise LinkError(
                f"acknowledgement N(R)={recv_seq} outside the unacknowledged frames "
                f"{oldest}..{self.send_seq} (V(S))"
            )
        count = seq_distance(oldest, recv_seq)
        for _ in range(count):
            self._unacked.popleft()
        events: list[Event] = [Acknowledged(count)] if count else []
        if self._stop_requested and not self._unacked:
            events.extend(self._confirm_stop())
        return events

    def _confirm_stop(self) -> list[Event]:
        self._stop_requested = False
        self._acknowledge_received()
        self._tx += apci.encode_u(UFunction.STOPDT_CON)
        self.started = False
        return [Stopped()]

    def _on_u_frame(self, frame: UFrame) -> list[Event]:
        function = frame.function
        if function is UFunction.TESTFR_ACT:
            self._tx += apci.encode_u(UFunction.TESTFR_CON)
            return []
        if function is UFunction.STARTDT_ACT:
            self._tx += apci.encode_u(UFunction.STARTDT_CON)
            was_started, self.started = self.started, True
            return [] if was_started else [Started()]
        if function is UFunction.STOPDT_ACT:
            if self._unacked:  # confirm only when the peer has acknowledged all our I-frames
                self._stop_requested = True
                return []
            return self._confirm_stop()
        activation = UFunction[function.name.replace("_CON", "_ACT")]
        if self._pending_u.pop(activation, None) is None:
            return []  # an unsolicited confirmation carries no information; tolerate it
        if function is UFunction.STARTDT_CON:
            self.started = True
            return [Started()]
        if function is UFunction.STOPDT_CON:
            self.started = False
            return [Stopped()]
        return [TestConfirmed()]

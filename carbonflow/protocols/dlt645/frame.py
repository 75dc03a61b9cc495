"""DL/T 645-2007 link frames: ``[FE..] 68 A0..A5 68 C L DATA CS 16``.

The address is 12 BCD digits sent low byte first (nameplate ``000102030425`` -> ``25 04 03 02 01 00``),
a byte ``AA`` is a wildcard digit pair, ``99..99`` is the broadcast address.  Every DATA byte travels
plus 33H.  CS is the byte sum from the first 68H to the end of DATA (the FE wake-up preamble is not
counted).  :func:`parse_frame` checks one captured frame strictly; :func:`take_frame` cuts frames out of
a byte stream as a serial server delivers it (preambles, stray bytes, split reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonflow.protocols.errors import ProtocolError

START = 0x68
END = 0x16
PREAMBLE_BYTE = 0xFE
HEADER_SIZE = 10  # 68 A0..A5 68 C L
OVERHEAD = 12  # header + CS + 16
MAX_DATA = 255  # L is one byte (the standard caps reads at 200 and writes at 50; we accept what L allows)
BROADCAST = "999999999999"
WILDCARD = "AAAAAAAAAAAA"

DIRECTION_REPLY = 0x80  # D7: slave -> master
ABNORMAL = 0x40  # D6: error reply, DATA is the error word
FOLLOW_UP = 0x20  # D5: more data follows (read with follow-up frames)
FUNCTION_MASK = 0x1F

FUNCTIONS = {
    0x08: "broadcast time sync",
    0x11: "read",
    0x12: "read follow-up",
    0x13: "read address",
    0x14: "write",
    0x15: "write address",
    0x16: "freeze",
    0x17: "change baud rate",
    0x18: "change password",
    0x19: "max-demand reset",
    0x1A: "meter clear",
    0x1B: "event clear",
}


def checksum(frame_without_cs: bytes) -> int:
    return sum(frame_without_cs) & 0xFF


def scramble(plain: bytes) -> bytes:
    """DATA as sent: every byte plus 33H."""
    return bytes((byte + 0x33) & 0xFF for byte in plain)


def unscramble(wire: bytes) -> bytes:
    """DATA as received: every byte minus 33H."""
    return bytes((byte - 0x33) & 0xFF for byte in wire)


def encode_address(address: str) -> bytes:
    """Nameplate address (12 digits, ``AA`` pairs allowed, shorter ones padded with 0) to wire bytes."""
    text = str(address).strip().upper().replace(" ", "")
    if not text or len(text) > 12:
        raise ProtocolError(f"address {address!r} must have 1..12 digits")
    text = text.rjust(12, "0")
    pairs = [text[i : i + 2] for i in range(0, 12, 2)]
    for pair in pairs:
        if not (pair.isdigit() or pair == "AA"):
            raise ProtocolError(f"address {address!r}: {pair!r} is neither two BCD digits nor AA")
    return bytes.fromhex(text)[::-1]


def decode_address(wire: bytes) -> str:
    return wire[::-1].hex().upper()


def address_matches(request_address: str, meter_address: str) -> bool:
    """Does a request for ``request_address`` (AA pairs match anything) reach this meter?"""
    request, meter = request_address.upper(), meter_address.upper()
    return len(request) == len(meter) == 12 and all(
        request[i : i + 2] in ("AA", meter[i : i + 2]) for i in range(0, 12, 2)
    )


@dataclass(frozen=True)
class Frame:
    """One frame with DATA already minus 33H."""

    address: str  # nameplate order, e.g. "000102030425"
    control: int
    data: bytes
    preamble: int = 0  # number of FE bytes before it

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def is_reply(self) -> bool:
        return bool(self.control & DIRECTION_REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def has_follow_up(self) -> bool:
        return bool(self.control & FOLLOW_UP)

    @property
    def function_name(self) -> str:
        return FUNCTIONS.get(self.function, f"function {self.function:02X}")

    def encode(self) -> bytes:
        """The frame's bytes again; the address is taken as received (even non-BCD digits)."""
        return _assemble(bytes.fromhex(self.address)[::-1], self.control, self.data, self.preamble)


def encode_frame(address: str, control: int, data: bytes = b"", preamble: int = 0) -> bytes:
    """Build a frame; ``data`` is plain (the 33H offset is applied here)."""
    return _assemble(encode_address(address), control, data, preamble)


def _assemble(address_wire: bytes, control: int, data: bytes, preamble: int) -> bytes:
    if not 0 <= control <= 0xFF:
        raise ProtocolError(f"control code {control} is not one byte")
    if len(data) > MAX_DATA:
        raise ProtocolError(f"data of {len(data)} bytes exceeds the one-byte length field")
    if not 0 <= preamble <= 16:
        raise ProtocolError(f"preamble of {preamble} FE bytes is out of range 0..16")
    body = bytes([START]) + address_wire + bytes([START, control, len(data)]) + scramble(data)
    return bytes([PREAMBLE_BYTE]) * preamble + body + bytes([checksum(body), END])


def parse_frame(raw: bytes) -> Frame:
    """Exactly one frame (any number of leading FE) -> Frame; ProtocolError says what is wrong."""
    preamble = 0
    while preamble < len(raw) and raw[preamble] == PREAMBLE_BYTE:
        preamble += 1
    frame = raw[preamble:]
    if not frame:
        raise ProtocolError("empty frame (no bytes after the FE preamble)")
    if frame[0] != START:
        raise ProtocolError(f"frame must start with 68, found {frame[0]:02X}")
    if len(frame) < OVERHEAD:
        raise ProtocolError(f"truncated frame: {len(frame)} bytes, a frame has at least {OVERHEAD}")
    if frame[7] != START:
        raise ProtocolError(f"second start byte must be 68, found {frame[7]:02X}")
    length = frame[9]
    expected = OVERHEAD + length
    if len(frame) < expected:
        raise ProtocolError(f"truncated frame: L={length} needs {expected} bytes, got {len(frame)}")
    if len(frame) > expected:
        raise ProtocolError(f"length mismatch: L={length} needs {expected} bytes, got {len(frame)}")
    if frame[-1] != END:
        raise ProtocolError(f"end byte must be 16, found {frame[-1]:02X}")
    computed = checksum(frame[: HEADER_SIZE + length])
    if computed != frame[-2]:
        raise ProtocolError(f"bad checksum: frame carries {frame[-2]:02X}, computed {computed:02X}")
    return Frame(
        address=decode_address(frame[1:7]),
        control=frame[8],
        data=unscramble(frame[HEADER_SIZE : HEADER_SIZE + length]),
        preamble=preamble,
    )


def _candidate(buffer: bytearray, start: int) -> tuple[str, int]:
    """Classify a 68H at ``start``: ("valid", size), ("incomplete", 0), ("bad-checksum"|"invalid", 0)."""
    available = len(buffer) - start
    if available < HEADER_SIZE:
        return ("incomplete" if available < 8 or buffer[start + 7] == START else "invalid"), 0
    if buffer[start + 7] != START:
        return "invalid", 0
    size = OVERHEAD + buffer[start + 9]
    if available < size:
        return "incomplete", 0
    if buffer[start + size - 1] != END:
        return "invalid", 0
    if checksum(buffer[start : start + size - 2]) != buffer[start + size - 2]:
        return "bad-checksum", 0
    return "valid", size


def take_frame(buffer: bytearray, rejects: list[str] | None = None) -> bytes | None:
    """Remove and return the first valid frame in ``buffer`` (without preamble), or None for "need more".

    Bytes before it (FE preambles, line noise, broken frames) are dropped.  A 68H that starts an
    incomplete frame is kept, unless a complete valid frame follows it, so that a stray 68H with a large
    length byte cannot stall the stream.  Frames with a good shape but a wrong checksum are reported in
    ``rejects`` (the client turns them into a clear error).
    """
    first_incomplete: int | None = None
    start = buffer.find(START)
    while start >= 0:
        verdict, size = _candidate(buffer, start)
        if verdict == "valid":
            frame = bytes(buffer[start : start + size])
            del buffer[: start + size]
            return frame
        if verdict == "incomplete" and first_incomplete is None:
            first_incomplete = start
        elif verdict == "bad-checksum" and rejects is not None:
            size = OVERHEAD + buffer[start + 9]
            rejects.append(f"bad checksum in frame {bytes(buffer[start : start + size]).hex(' ').upper()}")
        start = buffer.find(START, start + 1)
    del buffer[: len(buffer) if first_incomplete is None else first_incomplete]
    return None

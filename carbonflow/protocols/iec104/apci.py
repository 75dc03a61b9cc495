"""APCI: the 6-byte header of every IEC 60870-5-104 APDU (start ``68``, length, four control octets).

Three formats (IEC 60870-5-104 §5):

* **I** (information transfer): carries an ASDU and the 15-bit send and receive sequence numbers;
* **S** (supervisory): acknowledges received I-frames (receive sequence number only);
* **U** (unnumbered): STARTDT / STOPDT / TESTFR, each as activation or confirmation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from carbonflow.protocols.errors import ProtocolError

START = 0x68
MAX_APDU_LENGTH = 253  # the length octet counts the 4 control octets plus the ASDU
MAX_ASDU_LENGTH = MAX_APDU_LENGTH - 4
SEQUENCE_MODULUS = 1 << 15  # N(S) and N(R) are 15-bit counters


class UFunction(enum.IntEnum):
    """The six U-format functions; the value is control octet 1 (bits 0-1 always set)."""

    STARTDT_ACT = 0x07
    STARTDT_CON = 0x0B
    STOPDT_ACT = 0x13
    STOPDT_CON = 0x23
    TESTFR_ACT = 0x43
    TESTFR_CON = 0x83

    @property
    def label(self) -> str:
        name, kind = self.name.split("_")
        return f"{name} {kind.lower()}"

    @property
    def is_activation(self) -> bool:
        return self.name.endswith("_ACT")

    @property
    def confirmation(self) -> UFunction:
        return UFunction[self.name.replace("_ACT", "_CON")]


@dataclass(frozen=True)
class IFrame:
    send_seq: int
    recv_seq: int
    asdu: bytes

    format = "I"


@dataclass(frozen=True)
class SFrame:
    recv_seq: int

    format = "S"


@dataclass(frozen=True)
class UFrame:
    function: UFunction

    format = "U"


Apdu = IFrame | SFrame | UFrame


def _check_seq(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < SEQUENCE_MODULUS:
        raise ProtocolError(f"{what} {value!r} outside 0..32767")
    return value


def encode_i(send_seq: int, recv_seq: int, asdu: bytes) -> bytes:
    _check_seq(send_seq, "send sequence number")
    _check_seq(recv_seq, "receive sequence number")
    if not asdu or len(asdu) > MAX_ASDU_LENGTH:
        raise ProtocolError(f"ASDU length {len(asdu)} outside 1..{MAX_ASDU_LENGTH}")
    control = (send_seq << 1).to_bytes(2, "little") + (recv_seq << 1).to_bytes(2, "little")
    return bytes([START, 4 + len(asdu)]) + control + bytes(asdu)


def encode_s(recv_seq: int) -> bytes:
    _check_seq(recv_seq, "receive sequence number")
    return bytes([START, 4, 0x01, 0x00]) + (recv_seq << 1).to_bytes(2, "little")


def encode_u(function: UFunction) -> bytes:
    return bytes([START, 4, int(function), 0, 0, 0])


def encode(apdu: Apdu) -> bytes:
    if isinstance(apdu, IFrame):
        return encode_i(apdu.send_seq, apdu.recv_seq, apdu.asdu)
    if isinstance(apdu, SFrame):
        return encode_s(apdu.recv_seq)
    return encode_u(apdu.function)


def decode(frame: bytes) -> Apdu:
    """Decode exactly one APDU; anything malformed raises :class:`ProtocolError`."""
    if len(frame) < 6:
        raise ProtocolError(f"truncated APDU: {len(frame)} bytes, need at least 6")
    if frame[0] != START:
        raise ProtocolError(f"bad start byte {frame[0]:02X}, expected 68")
    length = frame[1]
    if length < 4 or length > MAX_APDU_LENGTH:
        raise ProtocolError(f"APDU length {length} outside 4..{MAX_APDU_LENGTH}")
    if len(frame) != length + 2:
        raise ProtocolError(f"length mismatch: length octet says {length + 2} bytes, frame has {len(frame)}")
    c1, c2, c3, c4 = frame[2:6]
    if c1 & 0x01 == 0:  # I-format
        if c3 & 0x01:
            raise ProtocolError("I-format control octet 3 has bit 0 set")
        if length == 4:
            raise ProtocolError("I-format APDU without an ASDU")
        return IFrame((c1 | c2 << 8) >> 1, (c3 | c4 << 8) >> 1, bytes(frame[6:]))
    if length != 4:
        raise ProtocolError(f"{'S' if c1 & 0x02 == 0 else 'U'}-format APDU with length {length}, expected 4")
    if c1 & 0x03 == 0x01:  # S-format
        if c1 != 0x01 or c2 != 0 or c3 & 0x01:
            raise ProtocolError(f"malformed S-format control octets {bytes(frame[2:6]).hex(' ').upper()}")
        return SFrame((c3 | c4 << 8) >> 1)
    try:
        function = UFunction(c1)
    except ValueError:
        raise ProtocolError(f"U-format control octet {c1:02X} is not one STARTDT/STOPDT/TESTFR") from None
    if c2 or c3 or c4:
        raise ProtocolError(f"U-format control octets 2-4 not zero: {bytes(frame[3:6]).hex(' ').upper()}")
    return UFrame(function)


def split(buffer: bytearray) -> list[bytes]:
    """Cut every complete APDU from the front of a receive buffer (removing them from it).

    Stops at an incomplete APDU; raises :class:`ProtocolError` when the buffer does not start with
    ``68`` or carries an impossible length octet, since a 104 stream cannot resynchronise after that
    (the link must be closed).
    """
    frames: list[bytes] = []
    while len(buffer) >= 2:
        if buffer[0] != START:
            raise ProtocolError(f"bad start byte {buffer[0]:02X} in stream, expected 68")
        length = buffer[1]
        if length < 4 or length > MAX_APDU_LENGTH:
            raise ProtocolError(f"APDU length {length} outside 4..{MAX_APDU_LENGTH}")
        if len(buffer) < length + 2:
            break
        frames.append(bytes(buffer[: length + 2]))
        del buffer[: length + 2]
    return frames


def seq_add(seq: int, n: int = 1) -> int:
    return (seq + n) % SEQUENCE_MODULUS


def seq_distance(older: int, newer: int) -> int:
    """How many frames lie from ``older`` up to ``newer`` (modulo 2^15)."""
    return (newer - older) % SEQUENCE_MODULUS

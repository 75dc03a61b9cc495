"""DL/T 698.45 link layer: bytes <-> :class:`Frame` (length, control, addresses, HCS/FCS).

``[FE..] 68 L(2) C AF SA(n) CA HCS(2) APDU FCS(2) 16``; L counts the bytes between ``68`` and ``16``
(exclusive), HCS covers L..CA and FCS covers L..APDU, both CRC-16/X-25 sent low byte first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from carbonflow.protocols.errors import ProtocolError

START = 0x68
END = 0x16
PREAMBLE = 0xFE
MAX_LENGTH = 0x3FFF  # 14 bits of L
_KBYTE_UNIT = 0x4000  # L bit 14: length counted in kilobytes


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25 (poly 0x1021 reflected, init/xorout 0xFFFF); check("123456789") == 0x906E."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


class AddressType(IntEnum):
    SINGLE = 0
    WILDCARD = 1
    GROUP = 2
    BROADCAST = 3


class LinkFunction(IntEnum):
    LINK_MANAGEMENT = 1  # login, heartbeat, logout
    USER_DATA = 3


@dataclass(frozen=True)
class Control:
    """The C byte. (dir, prm): (0,1) client request, (1,1) server response,
    (1,0) server-initiated (LINK/REPORT), (0,0) the client's answer to it."""

    from_server: bool  # DIR
    initiated_by_client: bool  # PRM: 1 when the client started the exchange
    fragmented: bool = False
    scrambled: bool = False
    function: int = LinkFunction.USER_DATA

    @classmethod
    def from_byte(cls, byte: int) -> Control:
        return cls(bool(byte & 0x80), bool(byte & 0x40), bool(byte & 0x20), bool(byte & 0x08), byte & 0x07)

    def to_byte(self) -> int:
        return (
            (0x80 if self.from_server else 0)
            | (0x40 if self.initiated_by_client else 0)
            | (0x20 if self.fragmented else 0)
            | (0x08 if self.scrambled else 0)
            | (self.function & 0x07)
        )

    @property
    def is_request(self) -> bool:
        """A frame that opens an exchange: a client request or a server-initiated LINK/REPORT."""
        return self.from_server != self.initiated_by_client


CLIENT_REQUEST = Control(from_server=False, initiated_by_client=True)
SERVER_RESPONSE = Control(from_server=True, initiated_by_client=True)


@dataclass(frozen=True)
class ServerAddress:
    """SA: the meter's address as printed on it (BCD digits, most significant first; 'A' = wildcard)."""

    address: str
    type: AddressType = AddressType.SINGLE
    logical: int = 0

    def __post_init__(self) -> None:
        text = self.address
        if not text or len(text) % 2 or len(text) > 32:
            raise ProtocolError(f"server address {text!r}: need 2..32 hex digits, an even number")
        try:
            bytes.fromhex(text)
        except ValueError:
            raise ProtocolError(f"server address {text!r}: not hex digits") from None
        if not 0 <= self.logical <= 3:
            raise ProtocolError(f"logical address {self.logical}: must be 0..3")

    @classmethod
    def wildcard(cls, length: int = 6) -> ServerAddress:
        return cls("AA" * length, AddressType.WILDCARD)

    def encode(self) -> bytes:
        raw = bytes.fromhex(self.address)[::-1]  # sent low byte first
        return bytes([(self.type << 6) | (self.logical << 4) | (len(raw) - 1)]) + raw

    def matches(self, other: ServerAddress) -> bool:
        """Does a request to ``other`` reach the meter with this address? ('A' digits match anything)."""
        if other.type == AddressType.BROADCAST:
            return True
        if len(other.address) != len(self.address):
            return False
        return all(
            theirs == ours or theirs == "A"
            for theirs, ours in zip(other.address.upper(), self.address.upper())
        )


@dataclass(frozen=True)
class Frame:
    control: Control
    server: ServerAddress
    client: int  # CA, 1 byte
    apdu: bytes  # with the 2-byte fragment header when control.fragmented

    def encode(self) -> bytes:
        if not 0 <= self.client <= 0xFF:
            raise ProtocolError(f"client address {self.client}: must be 0..255")
        header = bytes([self.control.to_byte()]) + self.server.encode() + bytes([self.client])
        length = 2 + len(header) + 2 + len(self.apdu) + 2  # L, header, HCS, APDU, FCS
        if length > MAX_LENGTH:
            raise ProtocolError(f"frame of {length} bytes is longer than L can express")
        head = length.to_bytes(2, "little") + header
        head += crc16_x25(head).to_bytes(2, "little")
        body = head + self.apdu
        return bytes([START]) + body + crc16_x25(body).to_bytes(2, "little") + bytes([END])


def strip_preamble(data: bytes) -> bytes:
    start = 0
    while start < len(data) and data[start] == PREAMBLE:
        start += 1
    return data[start:]


def decode_frame(data: bytes) -> Frame:
    """One complete frame (leading FE allowed) -> Frame; ProtocolError says what is wrong."""
    raw = strip_preamble(bytes(data))
    if not raw:
        raise ProtocolError("empty frame")
    if raw[0] != START:
        raise ProtocolError(f"frame starts with {raw[0]:02X}, expected 68")
    if len(raw) < 3:
        raise ProtocolError("truncated frame: no length field")
    length_field = int.from_bytes(raw[1:3], "little")
    length = length_field & MAX_LENGTH
    if length_field & _KBYTE_UNIT:
        length *= 1024
    if len(raw) != length + 2:
        raise ProtocolError(f"length mismatch: L says {length} bytes, frame carries {len(raw) - 2}")
    if raw[-1] != END:
        raise ProtocolError(f"frame ends with {raw[-1]:02X}, expected 16")
    if length < 4:
        raise ProtocolError("truncated frame: no address flag")
    sa_length = (raw[4] & 0x0F) + 1
    hcs_at = 5 + sa_length + 1
    if length < hcs_at + 2 + 2 - 1:  # through HCS and FCS
        raise ProtocolError("truncated frame: header longer than L")
    hcs = int.from_bytes(raw[hcs_at : hcs_at + 2], "little")
    if hcs != crc16_x25(raw[1:hcs_at]):
        raise ProtocolError(f"bad HCS {hcs:04X}, computed {crc16_x25(raw[1:hcs_at]):04X}")
    fcs = int.from_bytes(raw[-3:-1], "little")
    if fcs != crc16_x25(raw[1:-3]):
        raise ProtocolError(f"bad FCS {fcs:04X}, computed {crc16_x25(raw[1:-3]):04X}")
    address_flag = raw[4]
    server = ServerAddress(
        raw[5 : 5 + sa_length][::-1].hex().upper(), AddressType(address_flag >> 6), (address_flag >> 4) & 3
    )
    apdu = raw[hcs_at + 2 : -3]
    if not apdu:
        raise ProtocolError("frame carries no APDU")
    return Frame(Control.from_byte(raw[3]), server, raw[5 + sa_length], apdu)


def split_frames(buffer: bytearray) -> list[bytes]:
    """Cut complete frames off the front of a receive buffer (streams, TCP), dropping noise.

    Bytes that cannot start a frame are discarded; a candidate whose HCS fails is skipped one byte at a
    time so a stray 68 inside noise cannot hold the stream.  Frames with a bad FCS are still returned
    (the caller decodes and reports them).
    """
    frames: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return frames
        del buffer[:start]
        if len(buffer) < 5:
            return frames
        length = int.from_bytes(buffer[1:3], "little") & MAX_LENGTH
        hcs_at = 5 + (buffer[4] & 0x0F) + 2
        if len(buffer) < hcs_at + 2:
            return frames
        header_ok = length >= hcs_at + 3 and int.from_bytes(
            buffer[hcs_at : hcs_at + 2], "little"
        ) == crc16_x25(bytes(buffer[1:hcs_at]))
        if not header_ok:
            del buffer[0]
            continue
        if len(buffer) < length + 2:
            return frames
        frame = bytes(buffer[: length + 2])
        del buffer[: length + 2]
        if frame[-1] == END:
            frames.append(frame)

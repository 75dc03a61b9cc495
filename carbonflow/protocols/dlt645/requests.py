"""Master requests: build them (collector, CLI) and parse them (simulated meter, ``describe``).

| function | C | DATA (before +33H) |
|---|---|---|
| read | 11 | DI, optionally + N + time for load-profile reads (kept as ``extra``) |
| read follow-up | 12 | DI + frame sequence number |
| read address | 13 | none (address AA..AA) |
| write | 14 | DI + password (level PA, P0 P1 P2) + operator code (C0..C3) + value |
| broadcast time sync | 08 | ss mm hh DD MM YY (address 99..99, no reply) |
| freeze | 16 | mm hh DD MM, 99 = "any" (99999999 = freeze now) |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbonflow.protocols.dlt645.bcd import decode_field, encode_field, parse_format
from carbonflow.protocols.dlt645.frame import BROADCAST, WILDCARD, Frame, encode_frame
from carbonflow.protocols.dlt645.items import DataItem, di_from_wire, di_to_wire, normalize_di
from carbonflow.protocols.errors import ProtocolError

READ = 0x11
READ_FOLLOW_UP = 0x12
READ_ADDRESS = 0x13
WRITE = 0x14
TIME_SYNC = 0x08
FREEZE = 0x16

DEFAULT_PASSWORD = "02000000"  # privilege level 02, password 000000: a common factory default
DEFAULT_OPERATOR = "00000000"
FREEZE_NOW = "99999999"

_TIME_SYNC_FIELD = parse_format("YYMMDDhhmmss")[0]


def encode_password(password: str) -> bytes:
    """``"02123456"`` = level 02, password 123456 -> wire ``02 56 34 12`` (level, then low byte first)."""
    text = str(password).strip()
    if len(text) != 8 or any(ch not in "0123456789ABCDEFabcdef" for ch in text):
        raise ProtocolError(f"password {password!r} must be 8 hex digits: level PA then 6 password digits")
    return bytes.fromhex(text[:2]) + bytes.fromhex(text[2:])[::-1]


def decode_password(wire: bytes) -> str:
    return wire[:1].hex().upper() + wire[1:4][::-1].hex().upper()


def encode_operator(operator: str) -> bytes:
    """Operator code, 8 hex digits most significant first, sent low byte first."""
    text = str(operator).strip()
    if len(text) != 8 or any(ch not in "0123456789ABCDEFabcdef" for ch in text):
        raise ProtocolError(f"operator code {operator!r} must be 8 hex digits")
    return bytes.fromhex(text)[::-1]


def decode_operator(wire: bytes) -> str:
    return wire[::-1].hex().upper()


def _freeze_digits(when: str) -> str:
    text = str(when).strip()
    if len(text) != 8 or not text.isdigit():
        raise ProtocolError(f"freeze time {when!r} must be 8 digits MMDDhhmm (99 = any), e.g. 99999999")
    return text


# -- building --------------------------------------------------------------------------------------
def read_request(address: str, di: str, preamble: int = 0) -> bytes:
    return encode_frame(address, READ, di_to_wire(di), preamble)


def read_follow_up_request(address: str, di: str, seq: int, preamble: int = 0) -> bytes:
    if not 0 <= seq <= 0xFF:
        raise ProtocolError(f"follow-up sequence {seq} is not one byte")
    return encode_frame(address, READ_FOLLOW_UP, di_to_wire(di) + bytes([seq]), preamble)


def read_address_request(preamble: int = 0) -> bytes:
    return encode_frame(WILDCARD, READ_ADDRESS, b"", preamble)


def write_request(
    address: str,
    item: DataItem,
    value: Any,
    password: str = DEFAULT_PASSWORD,
    operator: str = DEFAULT_OPERATOR,
    preamble: int = 0,
) -> bytes:
    data = di_to_wire(item.di) + encode_password(password) + encode_operator(operator) + item.encode(value)
    return encode_frame(address, WRITE, data, preamble)


def write_raw_request(
    address: str, di: str, payload: bytes, password: str, operator: str, preamble: int = 0
) -> bytes:
    """Write to a DI the table does not know; ``payload`` is the value's bytes as the meter expects them."""
    data = di_to_wire(di) + encode_password(password) + encode_operator(operator) + payload
    return encode_frame(address, WRITE, data, preamble)


def time_sync_request(moment: datetime | str, preamble: int = 0) -> bytes:
    """Broadcast time sync; ``moment`` is the meter's local wall time (naive, or aware and already local)."""
    return encode_frame(BROADCAST, TIME_SYNC, encode_field(_TIME_SYNC_FIELD, moment), preamble)


def freeze_request(address: str = BROADCAST, when: str = FREEZE_NOW, preamble: int = 0) -> bytes:
    return encode_frame(address, FREEZE, bytes.fromhex(_freeze_digits(when))[::-1], preamble)


# -- parsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A master request as the meter sees it."""

    address: str
    function: int
    di: str | None = None
    seq: int | None = None  # read follow-up
    password: str | None = None  # write
    operator: str | None = None  # write
    payload: bytes = b""  # write: the value's bytes; read: extra load-profile parameters
    time: str | None = None  # broadcast time sync, "YYYY-MM-DD hh:mm:ss"
    freeze_at: str | None = None  # freeze, "MMDDhhmm" with 99 wildcards


def parse_request(frame: Frame) -> Request:
    """A frame from the master to the typed request; ProtocolError if its DATA does not fit the function."""
    if frame.is_reply:
        raise ProtocolError(f"control {frame.control:02X} is a reply, not a request")
    function, data, address = frame.function, frame.data, frame.address
    if function in (READ, READ_FOLLOW_UP, WRITE) and len(data) < 4:
        raise ProtocolError(f"{frame.function_name} request needs a 4-byte DI, DATA has {len(data)} bytes")
    if function == READ:
        return Request(address, function, di=di_from_wire(data), payload=data[4:])
    if function == READ_FOLLOW_UP:
        if len(data) != 5:
            raise ProtocolError(f"read follow-up request needs DI + sequence (5 bytes), got {len(data)}")
        return Request(address, function, di=di_from_wire(data), seq=data[4])
    if function == READ_ADDRESS:
        if data:
            raise ProtocolError(f"read address request carries no data, got {len(data)} bytes")
        return Request(address, function)
    if function == WRITE:
        if len(data) < 12:
            raise ProtocolError(f"write request needs DI + password + operator (12 bytes), got {len(data)}")
        return Request(
            address,
            function,
            di=di_from_wire(data),
            password=decode_password(data[4:8]),
            operator=decode_operator(data[8:12]),
            payload=data[12:],
        )
    if function == TIME_SYNC:
        if len(data) != 6:
            raise ProtocolError(f"time sync needs 6 bytes ss mm hh DD MM YY, got {len(data)}")
        moment = decode_field(_TIME_SYNC_FIELD, data)
        return Request(address, function, time=None if moment is None else str(moment))
    if function == FREEZE:
        if len(data) != 4:
            raise ProtocolError(f"freeze request needs 4 bytes mm hh DD MM, got {len(data)}")
        digits = data[::-1].hex().upper()
        if not digits.isdigit():
            raise ProtocolError(f"freeze time {digits} is not BCD")
        return Request(address, function, freeze_at=digits)
    return Request(address, function, payload=data)


def parse_time(text: str) -> datetime:
    """The ``time`` of a parsed time-sync request as a naive local datetime (ProtocolError if impossible)."""
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ProtocolError(f"time {text!r} is not a valid date and time") from None


__all__ = [
    "DEFAULT_OPERATOR",
    "DEFAULT_PASSWORD",
    "FREEZE",
    "FREEZE_NOW",
    "READ",
    "READ_ADDRESS",
    "READ_FOLLOW_UP",
    "TIME_SYNC",
    "WRITE",
    "Request",
    "decode_operator",
    "decode_password",
    "encode_operator",
    "encode_password",
    "freeze_request",
    "normalize_di",
    "parse_request",
    "parse_time",
    "read_address_request",
    "read_follow_up_request",
    "read_request",
    "time_sync_request",
    "write_raw_request",
    "write_request",
]

"""Meter replies: build them (simulated meter) and decode them (collector client, ``describe``).

A normal reply sets D7 of the request's control code (``11`` -> ``91``), D5 when follow-up frames hold
the rest of the data (``B1``/``B2``); an abnormal reply sets D6 as well (``D1``, ``D4``, ...) and carries
one error word whose bits are listed in :data:`ERROR_FLAGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carbonflow.protocols.dlt645.frame import (
    ABNORMAL,
    DIRECTION_REPLY,
    FOLLOW_UP,
    Frame,
    decode_address,
    encode_address,
    encode_frame,
)
from carbonflow.protocols.dlt645.items import DataItem, DiTable, Value, di_from_wire, di_to_wire
from carbonflow.protocols.dlt645.requests import READ, READ_ADDRESS, READ_FOLLOW_UP
from carbonflow.protocols.errors import ProtocolError

# bit -> meaning of the error word (DL/T 645-2007 table "ERR")
ERROR_FLAGS = (
    "other error",
    "no requested data",
    "password error / unauthorised",
    "baud rate cannot be changed",
    "too many year time zones",
    "too many day periods",
    "too many tariffs",
    "reserved",
)
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_UNAUTHORISED = 0x04


@dataclass(frozen=True)
class ErrorWord:
    code: int

    @property
    def flags(self) -> list[str]:
        return [name for bit, name in enumerate(ERROR_FLAGS) if self.code >> bit & 1]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "flags": self.flags}

    def __str__(self) -> str:
        return f"error {self.code:02X} ({', '.join(self.flags) or 'no flag set'})"


# -- building (the meter side) ---------------------------------------------------------------------
def read_reply(
    address: str, di: str, payload: bytes, follow_up: bool = False, seq: int | None = None, preamble: int = 0
) -> bytes:
    """``91``/``B1`` for a read, or ``92``/``B2`` with the sequence number for a follow-up read."""
    function = READ if seq is None else READ_FOLLOW_UP
    control = DIRECTION_REPLY | function | (FOLLOW_UP if follow_up else 0)
    data = di_to_wire(di) + payload + (b"" if seq is None else bytes([seq & 0xFF]))
    return encode_frame(address, control, data, preamble)


def read_address_reply(address: str, preamble: int = 0) -> bytes:
    return encode_frame(address, DIRECTION_REPLY | READ_ADDRESS, encode_address(address), preamble)


def ack_reply(address: str, function: int, preamble: int = 0) -> bytes:
    """The empty normal reply of write (``94``), freeze (``96``) and the other command functions."""
    return encode_frame(address, DIRECTION_REPLY | function, b"", preamble)


def error_reply(address: str, function: int, code: int, preamble: int = 0) -> bytes:
    return encode_frame(address, DIRECTION_REPLY | ABNORMAL | function, bytes([code & 0xFF]), preamble)


# -- decoding (the master side) --------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A meter reply; ``payload`` is the data after the DI (and before a follow-up sequence number)."""

    address: str
    control: int
    function: int
    di: str | None = None
    payload: bytes = b""
    seq: int | None = None
    follow_up: bool = False
    error: ErrorWord | None = None
    meter_address: str | None = None  # read-address reply

    def value(self, table: DiTable) -> Value:
        """The payload decoded by the DI's table entry; ProtocolError for an unknown DI or bad payload."""
        if self.di is None:
            raise ProtocolError(f"reply {self.control:02X} carries no data item")
        item = table.get(self.di)
        if item is None:
            raise ProtocolError(f"DI {self.di} is not in the DI table")
        return item.decode(self.payload)


def parse_reply(frame: Frame) -> Reply:
    if not frame.is_reply:
        raise ProtocolError(f"control {frame.control:02X} is a request, not a reply")
    function, data = frame.function, frame.data
    common = {"address": frame.address, "control": frame.control, "function": function}
    if frame.is_abnormal:
        if len(data) != 1:
            raise ProtocolError(
                f"abnormal reply {frame.control:02X} needs a 1-byte error word, got {len(data)}"
            )
        return Reply(**common, error=ErrorWord(data[0]))
    if function in (READ, READ_FOLLOW_UP):
        minimum = 4 if function == READ else 5
        if len(data) < minimum:
            raise ProtocolError(
                f"{frame.function_name} reply needs at least {minimum} bytes, got {len(data)}"
            )
        if function == READ:
            return Reply(**common, di=di_from_wire(data), payload=data[4:], follow_up=frame.has_follow_up)
        return Reply(
            **common, di=di_from_wire(data), payload=data[4:-1], seq=data[-1], follow_up=frame.has_follow_up
        )
    if function == READ_ADDRESS:
        if len(data) != 6:
            raise ProtocolError(f"read address reply needs 6 address bytes, got {len(data)}")
        return Reply(**common, meter_address=decode_address(data))
    return Reply(**common, payload=data)


def split_payload(item: DataItem | None, payload: bytes, max_payload: int) -> list[bytes]:
    """Cut a long read payload into chunks for follow-up frames, at member boundaries when possible."""
    if max_payload < 1:
        raise ProtocolError("max_payload must be positive")
    step = max_payload
    if item is not None and item.member_size <= max_payload:
        step = max_payload - max_payload % item.member_size
    return [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]

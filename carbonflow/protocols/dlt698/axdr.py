"""A-XDR encoding of DL/T 698.45 data: ``Data`` <-> bytes, and the building blocks APDUs share."""

from __future__ import annotations

import struct
from typing import Any

from carbonflow.protocols.dlt698.types import (
    INTEGER_TYPES,
    BitString,
    Comdcb,
    Data,
    DataType,
    Date,
    DateTime,
    DateTimeS,
    Ms,
    Oad,
    Omd,
    Region,
    Road,
    Rsd,
    ScalerUnit,
    Sid,
    SidMac,
    Ti,
    Time,
)
from carbonflow.protocols.errors import ProtocolError

MAX_DEPTH = 24  # nesting of arrays/structures; real meters use 3-4 levels


class Reader:
    """A cursor over received bytes; every read past the end is a ProtocolError naming the offset."""

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    @property
    def remaining(self) -> int:
        return len(self.data) - self.position

    def take(self, count: int, what: str = "data") -> bytes:
        if count > self.remaining:
            raise ProtocolError(
                f"truncated {what} at byte {self.position}: need {count}, have {self.remaining}"
            )
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def u8(self, what: str = "byte") -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "long-unsigned") -> int:
        return int.from_bytes(self.take(2, what), "big")

    def length(self, what: str = "length") -> int:
        """A-XDR variable length: < 0x80 itself, else 0x8n followed by n big-endian bytes."""
        first = self.u8(what)
        if first < 0x80:
            return first
        size = first & 0x7F
        if not 1 <= size <= 4:
            raise ProtocolError(f"bad {what} length prefix {first:02X} at byte {self.position - 1}")
        return int.from_bytes(self.take(size, what), "big")

    def count(self, what: str, minimum_item_size: int = 1) -> int:
        """A SEQUENCE OF count, refused early when the remaining bytes cannot hold that many items."""
        number = self.length(what)
        if number * minimum_item_size > self.remaining:
            raise ProtocolError(f"{what}: {number} items cannot fit in the {self.remaining} bytes left")
        return number

    def optional(self, what: str) -> bool:
        flag = self.u8(what)
        if flag > 1:
            raise ProtocolError(
                f"{what}: optional flag {flag:02X} at byte {self.position - 1}, expected 00/01"
            )
        return flag == 1

    def done(self) -> None:
        if self.remaining:
            raise ProtocolError(f"{self.remaining} unexpected bytes after the APDU at byte {self.position}")


def encode_length(length: int) -> bytes:
    if length < 0:
        raise ProtocolError(f"negative length {length}")
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    if size > 4:
        raise ProtocolError(f"length {length} too large")
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


# -- data -----------------------------------------------------------------------------------------
def decode_data(reader: Reader, depth: int = 0) -> Data:
    at = reader.position
    tag = reader.u8("data type")
    try:
        data_type = DataType(tag)
    except ValueError:
        raise ProtocolError(f"unknown data type {tag:02X} at byte {at}") from None
    return Data(data_type, decode_body(reader, data_type, depth))


def decode_body(reader: Reader, data_type: DataType, depth: int = 0) -> Any:
    """The value of one type without its tag (as used inside RSD, ROAD, APDU fields)."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"data nested deeper than {MAX_DEPTH} levels")
    what = data_type.label
    if data_type in INTEGER_TYPES:
        size, signed = INTEGER_TYPES[data_type]
        return int.from_bytes(reader.take(size, what), "big", signed=signed)
    match data_type:
        case DataType.NULL:
            return None
        case DataType.ARRAY | DataType.STRUCTURE:
            return [decode_data(reader, depth + 1) for _ in range(reader.count(what))]
        case DataType.BOOL:
            return reader.u8(what) != 0
        case DataType.BIT_STRING:
            bits = reader.length(what)
            return BitString(bits, reader.take((bits + 7) // 8, what))
        case DataType.OCTET_STRING | DataType.TSA | DataType.MAC | DataType.RN:
            return reader.take(reader.length(what), what)
        case DataType.VISIBLE_STRING:
            return reader.take(reader.length(what), what).decode("latin-1")
        case DataType.UTF8_STRING:
            raw = reader.take(reader.length(what), what)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(f"utf8-string is not valid UTF-8 before byte {reader.position}") from None
        case DataType.FLOAT32:
            return struct.unpack(">f", reader.take(4, what))[0]
        case DataType.FLOAT64:
            return struct.unpack(">d", reader.take(8, what))[0]
        case DataType.DATE_TIME:
            raw = reader.take(10, what)
            return DateTime(int.from_bytes(raw[:2], "big"), *raw[2:8], int.from_bytes(raw[8:], "big"))
        case DataType.DATE:
            raw = reader.take(5, what)
            return Date(int.from_bytes(raw[:2], "big"), *raw[2:])
        case DataType.TIME:
            return Time(*reader.take(3, what))
        case DataType.DATE_TIME_S:
            raw = reader.take(7, what)
            return DateTimeS(int.from_bytes(raw[:2], "big"), *raw[2:])
        case DataType.OI:
            return reader.u16(what)
        case DataType.OAD:
            return decode_oad(reader)
        case DataType.ROAD:
            oad = decode_oad(reader)
            return Road(oad, tuple(decode_oad(reader) for _ in range(reader.count("ROAD columns", 4))))
        case DataType.OMD:
            raw = reader.take(4, what)
            return Omd(int.from_bytes(raw[:2], "big"), raw[2], raw[3])
        case DataType.TI:
            return Ti(reader.u8(what), reader.u16(what))
        case DataType.REGION:
            return Region(reader.u8(what), decode_data(reader, depth + 1), decode_data(reader, depth + 1))
        case DataType.SCALER_UNIT:
            return ScalerUnit(int.from_bytes(reader.take(1, what), "big", signed=True), reader.u8(what))
        case DataType.RSD:
            return decode_rsd(reader, depth)
        case DataType.CSD:
            return decode_csd(reader)
        case DataType.MS:
            return decode_ms(reader, depth)
        case DataType.SID:
            return Sid(int.from_bytes(reader.take(4, what), "big"), reader.take(reader.length(what), what))
        case DataType.SID_MAC:
            sid = decode_body(reader, DataType.SID, depth)
            return SidMac(sid, reader.take(reader.length(what), what))
        case DataType.COMDCB:
            return Comdcb(*reader.take(5, what))
        case DataType.RCSD:
            return decode_rcsd(reader)
    raise ProtocolError(f"data type {data_type.label} not supported")  # pragma: no cover


def encode_data(data: Data) -> bytes:
    return bytes([data.type]) + encode_body(data.type, data.value)


def encode_body(data_type: DataType, value: Any) -> bytes:
    try:
        return _encode_body(data_type, value)
    except (TypeError, AttributeError, OverflowError, struct.error, UnicodeEncodeError, ValueError) as error:
        if isinstance(error, ProtocolError):
            raise
        raise ProtocolError(f"cannot encode {value!r} as {data_type.label}: {error}") from None


def _encode_body(data_type: DataType, value: Any) -> bytes:
    if data_type in INTEGER_TYPES:
        size, signed = INTEGER_TYPES[data_type]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{data_type.label} needs an int, got {value!r}")
        return value.to_bytes(size, "big", signed=signed)
    match data_type:
        case DataType.NULL:
            return b""
        case DataType.ARRAY | DataType.STRUCTURE:
            return encode_length(len(value)) + b"".join(encode_data(item) for item in value)
        case DataType.BOOL:
            return bytes([1 if value else 0])
        case DataType.BIT_STRING:
            if len(value.value) != (value.bits + 7) // 8:
                raise ProtocolError(f"bit-string of {value.bits} bits needs {(value.bits + 7) // 8} bytes")
            if value.bits % 8 and value.value[-1] & ((1 << (8 - value.bits % 8)) - 1):
                raise ProtocolError("bit-string padding bits must be zero")
            return encode_length(value.bits) + bytes(value.value)
        case DataType.OCTET_STRING | DataType.TSA | DataType.MAC | DataType.RN:
            return encode_length(len(value)) + bytes(value)
        case DataType.VISIBLE_STRING:
            raw = value.encode("latin-1")
            return encode_length(len(raw)) + raw
        case DataType.UTF8_STRING:
            raw = value.encode("utf-8")
            return encode_length(len(raw)) + raw
        case DataType.FLOAT32:
            return struct.pack(">f", value)
        case DataType.FLOAT64:
            return struct.pack(">d", value)
        case DataType.DATE_TIME:
            v = value
            fields = bytes([v.month, v.day, v.weekday, v.hour, v.minute, v.second])
            return v.year.to_bytes(2, "big") + fields + v.millisecond.to_bytes(2, "big")
        case DataType.DATE:
            return value.year.to_bytes(2, "big") + bytes([value.month, value.day, value.weekday])
        case DataType.TIME:
            return bytes([value.hour, value.minute, value.second])
        case DataType.DATE_TIME_S:
            v = value
            return v.year.to_bytes(2, "big") + bytes([v.month, v.day, v.hour, v.minute, v.second])
        case DataType.OI:
            return int(value).to_bytes(2, "big")
        case DataType.OAD | DataType.OMD:
            return value.encode()
        case DataType.ROAD:
            return (
                value.oad.encode()
                + encode_length(len(value.columns))
                + b"".join(c.encode() for c in value.columns)
            )
        case DataType.TI:
            return bytes([value.unit]) + value.interval.to_bytes(2, "big")
        case DataType.REGION:
            return bytes([value.kind]) + encode_data(value.start) + encode_data(value.end)
        case DataType.SCALER_UNIT:
            return value.scaler.to_bytes(1, "big", signed=True) + bytes([value.unit])
        case DataType.RSD:
            return encode_rsd(value)
        case DataType.CSD:
            return encode_csd(value)
        case DataType.MS:
            return encode_ms(value)
        case DataType.SID:
            return value.identifier.to_bytes(4, "big") + encode_length(len(value.extra)) + value.extra
        case DataType.SID_MAC:
            return encode_body(DataType.SID, value.sid) + encode_length(len(value.mac)) + value.mac
        case DataType.COMDCB:
            return bytes([value.baud, value.parity, value.data_bits, value.stop_bits, value.flow])
        case DataType.RCSD:
            return encode_rcsd(value)
    raise ProtocolError(f"data type {data_type} not supported")


# -- descriptors shared by APDUs ------------------------------------------------------------------
def decode_oad(reader: Reader) -> Oad:
    raw = reader.take(4, "OAD")
    return Oad(int.from_bytes(raw[:2], "big"), raw[2], raw[3])


def decode_omd(reader: Reader) -> Omd:
    return decode_body(reader, DataType.OMD)


def decode_csd(reader: Reader) -> Oad | Road:
    choice = reader.u8("CSD choice")
    if choice == 0:
        return decode_oad(reader)
    if choice == 1:
        return decode_body(reader, DataType.ROAD)
    raise ProtocolError(f"CSD choice {choice} at byte {reader.position - 1}, expected 0 (OAD) or 1 (ROAD)")


def encode_csd(csd: Oad | Road) -> bytes:
    if isinstance(csd, Road):
        return b"\x01" + encode_body(DataType.ROAD, csd)
    return b"\x00" + csd.encode()


def decode_rcsd(reader: Reader) -> tuple[Oad | Road, ...]:
    return tuple(decode_csd(reader) for _ in range(reader.count("RCSD", 5)))


def encode_rcsd(columns: tuple[Oad | Road, ...] | list[Oad | Road]) -> bytes:
    return encode_length(len(columns)) + b"".join(encode_csd(column) for column in columns)


# MS choice -> element type of its SEQUENCE OF (None: no items)
_MS_ITEMS: dict[int, DataType | None] = {
    0: None,
    1: None,
    2: DataType.UNSIGNED,
    3: DataType.TSA,
    4: DataType.LONG_UNSIGNED,
    5: DataType.REGION,
    6: DataType.REGION,
    7: DataType.REGION,
}


def decode_ms(reader: Reader, depth: int = 0) -> Ms:
    choice = reader.u8("MS choice")
    if choice not in _MS_ITEMS:
        raise ProtocolError(f"MS choice {choice} at byte {reader.position - 1} is not 0..7")
    item_type = _MS_ITEMS[choice]
    if item_type is None:
        return Ms(choice)
    return Ms(choice, tuple(decode_body(reader, item_type, depth + 1) for _ in range(reader.count("MS"))))


def encode_ms(ms: Ms) -> bytes:
    if ms.choice not in _MS_ITEMS:
        raise ProtocolError(f"MS choice {ms.choice} is not 0..7")
    item_type = _MS_ITEMS[ms.choice]
    if item_type is None:
        return bytes([ms.choice])
    return (
        bytes([ms.choice])
        + encode_length(len(ms.items))
        + b"".join(encode_body(item_type, i) for i in ms.items)
    )


# RSD selector -> its fields (None = a tagged Data); selector 3 is a SEQUENCE OF selector 2
RSD_FIELDS: dict[int, tuple[DataType | None, ...]] = {
    0: (),
    1: (DataType.OAD, None),
    2: (DataType.OAD, None, None, None),
    4: (DataType.DATE_TIME_S, DataType.MS),
    5: (DataType.DATE_TIME_S, DataType.MS),
    6: (DataType.DATE_TIME_S, DataType.DATE_TIME_S, DataType.TI, DataType.MS),
    7: (DataType.DATE_TIME_S, DataType.DATE_TIME_S, DataType.TI, DataType.MS),
    8: (DataType.DATE_TIME_S, DataType.DATE_TIME_S, DataType.TI, DataType.MS),
    9: (DataType.UNSIGNED,),
    10: (DataType.UNSIGNED, DataType.MS),
}


def _decode_fields(reader: Reader, kinds: tuple[DataType | None, ...], depth: int) -> tuple[Any, ...]:
    return tuple(
        decode_data(reader, depth + 1) if k is None else decode_body(reader, k, depth + 1) for k in kinds
    )


def _encode_fields(kinds: tuple[DataType | None, ...], values: tuple[Any, ...]) -> bytes:
    if len(values) != len(kinds):
        raise ProtocolError(f"RSD needs {len(kinds)} fields, got {len(values)}")
    return b"".join(encode_data(v) if k is None else encode_body(k, v) for k, v in zip(kinds, values))


def decode_rsd(reader: Reader, depth: int = 0) -> Rsd:
    selector = reader.u8("RSD selector")
    if selector == 3:
        count = reader.count("RSD selector 3", 6)
        return Rsd(3, tuple(_decode_fields(reader, RSD_FIELDS[2], depth) for _ in range(count)))
    if selector not in RSD_FIELDS:
        raise ProtocolError(f"RSD selector {selector} at byte {reader.position - 1} is not 0..10")
    return Rsd(selector, _decode_fields(reader, RSD_FIELDS[selector], depth))


def encode_rsd(rsd: Rsd) -> bytes:
    if rsd.selector == 3:
        parts = [_encode_fields(RSD_FIELDS[2], group) for group in rsd.fields]
        return b"\x03" + encode_length(len(parts)) + b"".join(parts)
    if rsd.selector not in RSD_FIELDS:
        raise ProtocolError(f"RSD selector {rsd.selector} is not 0..10")
    return bytes([rsd.selector]) + _encode_fields(RSD_FIELDS[rsd.selector], rsd.fields)

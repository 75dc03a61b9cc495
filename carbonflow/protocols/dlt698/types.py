"""DL/T 698.45 A-XDR data model: the typed values a frame carries (``Data``) and its composite types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from carbonflow.protocols.errors import ProtocolError


class DataType(IntEnum):
    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOL = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5  # int32
    DOUBLE_LONG_UNSIGNED = 6  # uint32
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    INTEGER = 15  # int8
    LONG = 16  # int16
    UNSIGNED = 17  # uint8
    LONG_UNSIGNED = 18  # uint16
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DATE_TIME_S = 28
    OI = 80
    OAD = 81
    ROAD = 82
    OMD = 83
    TI = 84
    TSA = 85
    MAC = 86
    RN = 87
    REGION = 88
    SCALER_UNIT = 89
    RSD = 90
    CSD = 91
    MS = 92
    SID = 93
    SID_MAC = 94
    COMDCB = 95
    RCSD = 96

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


# (size in bytes, signed) of the fixed-size integer types
INTEGER_TYPES: dict[DataType, tuple[int, bool]] = {
    DataType.DOUBLE_LONG: (4, True),
    DataType.DOUBLE_LONG_UNSIGNED: (4, False),
    DataType.INTEGER: (1, True),
    DataType.LONG: (2, True),
    DataType.UNSIGNED: (1, False),
    DataType.LONG_UNSIGNED: (2, False),
    DataType.LONG64: (8, True),
    DataType.LONG64_UNSIGNED: (8, False),
    DataType.ENUM: (1, False),
}


@dataclass(frozen=True)
class Oad:
    """Object attribute descriptor: OI, attribute byte (bits 7-5 feature, 4-0 attribute id), index."""

    oi: int
    attribute: int = 2
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> Oad:
        """'00100200' -> Oad(0x0010, 2, 0)."""
        cleaned = text.replace(" ", "")
        if len(cleaned) != 8:
            raise ProtocolError(f"OAD {text!r}: need 8 hex digits")
        try:
            raw = bytes.fromhex(cleaned)
        except ValueError:
            raise ProtocolError(f"OAD {text!r}: not hex") from None
        return cls(int.from_bytes(raw[:2], "big"), raw[2], raw[3])

    def encode(self) -> bytes:
        return self.oi.to_bytes(2, "big") + bytes([self.attribute, self.index])

    @property
    def attribute_id(self) -> int:
        return self.attribute & 0x1F

    def __str__(self) -> str:
        return self.encode().hex().upper()


@dataclass(frozen=True)
class Omd:
    """Object method descriptor: OI, method id, operation mode."""

    oi: int
    method: int
    mode: int = 0

    @classmethod
    def parse(cls, text: str) -> Omd:
        oad = Oad.parse(text)
        return cls(oad.oi, oad.attribute, oad.index)

    def encode(self) -> bytes:
        return self.oi.to_bytes(2, "big") + bytes([self.method, self.mode])

    def __str__(self) -> str:
        return self.encode().hex().upper()


@dataclass(frozen=True)
class Road:
    """Record OAD: the record object and the columns (associated OADs) wanted from it."""

    oad: Oad
    columns: tuple[Oad, ...] = ()


Csd = Oad | Road  # a column selector: a plain attribute or a record's columns


class TimeUnit(IntEnum):
    SECOND = 0
    MINUTE = 1
    HOUR = 2
    DAY = 3
    MONTH = 4
    YEAR = 5


@dataclass(frozen=True)
class Ti:
    """Time interval: unit + count (e.g. 15 minutes)."""

    unit: int
    interval: int

    def __str__(self) -> str:
        try:
            unit = TimeUnit(self.unit).name.lower()
        except ValueError:
            unit = f"unit{self.unit}"
        return f"{self.interval} {unit}"


@dataclass(frozen=True)
class DateTimeS:
    """date_time_s: the fields as sent (0xFF/0xFFFF mean "unspecified", kept as is)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int

    def __str__(self) -> str:
        date = f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
        return f"{date} {self.hour:02d}:{self.minute:02d}:{self.second:02d}"


@dataclass(frozen=True)
class DateTime:
    """date_time (LINK frames): with weekday and milliseconds."""

    year: int
    month: int
    day: int
    weekday: int
    hour: int
    minute: int
    second: int
    millisecond: int

    def __str__(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d} {self.hour:02d}:{self.minute:02d}:"
            f"{self.second:02d}.{self.millisecond:03d}"
        )


@dataclass(frozen=True)
class Date:
    year: int
    month: int
    day: int
    weekday: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True)
class Time:
    hour: int
    minute: int
    second: int

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"


@dataclass(frozen=True)
class BitString:
    bits: int  # number of bits
    value: bytes  # ceil(bits / 8) bytes, first bit = most significant bit of the first byte

    def __str__(self) -> str:
        text = "".join(f"{byte:08b}" for byte in self.value)
        return text[: self.bits]


@dataclass(frozen=True)
class ScalerUnit:
    scaler: int
    unit: int


@dataclass(frozen=True)
class Region:
    kind: int  # enum: 0 [a,b) 1 (a,b] 2 [a,b] 3 (a,b)
    start: Data
    end: Data


@dataclass(frozen=True)
class Ms:
    """Meter set (MS): choice 0 none, 1 all, 2 user types, 3 addresses, 4 serials, 5-7 regions."""

    choice: int
    items: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Rsd:
    """Row selector: selector number 0..10 and its fields in order (see axdr.RSD_FIELDS)."""

    selector: int
    fields: tuple[Any, ...] = ()

    @classmethod
    def last(cls, count: int) -> Rsd:
        """Selector 9: the last ``count``-th record ("上第 n 次记录")."""
        return cls(9, (count,))


@dataclass(frozen=True)
class Sid:
    identifier: int
    extra: bytes


@dataclass(frozen=True)
class SidMac:
    sid: Sid
    mac: bytes


@dataclass(frozen=True)
class Comdcb:
    """Serial settings: baud enum (6 = 9600), parity (0 none 1 odd 2 even), data bits, stop bits, flow."""

    baud: int = 6
    parity: int = 2
    data_bits: int = 8
    stop_bits: int = 1
    flow: int = 0


@dataclass(frozen=True)
class Data:
    """One typed value as carried in a frame.

    Python value per type: NULL None; ARRAY/STRUCTURE list[Data]; BOOL bool; integer types int;
    strings bytes (octet/TSA/MAC/RN) or str; FLOAT32/64 float; dates the classes above;
    OI int; OAD Oad; ROAD Road; OMD Omd; TI Ti; SCALER_UNIT ScalerUnit; RSD Rsd; CSD Oad|Road;
    MS Ms; RCSD tuple[Oad|Road, ...]; REGION Region; SID Sid; SID_MAC SidMac; COMDCB Comdcb.
    """

    type: DataType
    value: Any = None

    # -- constructors for the common types -------------------------------------------------------
    @classmethod
    def null(cls) -> Data:
        return cls(DataType.NULL)

    @classmethod
    def array(cls, items: list[Data]) -> Data:
        return cls(DataType.ARRAY, list(items))

    @classmethod
    def structure(cls, items: list[Data]) -> Data:
        return cls(DataType.STRUCTURE, list(items))

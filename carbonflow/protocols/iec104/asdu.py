"""ASDU codec for the IEC 60870-5-104 types carbonflow reads and commands it sends.

Standard 104 field sizes: type id 1, VSQ 1 (SQ bit 7, count bits 0-6), cause of transmission 2
(cause bits 0-5, P/N bit 6, test bit 7; then originator address), common address 2, IOA 3.

Values are :class:`~decimal.Decimal`: normalised values as exact fractions of 2^15, scaled values and
counters as integers, short floats as the shortest decimal that reads back as the same 32-bit float
(``00 00 48 41`` -> ``12.5``), single/double points as their state number.  Types outside the table keep
their information objects as raw bytes so a frame is never lost for being unknown.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.iec104 import cp56time
from carbonflow.protocols.iec104.cp56time import CP56Time2a

HEADER_SIZE = 6  # type id, VSQ, COT, originator, common address (2)
IOA_SIZE = 3
MAX_IOA = (1 << 24) - 1
MAX_COUNT = 127


class Cause(enum.IntEnum):
    """Cause of transmission (6 bits)."""

    PERIODIC = 1
    BACKGROUND = 2
    SPONTANEOUS = 3
    INITIALIZED = 4
    REQUEST = 5
    ACTIVATION = 6
    ACTIVATION_CON = 7
    DEACTIVATION = 8
    DEACTIVATION_CON = 9
    ACTIVATION_TERMINATION = 10
    RETURN_REMOTE = 11
    RETURN_LOCAL = 12
    FILE_TRANSFER = 13
    INTERROGATED_BY_STATION = 20
    REQUESTED_BY_GENERAL_COUNTER = 37
    UNKNOWN_TYPE = 44
    UNKNOWN_CAUSE = 45
    UNKNOWN_COMMON_ADDRESS = 46
    UNKNOWN_IOA = 47


def cause_name(cot: int) -> str:
    if 21 <= cot <= 36:
        return f"interrogated by group {cot - 20}"
    if 38 <= cot <= 41:
        return f"requested by counter group {cot - 37}"
    try:
        return Cause(cot).name.lower().replace("_", " ")
    except ValueError:
        return f"cause {cot}"


QDS_FLAGS = ((0x01, "OV"), (0x10, "BL"), (0x20, "SB"), (0x40, "NT"), (0x80, "IV"))
POINT_FLAGS = QDS_FLAGS[1:]  # SIQ/DIQ: same bits 4-7, bit 0 is the state itself
BCR_FLAGS = ((0x20, "CY"), (0x40, "CA"), (0x80, "IV"))
QUALITY_NAMES = {
    "OV": "overflow",
    "BL": "blocked",
    "SB": "substituted",
    "NT": "not topical",
    "IV": "invalid",
    "CY": "carry",
    "CA": "counter adjusted",
}


def _flags(byte: int, table: tuple[tuple[int, str], ...]) -> frozenset[str]:
    return frozenset(name for bit, name in table if byte & bit)


def _flag_byte(flags: frozenset[str], table: tuple[tuple[int, str], ...]) -> int:
    known = {name: bit for bit, name in table}
    unknown = set(flags) - known.keys()
    if unknown:
        raise ProtocolError(f"quality flags {sorted(unknown)} not allowed here (only {sorted(known)})")
    return sum(known[name] for name in flags)


@dataclass(frozen=True)
class InformationObject:
    ioa: int
    value: Decimal | None = None  # None for commands (qualifier) and clock sync (time)
    quality: frozenset[str] = frozenset()
    time: CP56Time2a | None = None
    sequence: int | None = None  # BCR sequence number (0..31) of integrated totals
    qualifier: int | None = None  # QOI / QCC / COI of commands and end of initialisation


@dataclass(frozen=True)
class Asdu:
    type_id: int
    cot: int
    common_address: int
    objects: tuple[InformationObject, ...] = ()
    originator: int = 0
    negative: bool = False  # P/N bit: negative confirmation
    test: bool = False
    sequence: bool = False  # SQ bit: objects at consecutive IOAs, only the first IOA transmitted
    raw_objects: bytes = b""  # information objects of a type this codec does not know
    count: int = field(default=0)  # VSQ count; derived from objects unless the type is unknown

    @property
    def type_name(self) -> str:
        return TYPES[self.type_id].name if self.type_id in TYPES else f"type {self.type_id}"


# -- element codecs -------------------------------------------------------------------------------
Decoded = dict[str, object]


def float32_decimal(raw: bytes) -> Decimal:
    """A little-endian IEEE-754 single as the shortest decimal that reads back as the same single."""
    (number,) = struct.unpack("<f", raw)
    if math.isnan(number):
        return Decimal("NaN")
    if math.isinf(number):
        return Decimal("Infinity") if number > 0 else Decimal("-Infinity")
    for digits in range(1, 10):
        text = f"{number:.{digits}g}"
        try:
            if struct.unpack("<f", struct.pack("<f", float(text)))[0] == number:
                break
        except OverflowError:
            continue
    return Decimal(repr(float(text)))  # repr keeps a ".0" on whole numbers ("100.0")


def decimal_float32(value: Decimal) -> bytes:
    try:
        return struct.pack("<f", float(value))
    except OverflowError:
        raise ProtocolError(f"value {value} does not fit a 32-bit float") from None


def _normalised(raw: bytes) -> Decimal:
    return Decimal(int.from_bytes(raw, "little", signed=True)) / Decimal(32768)


def _encode_normalised(value: Decimal) -> bytes:
    raw = int((Decimal(value) * 32768).to_integral_value(ROUND_HALF_EVEN))
    if not -32768 <= raw <= 32767:
        raise ProtocolError(f"normalised value {value} outside -1 .. 1-2^-15")
    return raw.to_bytes(2, "little", signed=True)


def _integer(value: Decimal, size: int, what: str) -> bytes:
    if value != value.to_integral_value():
        raise ProtocolError(f"{what} value {value} is not an integer")
    try:
        return int(value).to_bytes(size, "little", signed=True)
    except OverflowError:
        raise ProtocolError(f"{what} value {value} does not fit {size * 8} bits") from None


def _qds_time(decode_value: Callable[[bytes], Decimal], size: int, timed: bool) -> Callable[[bytes], Decoded]:
    def decode(data: bytes) -> Decoded:
        out: Decoded = {"value": decode_value(data[:size]), "quality": _flags(data[size], QDS_FLAGS)}
        if timed:
            out["time"] = cp56time.decode(data[size + 1 :])
        return out

    return decode


def _qds_time_encode(
    encode_value: Callable[[Decimal], bytes], timed: bool
) -> Callable[[InformationObject], bytes]:
    def encode(obj: InformationObject) -> bytes:
        if obj.value is None:
            raise ProtocolError(f"IOA {obj.ioa}: a measured value needs a value")
        out = encode_value(obj.value) + bytes([_flag_byte(obj.quality, QDS_FLAGS)])
        return out + _time(obj, timed)

    return encode


def _time(obj: InformationObject, timed: bool) -> bytes:
    if not timed:
        return b""
    if obj.time is None:
        raise ProtocolError(f"IOA {obj.ioa}: a time-tagged type needs a time")
    return cp56time.encode(obj.time)


def _bcr_decode(timed: bool) -> Callable[[bytes], Decoded]:
    def decode(data: bytes) -> Decoded:
        out: Decoded = {
            "value": Decimal(int.from_bytes(data[:4], "little", signed=True)),
            "sequence": data[4] & 0x1F,
            "quality": _flags(data[4], BCR_FLAGS),
        }
        if timed:
            out["time"] = cp56time.decode(data[5:])
        return out

    return decode


def _bcr_encode(timed: bool) -> Callable[[InformationObject], bytes]:
    def encode(obj: InformationObject) -> bytes:
        if obj.value is None:
            raise ProtocolError(f"IOA {obj.ioa}: an integrated total needs a value")
        sequence = obj.sequence or 0
        if not 0 <= sequence <= 31:
            raise ProtocolError(f"IOA {obj.ioa}: counter sequence number {sequence} outside 0..31")
        flags = _flag_byte(obj.quality, BCR_FLAGS)
        return _integer(obj.value, 4, "counter") + bytes([sequence | flags]) + _time(obj, timed)

    return encode


def _point_decode(state_mask: int, timed: bool) -> Callable[[bytes], Decoded]:
    def decode(data: bytes) -> Decoded:
        out: Decoded = {"value": Decimal(data[0] & state_mask), "quality": _flags(data[0], POINT_FLAGS)}
        if timed:
            out["time"] = cp56time.decode(data[1:])
        return out

    return decode


def _point_encode(state_mask: int, timed: bool) -> Callable[[InformationObject], bytes]:
    def encode(obj: InformationObject) -> bytes:
        state = obj.value
        if state is None or state != state.to_integral_value() or not 0 <= state <= state_mask:
            raise ProtocolError(f"IOA {obj.ioa}: point state {state} outside 0..{state_mask}")
        return bytes([int(state) | _flag_byte(obj.quality, POINT_FLAGS)]) + _time(obj, timed)

    return encode


def _qualifier_decode(data: bytes) -> Decoded:
    return {"qualifier": data[0]}


def _qualifier_encode(obj: InformationObject) -> bytes:
    if obj.qualifier is None or not 0 <= obj.qualifier <= 255:
        raise ProtocolError(f"IOA {obj.ioa}: qualifier {obj.qualifier} outside 0..255")
    return bytes([obj.qualifier])


def _time_only_decode(data: bytes) -> Decoded:
    return {"time": cp56time.decode(data)}


def _time_only_encode(obj: InformationObject) -> bytes:
    return _time(obj, True)


@dataclass(frozen=True)
class TypeInfo:
    type_id: int
    name: str
    description: str
    size: int  # octets of one information element (without IOA)
    kind: str  # "float", "scaled", "normalised", "counter", "single", "double", "command", "time"
    decode: Callable[[bytes], Decoded]
    encode: Callable[[InformationObject], bytes]
    timed: bool = False


def _type(type_id: int, name: str, description: str, size: int, kind: str, codec, timed=False) -> TypeInfo:
    decode, encode = codec
    return TypeInfo(type_id, name, description, size, kind, decode, encode, timed)


def _measured(width: int, decode_value, encode_value, timed: bool):
    return _qds_time(decode_value, width, timed), _qds_time_encode(encode_value, timed)


_NORMALISED = (2, _normalised, _encode_normalised)
_SCALED = (
    2,
    lambda raw: Decimal(int.from_bytes(raw, "little", signed=True)),
    lambda value: _integer(value, 2, "scaled"),
)
_FLOAT = (4, float32_decimal, decimal_float32)

_SINGLE = (_point_decode(1, False), _point_encode(1, False))
_SINGLE_T = (_point_decode(1, True), _point_encode(1, True))
_DOUBLE = (_point_decode(3, False), _point_encode(3, False))
_DOUBLE_T = (_point_decode(3, True), _point_encode(3, True))
_QUALIFIER = (_qualifier_decode, _qualifier_encode)
_WITH_TIME = ", with CP56Time2a"

TYPES: dict[int, TypeInfo] = {
    info.type_id: info
    for info in (
        _type(1, "M_SP_NA_1", "single-point information", 1, "single", _SINGLE),
        _type(3, "M_DP_NA_1", "double-point information", 1, "double", _DOUBLE),
        _type(9, "M_ME_NA_1", "measured value, normalised", 3, "normalised", _measured(*_NORMALISED, False)),
        _type(11, "M_ME_NB_1", "measured value, scaled", 3, "scaled", _measured(*_SCALED, False)),
        _type(13, "M_ME_NC_1", "measured value, short float", 5, "float", _measured(*_FLOAT, False)),
        _type(15, "M_IT_NA_1", "integrated totals", 5, "counter", (_bcr_decode(False), _bcr_encode(False))),
        _type(30, "M_SP_TB_1", "single-point information" + _WITH_TIME, 8, "single", _SINGLE_T, True),
        _type(31, "M_DP_TB_1", "double-point information" + _WITH_TIME, 8, "double", _DOUBLE_T, True),
        _type(
            34,
            "M_ME_TD_1",
            "measured value, normalised" + _WITH_TIME,
            10,
            "normalised",
            _measured(*_NORMALISED, True),
            True,
        ),
        _type(
            35,
            "M_ME_TE_1",
            "measured value, scaled" + _WITH_TIME,
            10,
            "scaled",
            _measured(*_SCALED, True),
            True,
        ),
        _type(
            36,
            "M_ME_TF_1",
            "measured value, short float" + _WITH_TIME,
            12,
            "float",
            _measured(*_FLOAT, True),
            True,
        ),
        _type(
            37,
            "M_IT_TB_1",
            "integrated totals" + _WITH_TIME,
            12,
            "counter",
            (_bcr_decode(True), _bcr_encode(True)),
            True,
        ),
        _type(70, "M_EI_NA_1", "end of initialisation", 1, "command", _QUALIFIER),
        _type(100, "C_IC_NA_1", "interrogation command", 1, "command", _QUALIFIER),
        _type(101, "C_CI_NA_1", "counter interrogation command", 1, "command", _QUALIFIER),
        _type(
            103,
            "C_CS_NA_1",
            "clock synchronisation command",
            7,
            "time",
            (_time_only_decode, _time_only_encode),
        ),
    )
}
TYPE_IDS = {info.name: type_id for type_id, info in TYPES.items()}
TIME_TAGGED = {1: 30, 3: 31, 9: 34, 11: 35, 13: 36, 15: 37}  # the time-tagged variant of each plain type


# -- ASDU -----------------------------------------------------------------------------------------
def decode(data: bytes) -> Asdu:
    """Decode one ASDU (the bytes after the APCI of an I-frame)."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"truncated ASDU: {len(data)} bytes, need at least {HEADER_SIZE}")
    type_id, vsq, cot_byte, originator = data[0], data[1], data[2], data[3]
    common_address = int.from_bytes(data[4:6], "little")
    sequence, count = bool(vsq & 0x80), vsq & 0x7F
    header = {
        "type_id": type_id,
        "cot": cot_byte & 0x3F,
        "negative": bool(cot_byte & 0x40),
        "test": bool(cot_byte & 0x80),
        "originator": originator,
        "common_address": common_address,
        "sequence": sequence,
        "count": count,
    }
    if type_id == 0:
        raise ProtocolError("type id 0 is not defined")
    if header["cot"] == 0:
        raise ProtocolError("cause of transmission 0 is not defined")
    if count == 0:
        raise ProtocolError("VSQ count 0: an ASDU carries at least one information object")
    body = bytes(data[HEADER_SIZE:])
    info = TYPES.get(type_id)
    if info is None:
        return Asdu(**header, raw_objects=body)
    expected = IOA_SIZE + count * info.size if sequence else count * (IOA_SIZE + info.size)
    if len(body) != expected:
        raise ProtocolError(
            f"{info.name} with {count} object(s){' (SQ=1)' if sequence else ''} needs {expected} bytes "
            f"of information objects, got {len(body)}"
        )
    objects = []
    position = 0
    ioa = 0
    for index in range(count):
        if index == 0 or not sequence:
            ioa = int.from_bytes(body[position : position + IOA_SIZE], "little")
            position += IOA_SIZE
        else:
            ioa += 1
            if ioa > MAX_IOA:
                raise ProtocolError("SQ=1 sequence runs past IOA 16777215")
        fields = info.decode(body[position : position + info.size])
        position += info.size
        objects.append(InformationObject(ioa=ioa, **fields))  # type: ignore[arg-type]
    return Asdu(**header, objects=tuple(objects))


def encode(asdu: Asdu) -> bytes:
    info = TYPES.get(asdu.type_id)
    if not 1 <= asdu.type_id <= 255:
        raise ProtocolError(f"type id {asdu.type_id} outside 1..255")
    if not 1 <= asdu.cot <= 63:
        raise ProtocolError(f"cause of transmission {asdu.cot} outside 1..63")
    if not 0 <= asdu.originator <= 255:
        raise ProtocolError(f"originator address {asdu.originator} outside 0..255")
    if not 0 <= asdu.common_address <= 0xFFFF:
        raise ProtocolError(f"common address {asdu.common_address} outside 0..65535")
    if info is None:
        if not asdu.raw_objects or not 1 <= asdu.count <= MAX_COUNT:
            raise ProtocolError(f"type id {asdu.type_id} is not supported; give raw_objects and a count")
        count, body = asdu.count, asdu.raw_objects
    else:
        count = len(asdu.objects)
        if not 1 <= count <= MAX_COUNT:
            raise ProtocolError(f"{count} information objects, an ASDU holds 1..{MAX_COUNT}")
        parts = []
        for index, obj in enumerate(asdu.objects):
            if not 0 <= obj.ioa <= MAX_IOA:
                raise ProtocolError(f"IOA {obj.ioa} outside 0..{MAX_IOA}")
            if index == 0 or not asdu.sequence:
                parts.append(obj.ioa.to_bytes(IOA_SIZE, "little"))
            elif obj.ioa != asdu.objects[0].ioa + index:
                raise ProtocolError(f"SQ=1 needs consecutive IOAs, got {obj.ioa} at position {index}")
            parts.append(info.encode(obj))
        body = b"".join(parts)
    cot_byte = asdu.cot | (0x40 if asdu.negative else 0) | (0x80 if asdu.test else 0)
    header = bytes([asdu.type_id, count | (0x80 if asdu.sequence else 0), cot_byte, asdu.originator])
    return header + asdu.common_address.to_bytes(2, "little") + body


def command(
    type_id: int,
    cot: int,
    common_address: int,
    qualifier: int | None = None,
    time: CP56Time2a | None = None,
    originator: int = 0,
    negative: bool = False,
) -> Asdu:
    """A single-object command/confirmation ASDU at IOA 0 (GI, CI, clock sync, end of init)."""
    obj = InformationObject(ioa=0, qualifier=qualifier, time=time)
    return Asdu(type_id, cot, common_address, (obj,), originator=originator, negative=negative)

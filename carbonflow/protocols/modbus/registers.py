"""Modbus register maps as data: which quantity sits at which address, in which type, word order,
scale and unit — they differ by vendor and model, so a new meter needs a map file, never code.

Integers are scaled exactly (``Decimal(raw) * scale``); IEEE floats are taken at their shortest
decimal form (the digits a meter's display shows for the value it holds), then scaled.

Interval snapshots, as meters with a demand interval have them: a ``snapshot_time`` register (UNIX
seconds of the last interval end, 0 before the first) and ``snapshot`` registers, each a copy of a
counter (``snapshot_of``) taken at that moment, in the same format; a ``clock`` register shows the
meter's own time.  Kept next to each other, one read returns a consistent snapshot.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import Enum
from importlib import resources
from typing import Any

from carbonflow.protocols.errors import ProtocolError

MAX_REGISTERS_PER_READ = 125  # Modbus limit for function codes 3 and 4
KINDS = ("instant", "counter", "carbon", "clock", "snapshot_time", "snapshot")
EXACT = Context(prec=400)  # digits enough for any register type times any scale: never rounds


class DataType(Enum):
    INT16 = ("int16", 1, ">h")
    UINT16 = ("uint16", 1, ">H")
    INT32 = ("int32", 2, ">i")
    UINT32 = ("uint32", 2, ">I")
    INT64 = ("int64", 4, ">q")
    UINT64 = ("uint64", 4, ">Q")
    FLOAT32 = ("float32", 2, ">f")
    FLOAT64 = ("float64", 4, ">d")

    def __init__(self, label: str, words: int, fmt: str) -> None:
        self.label = label
        self.words = words
        self.fmt = fmt

    @property
    def is_float(self) -> bool:
        return self.fmt[-1] in "fd"

    @classmethod
    def parse(cls, text: str) -> DataType:
        for member in cls:
            if member.label == text:
                return member
        raise ValueError(f"unknown type {text!r} (one of {', '.join(m.label for m in cls)})")


class Table(Enum):
    HOLDING = "holding"  # function 3 read, 6/16 write
    INPUT = "input"  # function 4, read-only

    @property
    def read_function(self) -> int:
        return 3 if self is Table.HOLDING else 4


@dataclass(frozen=True)
class RegisterPoint:
    name: str  # the point's name in this map, e.g. "import_energy_kwh"
    address: int  # zero-based register address (the PDU address, not the 4xxxx label)
    dtype: DataType
    table: Table = Table.HOLDING
    word_order: str = "big"  # "big": high word first (Modbus convention); "little": low word first
    scale: Decimal = Decimal(1)  # engineering value = raw x scale
    unit: str = ""
    quantity: str = ""  # what a simulated device feeds it with, e.g. "p_kw"; a counter integrates it
    # "instant" (a measured value), "counter" (integrates its quantity over time), "carbon" (accumulates
    # the increase of energy_point x the value of factor_point in g/kWh, as an electric-carbon meter does),
    # "clock" (the meter's clock, UNIX seconds), "snapshot_time" (UNIX seconds of the last interval end
    # the meter took a snapshot at; 0: none yet), "snapshot" (register ``snapshot_of`` at that moment)
    kind: str = "instant"
    writable: bool = False
    energy_point: str = ""
    factor_point: str = ""
    initial: Decimal | None = None  # a setting's value at power-up (e.g. the carbon factor)
    snapshot_of: str = ""  # a "snapshot" register: the register it copies at every interval end

    @property
    def words(self) -> int:
        return self.dtype.words

    def decode(self, registers: Iterable[int]) -> Decimal:
        """Registers as read (in address order) -> engineering value."""
        words = list(registers)
        if len(words) != self.words or any(not 0 <= w <= 0xFFFF for w in words):
            raise ProtocolError(f"point {self.name}: needs {self.words} 16-bit registers, got {words}")
        if self.word_order == "little":
            words.reverse()
        raw = struct.unpack(self.dtype.fmt, struct.pack(f">{len(words)}H", *words))[0]
        if self.dtype.is_float:
            if not math.isfinite(raw):
                raise ProtocolError(f"point {self.name}: register holds {raw}, not a number")
            value = Decimal(_shortest_float32(raw) if self.words == 2 else repr(raw))
        else:
            value = Decimal(raw)
        return _normal(EXACT.multiply(value, self.scale))

    def encode(self, value: Decimal | int | str) -> list[int]:
        """Engineering value -> registers in address order (what a device holds)."""
        try:
            raw_decimal = EXACT.divide(Decimal(value), self.scale)
        except (InvalidOperation, ValueError) as error:
            raise ProtocolError(f"point {self.name}: {value!r} is not a number") from error
        if self.dtype.is_float:
            raw: float | int = float(raw_decimal)
        else:
            if raw_decimal != raw_decimal.to_integral_value():
                raw_decimal = raw_decimal.to_integral_value()  # a register stores whole counts
            raw = int(raw_decimal)
        try:
            packed = struct.pack(self.dtype.fmt, raw)
        except (struct.error, OverflowError) as error:
            raise ProtocolError(f"point {self.name}: {value} does not fit {self.dtype.label}") from error
        words = list(struct.unpack(f">{self.words}H", packed))
        if self.word_order == "little":
            words.reverse()
        return words


def _shortest_float32(value: float) -> str:
    """The shortest decimal string that reads back as the same float32 (what a display shows)."""
    target = struct.pack(">f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        with contextlib.suppress(OverflowError):  # rounding up near float32 max leaves its range
            if struct.pack(">f", float(text)) == target:
                return text
    return repr(value)


def _normal(value: Decimal) -> Decimal:
    """Drop exponent notation (1.2E+3 -> 1200) but keep the digits the scale gives."""
    return value if value.as_tuple().exponent <= 0 else Decimal(f"{value:f}")


@dataclass(frozen=True)
class RegisterMap:
    model: str
    points: tuple[RegisterPoint, ...]
    description: str = ""

    def point(self, name: str) -> RegisterPoint:
        for point in self.points:
            if point.name == name:
                return point
        raise ProtocolError(f"register map {self.model}: no point {name!r}")

    def at(self, table: Table, address: int) -> RegisterPoint | None:
        for point in self.points:
            if point.table is table and point.address <= address < point.address + point.words:
                return point
        return None

    def read_plan(self, names: Iterable[str] | None = None) -> list[tuple[Table, int, int]]:
        """Fewest reads (table, start, count) that cover the points, never spanning a gap that the
        device might not implement (reading an undefined address is an exception 2 on most meters)."""
        chosen = self.points if names is None else tuple(self.point(n) for n in names)
        plan: list[tuple[Table, int, int]] = []
        for point in sorted(chosen, key=lambda p: (p.table.value, p.address)):
            if plan:
                table, start, count = plan[-1]
                end = start + count
                fits = point.address + point.words - start <= MAX_REGISTERS_PER_READ
                if table is point.table and point.address <= end and fits:
                    plan[-1] = (table, start, max(end, point.address + point.words) - start)
                    continue
            plan.append((point.table, point.address, point.words))
        return plan


def register_map_from_dict(data: Mapping[str, Any], origin: str = "register map") -> RegisterMap:
    """Validate a map document; errors name the offending point."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{origin}: must be an object with 'model' and 'points'")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError(f'{origin}: missing field "model"')
    records = data.get("points")
    if not isinstance(records, list) or not records:
        raise ProtocolError(f'{origin} {model}: "points" must be a non-empty list')
    points: list[RegisterPoint] = []
    for number, record in enumerate(records):
        where = f"{origin} {model}: point #{number}"
        if isinstance(record, Mapping) and isinstance(record.get("name"), str):
            where = f"{origin} {model}: point {record['name']!r}"
        points.append(_point_from_dict(record, where))
    _check_overlaps(points, f"{origin} {model}")
    _check_references(points, f"{origin} {model}")
    return RegisterMap(model=model, points=tuple(points), description=str(data.get("description", "")))


def _point_from_dict(record: Any, where: str) -> RegisterPoint:
    if not isinstance(record, Mapping):
        raise ProtocolError(f"{where}: must be an object")
    try:
        name = record["name"]
        address = _address(record["address"])
        dtype = DataType.parse(record["type"])
    except KeyError as missing:
        raise ProtocolError(f"{where}: missing field {missing}") from None
    except ValueError as error:
        raise ProtocolError(f"{where}: {error}") from None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ProtocolError(f"{where}: name must be letters, digits, '_', '.', '-'")
    try:
        table = Table(record.get("table", "holding"))
    except ValueError:
        raise ProtocolError(f"{where}: table must be 'holding' or 'input'") from None
    word_order = record.get("word_order", "big")
    if word_order not in ("big", "little"):
        raise ProtocolError(f"{where}: word_order must be 'big' or 'little'")
    try:
        scale = Decimal(str(record.get("scale", "1")))
    except InvalidOperation:
        raise ProtocolError(f"{where}: scale {record.get('scale')!r} is not a number") from None
    if not scale.is_finite() or scale == 0:
        raise ProtocolError(f"{where}: scale must be a finite non-zero number")
    kind = record.get("kind", "instant")
    if kind not in KINDS:
        raise ProtocolError(f"{where}: kind must be one of {', '.join(repr(k) for k in KINDS)}")
    if kind == "carbon" and not (record.get("energy_point") and record.get("factor_point")):
        raise ProtocolError(f"{where}: a carbon register needs energy_point and factor_point")
    if (kind == "snapshot") != bool(record.get("snapshot_of")):
        raise ProtocolError(
            f"{where}: a snapshot register (and only one) names the register it copies in snapshot_of"
        )
    if kind in ("clock", "snapshot_time") and dtype.is_float:
        raise ProtocolError(f"{where}: a {kind} register holds whole UNIX seconds, not a float")
    initial = record.get("initial")
    try:
        initial = None if initial is None else Decimal(str(initial))
    except InvalidOperation:
        raise ProtocolError(f"{where}: initial {initial!r} is not a number") from None
    if address + dtype.words > 0x10000:
        raise ProtocolError(f"{where}: address {address} + {dtype.words} registers passes 65535")
    writable = record.get("writable", False)
    if table is Table.INPUT and writable:
        raise ProtocolError(f"{where}: input registers cannot be writable")
    return RegisterPoint(
        name=name,
        address=address,
        dtype=dtype,
        table=table,
        word_order=word_order,
        scale=scale,
        unit=str(record.get("unit", "")),
        quantity=str(record.get("quantity", "")),
        kind=kind,
        writable=bool(writable),
        energy_point=str(record.get("energy_point", "")),
        factor_point=str(record.get("factor_point", "")),
        initial=initial,
        snapshot_of=str(record.get("snapshot_of", "")),
    )


def _address(value: Any) -> int:
    if isinstance(value, str):
        value = int(value, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ValueError(f"address must be 0..65535 (or '0x..'), got {value!r}")
    return value


def _check_overlaps(points: list[RegisterPoint], where: str) -> None:
    names: set[str] = set()
    taken: dict[tuple[Table, int], str] = {}
    for point in points:
        if point.name in names:
            raise ProtocolError(f"{where}: duplicate point {point.name!r}")
        names.add(point.name)
        for address in range(point.address, point.address + point.words):
            other = taken.setdefault((point.table, address), point.name)
            if other != point.name:
                raise ProtocolError(f"{where}: point {point.name!r} overlaps {other!r} at {address}")


def _check_references(points: list[RegisterPoint], where: str) -> None:
    names = {p.name for p in points}
    for point in points:
        for ref in (point.energy_point, point.factor_point, point.snapshot_of):
            if ref and ref not in names:
                raise ProtocolError(f"{where}: point {point.name!r} refers to unknown point {ref!r}")
    by_name = {p.name: p for p in points}
    snapshots = [p for p in points if p.kind == "snapshot"]
    for point in snapshots:
        if by_name[point.snapshot_of].kind not in ("counter", "carbon"):
            copied = point.snapshot_of
            raise ProtocolError(f"{where}: snapshot {point.name!r} copies {copied!r}, which is no counter")
    if snapshots and not any(p.kind == "snapshot_time" for p in points):
        raise ProtocolError(f"{where}: snapshot registers need a snapshot_time register (when taken)")


def builtin_map(model: str) -> RegisterMap:
    """A register map shipped in ``carbonflow/protocols/modbus/maps/<model>.json``."""
    try:
        text = resources.files(__package__).joinpath("maps").joinpath(f"{model}.json").read_text("utf-8")
    except (FileNotFoundError, OSError):
        have = ", ".join(builtin_models())
        raise ProtocolError(f"no built-in Modbus register map {model!r} (have: {have})") from None
    return register_map_from_dict(json.loads(text), origin=f"built-in map {model}")


def builtin_models() -> list[str]:
    folder = resources.files(__package__).joinpath("maps")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))

"""The object table as data: OI/attribute -> name, scaler, unit; and value rendering with the scaler.

Scalers and units of the standard objects are those of DL/T 698.45-2017 Appendix E (cross-checked
against the ``dlt698`` package's catalogue).  The carbon objects (2080/2090/4120) are a vendor/pilot
extension seen in one public electric-carbon-meter integration; their scaler and unit are declared
here explicitly and can be replaced per meter model with :meth:`ObjectTable.with_items`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal

from carbonflow.protocols.dlt698.types import INTEGER_TYPES, Data, DataType, ScalerUnit
from carbonflow.protocols.errors import ProtocolError

# DL/T 698.45 unit enumeration (Appendix "单位"); carbon units are not in it (they report 254 "other").
UNITS: dict[int, str] = {
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C", 10: "currency",
    11: "m", 12: "m/s", 13: "m³", 14: "m³", 15: "m³/h", 16: "m³/h", 17: "m³/d", 18: "m³/d", 19: "L",
    20: "kg", 21: "N", 22: "Nm", 23: "Pa", 24: "bar", 25: "J", 26: "J/h", 27: "W", 28: "kW", 29: "VA",
    30: "kVA", 31: "var", 32: "kvar", 33: "kWh", 34: "kVAh", 35: "kvarh", 36: "A", 37: "C", 38: "V",
    39: "V/m", 40: "F", 41: "Ω", 42: "Ωm²/m", 43: "Wb", 44: "T", 45: "A/m", 46: "H", 47: "Hz",
    48: "1/(Wh)", 49: "1/(varh)", 50: "1/(VAh)", 51: "%", 52: "byte", 53: "dBm", 54: "yuan/kWh", 55: "Ah",
    56: "ms", 254: "other", 255: "",
}  # fmt: skip
UNIT_CODES = {text: code for code, text in reversed(list(UNITS.items())) if text}
OTHER_UNIT = 254
NO_UNIT = 255


@dataclass(frozen=True)
class ObjectItem:
    """One attribute of an interface object as a meter model serves it."""

    oi: int
    attribute: int
    name: str
    scaler: int = 0
    unit: str = ""
    element_type: DataType | None = None  # of each array element, or of the value itself
    elements: int = 0  # array length the meter serves (0: not an array)

    @property
    def unit_code(self) -> int:
        return UNIT_CODES.get(self.unit, OTHER_UNIT) if self.unit else NO_UNIT

    @property
    def scaler_unit(self) -> ScalerUnit:
        return ScalerUnit(self.scaler, self.unit_code)


def _energy(oi: int, name: str, unit: str = "kWh", signed: bool = False) -> list[ObjectItem]:
    normal = DataType.DOUBLE_LONG if signed else DataType.DOUBLE_LONG_UNSIGNED
    extended = DataType.LONG64 if signed else DataType.LONG64_UNSIGNED
    return [
        ObjectItem(oi, 2, name, -2, unit, normal, 5),
        ObjectItem(oi, 4, f"{name}, extended precision", -4, unit, extended, 5),
    ]


STANDARD_ITEMS: list[ObjectItem] = [
    *_energy(0x0000, "combined active energy", signed=True),
    *_energy(0x0010, "forward active energy"),
    *_energy(0x0020, "reverse active energy"),
    *_energy(0x0030, "combined reactive energy 1", "kvarh", signed=True),
    *_energy(0x0040, "combined reactive energy 2", "kvarh", signed=True),
    *_energy(0x0050, "quadrant I reactive energy", "kvarh"),
    *_energy(0x0060, "quadrant II reactive energy", "kvarh"),
    *_energy(0x0070, "quadrant III reactive energy", "kvarh"),
    *_energy(0x0080, "quadrant IV reactive energy", "kvarh"),
    *_energy(0x0090, "forward apparent energy", "kVAh"),
    ObjectItem(0x2000, 2, "voltage", -1, "V", DataType.LONG_UNSIGNED, 3),
    ObjectItem(0x2001, 2, "current", -3, "A", DataType.DOUBLE_LONG, 3),
    ObjectItem(0x2001, 4, "neutral current", -3, "A", DataType.DOUBLE_LONG),
    ObjectItem(0x2004, 2, "active power", -1, "W", DataType.DOUBLE_LONG, 4),
    ObjectItem(0x2005, 2, "reactive power", -1, "var", DataType.DOUBLE_LONG, 4),
    ObjectItem(0x2006, 2, "apparent power", -1, "VA", DataType.DOUBLE_LONG, 4),
    ObjectItem(0x200A, 2, "power factor", -3, "", DataType.LONG, 4),
    ObjectItem(0x200F, 2, "grid frequency", -2, "Hz", DataType.LONG_UNSIGNED),
    ObjectItem(0x2010, 2, "meter temperature", -1, "°C", DataType.LONG),
    ObjectItem(0x2017, 2, "active demand", -4, "kW", DataType.DOUBLE_LONG),
    ObjectItem(0x2018, 2, "reactive demand", -4, "kvar", DataType.DOUBLE_LONG),
    ObjectItem(0x4000, 2, "date-time", 0, "", DataType.DATE_TIME_S),
    ObjectItem(0x4001, 2, "communication address", 0, "", DataType.OCTET_STRING),
    ObjectItem(0x4002, 2, "meter number", 0, "", DataType.OCTET_STRING),
    ObjectItem(0x3106, 2, "power-off event records", 0, ""),
    ObjectItem(0x2021, 2, "data freeze time", 0, "", DataType.DATE_TIME_S),
    ObjectItem(0x5002, 2, "minute frozen data", 0, ""),
    ObjectItem(0x5003, 2, "hourly frozen data", 0, ""),
    ObjectItem(0x5004, 2, "daily frozen data", 0, ""),
    ObjectItem(0xF201, 2, "RS-485 port", 0, ""),
]

MINUTE_FROZEN_OI, HOURLY_FROZEN_OI, DAILY_FROZEN_OI = 0x5002, 0x5003, 0x5004
FREEZE_TIME_OI = 0x2021  # 数据冻结时间: every frozen record's time column (2021 0200, date_time_s)


def freeze_object(period_s: int) -> tuple[int, int]:
    """The freeze object for a freeze period and the period in its unit: (5003, hours) for whole hours,
    else (5002, minutes); ValueError for a period that is not whole minutes (or beyond a long-unsigned)."""
    if period_s <= 0 or period_s % 60:
        raise ValueError(f"freeze period {period_s} s: DL/T 698.45 freezes every whole number of minutes")
    if period_s % 3600 == 0:
        return HOURLY_FROZEN_OI, period_s // 3600
    if period_s // 60 > 0xFFFF:
        raise ValueError(f"freeze period {period_s} s is too long for a minute freeze")
    return MINUTE_FROZEN_OI, period_s // 60


# Defaults from the one public electric-carbon-meter integration (protocols.md §7); scaler/unit are ours.
CARBON_ITEMS: list[ObjectItem] = [
    ObjectItem(0x2080, 2, "forward carbon emission", -2, "kgCO2", DataType.DOUBLE_LONG_UNSIGNED),
    ObjectItem(0x2090, 2, "reverse carbon emission", -2, "kgCO2", DataType.DOUBLE_LONG_UNSIGNED),
    ObjectItem(0x4120, 2, "carbon factor download", -4, "kgCO2/kWh", DataType.LONG_UNSIGNED),
]


class ObjectTable:
    """Lookup of (OI, attribute) -> ObjectItem; one table per meter model."""

    def __init__(self, items: list[ObjectItem]) -> None:
        self._items = {(item.oi, item.attribute): item for item in items}

    def with_items(self, items: list[ObjectItem]) -> ObjectTable:
        """A copy where ``items`` add to or replace entries (a meter model's own map)."""
        return ObjectTable([*self._items.values(), *items])

    def find(self, oi: int, attribute: int) -> ObjectItem | None:
        return self._items.get((oi, attribute & 0x1F))

    def items(self) -> list[ObjectItem]:
        return list(self._items.values())


DEFAULT_OBJECTS = ObjectTable(STANDARD_ITEMS + CARBON_ITEMS)


def scaled(raw: int, scaler: int) -> Decimal:
    """An integer register times 10^scaler, keeping the meter's digits: (123456, -2) -> 1234.56."""
    return Decimal(raw).scaleb(scaler)


def decimal_text(value: Decimal) -> str:
    return format(value, "f")


def float_text(value: float, data_type: DataType) -> str:
    """The shortest decimal that reads back to the same float32/float64 (what the meter holds)."""
    if data_type == DataType.FLOAT64 or value != value or value in (float("inf"), float("-inf")):
        return repr(value)

    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack(">f", float(text)) == packed:
            return text
    return repr(value)


def render(data: Data, scaler: int = 0) -> object:
    """Data -> JSON-able engineering value: integers as decimal strings with the scaler applied,
    dates as text, arrays/structures as lists, null as None."""
    if data.type in (DataType.ARRAY, DataType.STRUCTURE):
        return [render(item, scaler) for item in data.value]
    if data.type in INTEGER_TYPES and data.type != DataType.ENUM:
        return decimal_text(scaled(data.value, scaler))
    if data.type == DataType.NULL:
        return None
    if data.type in (DataType.FLOAT32, DataType.FLOAT64):
        return float_text(data.value, data.type)
    if data.type == DataType.BOOL:
        return data.value
    if data.type in (DataType.OCTET_STRING, DataType.TSA, DataType.MAC, DataType.RN):
        return data.value.hex().upper()
    if data.type == DataType.SCALER_UNIT:
        return {"scaler": data.value.scaler, "unit": UNITS.get(data.value.unit, str(data.value.unit))}
    if data.type == DataType.ENUM:
        return data.value
    return str(data.value)


def unscaled(value: Decimal | str | int, scaler: int) -> int:
    """The integer a meter stores for an engineering value: ("0.5366", -4) -> 5366; inexact -> error."""
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ProtocolError(f"{value!r} is not a decimal number") from None
    raw = number.scaleb(-scaler)
    if not raw.is_finite() or raw != raw.to_integral_value():
        raise ProtocolError(f"{value} has more digits than the resolution 1e{scaler} allows")
    return int(raw)


@dataclass(frozen=True)
class CarbonItems:
    """Where a meter model keeps its carbon objects, with explicit scaler and unit for each.

    Defaults: forward carbon 2080/2, reverse carbon 2090/2 (double-long-unsigned, 0.01 kgCO2) and the
    factor download 4120/2 = structure{date_time_s start, TI interval, array long-unsigned factor}
    with the factor in kgCO2/kWh x 10^-4 (0.5366 -> 5366).
    """

    forward: ObjectItem = CARBON_ITEMS[0]
    reverse: ObjectItem = CARBON_ITEMS[1]
    factor: ObjectItem = CARBON_ITEMS[2]

    def table(self, base: ObjectTable | None = None) -> ObjectTable:
        return (base or ObjectTable(STANDARD_ITEMS)).with_items([self.forward, self.reverse, self.factor])


DEFAULT_CARBON_ITEMS = CarbonItems()


_MASS_KG = {"gCO2": Decimal("0.001"), "kgCO2": Decimal(1), "tCO2": Decimal(1000)}
_ENERGY_KWH = {"Wh": Decimal("0.001"), "kWh": Decimal(1), "MWh": Decimal(1000)}


def carbon_unit_scale(register_unit: str, factor_unit: str, energy_unit: str = "kWh") -> Decimal:
    """What (energy in ``energy_unit``) x (factor in ``factor_unit``) is multiplied by to land in
    ``register_unit``: e.g. kWh x gCO2/kWh -> kgCO2 is x 0.001."""
    try:
        mass, per = factor_unit.split("/")
        factor_kg_per_kwh = _MASS_KG[mass] / _ENERGY_KWH[per]
        return factor_kg_per_kwh * _ENERGY_KWH[energy_unit] / _MASS_KG[register_unit]
    except (KeyError, ValueError):
        raise ProtocolError(
            f"cannot combine energy {energy_unit} x factor {factor_unit} into {register_unit}"
        ) from None

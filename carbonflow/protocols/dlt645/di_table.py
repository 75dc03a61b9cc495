"""The DL/T 645-2007 data items carbonflow knows, as rows of data, and an example vendor carbon map.

Rows are plain dicts in the shape :meth:`DiTable.from_rows` and :meth:`DiTable.from_json` read, so a
meter model's own DIs are added as data (JSON file or config) rather than code.  Series the standard
numbers by an index (tariffs, phases, settlement days, freeze numbers) are expanded by the small loops
below.  Formats are the standard's: ``XXXXXX.XX`` = 4 BCD bytes with two decimals, and so on.
"""

from __future__ import annotations

from typing import Any

from carbonflow.protocols.dlt645.items import DiTable

Row = dict[str, Any]

TARIFFS = 4  # tariff registers listed by name; blocks (…FF00) accept any number of members
SETTLEMENT_DAYS = 12
FREEZES = 7  # daily freeze records 1..7 listed (the standard numbers up to 62)
INSTANT_FREEZE, HOURLY_FREEZE, DAILY_FREEZE = "0501", "0504", "0506"  # DI3 DI2 of the freeze records
INSTANT_FREEZE_DEPTH = 3  # 瞬时冻结: records 1..3
HOURLY_FREEZE_DEPTH = 254  # 整点冻结: records 1..254 (DI0 01..FE)
HOURLY_FREEZE_START, HOURLY_FREEZE_INTERVAL = "04001201", "04001202"  # 整点冻结起始时间 / 时间间隔 (min)
# the column (DI1) of a freeze record: 00 freeze time, 01 forward active energy, 02 reverse active energy
FREEZE_TIME, FREEZE_FORWARD, FREEZE_REVERSE = "00", "01", "02"
FROZEN_COLUMN_OF = {"00010000": FREEZE_FORWARD, "00020000": FREEZE_REVERSE}  # live DI -> frozen column
PHASES = {1: "A", 2: "B", 3: "C"}


def _energy(di3_di2: str, what: str, unit: str, signed: bool) -> list[Row]:
    """Total, tariffs 1..N and the block (total + tariffs) of one energy register."""
    rows: list[Row] = [
        {
            "di": f"{di3_di2}0000",
            "name": f"{what} total",
            "format": "XXXXXX.XX",
            "unit": unit,
            "signed": signed,
        }
    ]
    for tariff in range(1, TARIFFS + 1):
        rows.append(
            {
                "di": f"{di3_di2}{tariff:02X}00",
                "name": f"{what} tariff {tariff}",
                "format": "XXXXXX.XX",
                "unit": unit,
                "signed": signed,
            }
        )
    rows.append(
        {
            "di": f"{di3_di2}FF00",
            "name": f"{what} block (total, tariffs)",
            "format": "XXXXXX.XX",
            "unit": unit,
            "signed": signed,
            "block": None,
        }
    )
    for day in range(1, SETTLEMENT_DAYS + 1):
        rows.append(
            {
                "di": f"{di3_di2}00{day:02X}",
                "name": f"{what} total, settlement day -{day}",
                "format": "XXXXXX.XX",
                "unit": unit,
                "signed": signed,
            }
        )
    return rows


def _phased(di3_di2: str, what: str, fmt: str, unit: str, signed: bool, with_total: bool) -> list[Row]:
    """Per-phase instantaneous values (DI1 = phase, 00 = total where the quantity has one) and the block."""
    rows: list[Row] = []
    if with_total:
        rows.append(
            {"di": f"{di3_di2}0000", "name": f"total {what}", "format": fmt, "unit": unit, "signed": signed}
        )
    for number, phase in PHASES.items():
        rows.append(
            {
                "di": f"{di3_di2}{number:02X}00",
                "name": f"phase {phase} {what}",
                "format": fmt,
                "unit": unit,
                "signed": signed,
            }
        )
    rows.append(
        {
            "di": f"{di3_di2}FF00",
            "name": f"{what} block ({'total, ' if with_total else ''}phases A, B, C)",
            "format": fmt,
            "unit": unit,
            "signed": signed,
            "block": 4 if with_total else 3,
        }
    )
    return rows


def frozen_di(series: str, column: str, number: int) -> str:
    """The DI of column ``column`` (:data:`FREEZE_TIME`, ...) of the ``number``-th last record of a freeze
    ``series`` (:data:`HOURLY_FREEZE`, ...): ``frozen_di("0504", "01", 1)`` -> ``"05040101"``."""
    if not 1 <= number <= 0xFE:
        raise ValueError(f"freeze record number {number} is outside 1..254")
    return f"{series}{column}{number:02X}"


def _freeze_series(series: str, what: str, depth: int, energy_block: bool) -> list[Row]:
    """Time, forward and reverse energy of records 1..depth of one freeze series."""
    energy: Row = {"format": "XXXXXX.XX", "unit": "kWh"}
    if energy_block:
        energy["block"] = None
    detail = " (total, tariffs)" if energy_block else " total"
    rows: list[Row] = []
    for number in range(1, depth + 1):
        rows.append(
            {
                "di": frozen_di(series, FREEZE_TIME, number),
                "name": f"{what} -{number} time",
                "format": "YYMMDDhhmm",
            }
        )
        for column, direction in ((FREEZE_FORWARD, "forward"), (FREEZE_REVERSE, "reverse")):
            name = f"{what} -{number} {direction} active energy{detail}"
            rows.append({"di": frozen_di(series, column, number), "name": name, **energy})
    return rows


def _freezes() -> list[Row]:
    rows: list[Row] = [
        *_freeze_series(INSTANT_FREEZE, "instant freeze", INSTANT_FREEZE_DEPTH, energy_block=True),
        *_freeze_series(HOURLY_FREEZE, "hourly freeze", HOURLY_FREEZE_DEPTH, energy_block=False),
        {
            "di": HOURLY_FREEZE_START,
            "name": "hourly freeze start time",
            "format": "YYMMDDhhmm",
            "access": "rw",
        },
        {
            "di": HOURLY_FREEZE_INTERVAL,
            "name": "hourly freeze interval (00 = off)",
            "format": "XX",
            "unit": "min",
            "access": "rw",
        },
        *_freeze_series(DAILY_FREEZE, "daily freeze", FREEZES, energy_block=True),
    ]
    return rows


STANDARD_ROWS: list[Row] = [
    # energy registers (class 00); combined registers carry a sign in DL/T 645-2007
    *_energy("0000", "combined active energy", "kWh", signed=True),
    *_energy("0001", "forward active energy", "kWh", signed=False),
    *_energy("0002", "reverse active energy", "kWh", signed=False),
    *_energy("0003", "combined reactive 1 energy", "kvarh", signed=True),
    *_energy("0004", "combined reactive 2 energy", "kvarh", signed=True),
    {"di": "00900200", "name": "remaining money", "format": "XXXXXX.XX", "unit": "CNY"},
    # max demand (class 01): demand and the minute it occurred
    {"di": "01010000", "name": "forward active max demand", "format": "XX.XXXX YYMMDDhhmm", "unit": "kW"},
    {"di": "01020000", "name": "reverse active max demand", "format": "XX.XXXX YYMMDDhhmm", "unit": "kW"},
    # instantaneous values (class 02); currents, powers and power factor are signed (export < 0)
    *_phased("0201", "voltage", "XXX.X", "V", signed=False, with_total=False),
    *_phased("0202", "current", "XXX.XXX", "A", signed=True, with_total=False),
    *_phased("0203", "active power", "XX.XXXX", "kW", signed=True, with_total=True),
    *_phased("0204", "reactive power", "XX.XXXX", "kvar", signed=True, with_total=True),
    *_phased("0205", "apparent power", "XX.XXXX", "kVA", signed=True, with_total=True),
    *_phased("0206", "power factor", "X.XXX", "", signed=True, with_total=True),
    {"di": "02800001", "name": "neutral current", "format": "XXX.XXX", "unit": "A", "signed": True},
    {"di": "02800002", "name": "grid frequency", "format": "XX.XX", "unit": "Hz"},
    # parameters (class 04)
    {"di": "04000101", "name": "date and weekday", "format": "YYMMDDWW", "access": "rw"},
    {"di": "04000102", "name": "time", "format": "hhmmss", "access": "rw"},
    {"di": "04000401", "name": "communication address", "format": "NNNNNNNNNNNN", "access": "rw"},
    {"di": "04000402", "name": "meter number", "format": "NNNNNNNNNNNN", "access": "rw"},
    {"di": "04000409", "name": "active pulse constant", "format": "XXXXXX", "unit": "imp/kWh"},
    {"di": "0400040A", "name": "reactive pulse constant", "format": "XXXXXX", "unit": "imp/kvarh"},
    *({"di": f"040005{n:02X}", "name": f"meter run status word {n}", "format": "HHHH"} for n in range(1, 8)),
    # freeze records (class 05)
    *_freezes(),
]

# Vendor example: DL/T 645-2007 defines no carbon quantities, so an electric-carbon meter speaking 645 uses
# its manufacturer's DIs.  These rows (DI3 = F0, outside the standard's classes) are an EXAMPLE map used by
# the simulated meter and the tests; replace them with the real model's map (same row shape) in config.
CARBON_EXAMPLE_ROWS: list[Row] = [
    {
        "di": "F0010000",
        "name": "forward carbon emission total",
        "format": "XXXXXX.XX",
        "unit": "kgCO2",
        "vendor": True,
    },
    {
        "di": "F0020000",
        "name": "reverse carbon emission total",
        "format": "XXXXXX.XX",
        "unit": "kgCO2",
        "vendor": True,
    },
    {
        "di": "F0030000",
        "name": "carbon factor in use",
        "format": "XX.XXXX",
        "unit": "kgCO2/kWh",
        "access": "rw",
        "vendor": True,
    },
    {
        "di": "F0030001",
        "name": "carbon factor valid from",
        "format": "YYMMDDhhmm",
        "access": "rw",
        "vendor": True,
    },
    {
        "di": "F0040000",
        "name": "carbon emission rate",
        "format": "XX.XXXX",
        "unit": "kgCO2/h",
        "signed": True,
        "vendor": True,
    },
]

STANDARD_TABLE = DiTable.from_rows(STANDARD_ROWS)
DEFAULT_TABLE = STANDARD_TABLE.extended(CARBON_EXAMPLE_ROWS)

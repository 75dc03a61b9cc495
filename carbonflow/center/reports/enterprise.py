"""Electricity carbon per user for enterprise carbon accounting (GHG Protocol Scope 2), per local
calendar period: the electricity consumed, its location-based emissions (Σ interval energy × the nodal
intensity of the user's bus), the origin of that electricity by fuel (proportional sharing, reference
§6), and market-based emissions where contractual instruments are configured (``contracts.py``).

Energy and location-based carbon are the sums every view of the API uses (``element_sums``), so a
row equals the consumption view of the same range to the last digit.  Origin energy by fuel sums the
origin shares stored with each interval; it adds up to the consumed energy.  Market-based, per the
Scope 2 Guidance: energy covered by instruments (at most the energy consumed; lowest factor first)
at each instrument's factor, the rest at the residual mix — or, where none is configured, at the
user's location-based intensity, the Guidance's fallback, and the row names which one it used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.center.reports.build import ReportInputError, element_sums, period_bounds
from carbonflow.center.reports.contracts import NO_CONTRACTS, Contracts
from carbonflow.center.reports.tabular import PeriodTable
from carbonflow.center.store import (
    Store,
    data_version,
    generator_plants,
    load_directory,
    load_origins,
)

MONTHLY_PERIODS = ("month", "year")
DAY_NOTE = "instruments are dated by month: market-based emissions need a month or a year"


@dataclass
class EnterpriseExport(PeriodTable):
    users: list[dict[str, Any]] = field(default_factory=list)
    fuels: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return self.period_metadata("carbonflow enterprise electricity carbon export")


def in_region(path: str | None, prefix: str) -> bool:
    """Whether the region ``path`` lies inside ``prefix`` ("" covers every region)."""
    return not prefix or (path is not None and (path == prefix or path.startswith(prefix + "/")))


def _months(period: str, start: str) -> set[str]:
    if period == "month":
        return {start}
    if period == "year":
        return {f"{start}-{m:02d}" for m in range(1, 13)}
    return set()


def _fuel_of(source: str, plants: dict[str, dict[str, str | None]]) -> str:
    if source in plants:
        return plants[source].get("fuel") or "other"
    kind, _, _ = source.partition(":")
    return kind if kind in ("storage", "load") else "other"


def origin_by_fuel(
    store: Store, first: datetime, last: datetime, user_ids: set[str]
) -> dict[str, dict[str, list[float]]]:
    """``{user: {fuel: [energy kWh, carbon kg]}}`` over ``(first, last]`` from the stored origin shares."""
    plants = generator_plants(store)
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for _ts, interval_s, loads in load_origins(store, first, last):
        hours = interval_s / 3600.0
        for load in loads:
            if load.get("id") not in user_ids:
                continue
            fuels = sums[load["id"]]
            for source, mw in (load.get("power_mw") or {}).items():
                fuels[_fuel_of(source, plants)][0] += mw * hours * 1000.0
            for source, t_per_h in (load.get("carbon_t_per_h") or {}).items():
                fuels[_fuel_of(source, plants)][1] += t_per_h * hours * 1000.0
    return sums


def market_based(
    energy_kwh: float, location_kg: float, instruments: list, residual_mix_g_per_kwh
) -> dict[str, Any]:
    """Scope 2 market-based carbon of one user's period from its instruments and the residual mix."""
    remaining = max(energy_kwh, 0.0)
    covered = 0.0
    instrument_kg = 0.0
    for item in sorted(instruments, key=lambda i: (i.intensity_g_per_kwh, i.id)):
        claim = min(float(item.energy_kwh), remaining)
        covered += claim
        instrument_kg += claim * float(item.intensity_g_per_kwh) / 1000.0
        remaining -= claim
    held = sum(float(i.energy_kwh) for i in instruments)
    if residual_mix_g_per_kwh is not None:
        residual_g, basis = float(residual_mix_g_per_kwh), "residual_mix"
    else:
        residual_g = location_kg * 1000.0 / energy_kwh if energy_kwh else 0.0
        basis = "location_based_fallback"
    carbon_kg = instrument_kg + remaining * residual_g / 1000.0
    return {
        "instrument_ids": [i.id for i in instruments],
        "instrument_energy_kwh": covered,
        "unclaimed_instrument_energy_kwh": held - covered,
        "residual_energy_kwh": remaining,
        "residual_factor_g_per_kwh": residual_g,
        "residual_basis": basis,
        "market_carbon_t": carbon_kg / 1000.0,
        "market_intensity_g_per_kwh": carbon_kg * 1000.0 / energy_kwh if energy_kwh else None,
    }


def enterprise_export(
    store: Store,
    period: str,
    start: str,
    *,
    time_zone: str = "Asia/Shanghai",
    users: list[str] | None = None,
    region: str = "",
    contracts: Contracts = NO_CONTRACTS,
) -> EnterpriseExport:
    """One row per user (all users inside ``region``, or the ``users`` named) for one calendar period."""
    zone = ZoneInfo(time_zone)
    first, last = period_bounds(period, start, zone)
    directory = {u["id"]: u for u in load_directory(store)}
    region = region.strip("/")
    inside = {uid for uid, u in directory.items() if in_region(u["region"], region)}
    if users:
        for uid in users:
            if uid not in inside:
                where = f" in {region}" if region else ""
                raise ReportInputError("user", f"no user (load) {uid!r}{where}")
        selected = sorted(set(users))
    else:
        selected = sorted(inside)
    version, intervals = data_version(store, first, last)
    offset = int(first.astimezone(zone).utcoffset().total_seconds() // 60)
    sums = element_sums(store, "load", first, last, offset, element_ids=selected) if selected else {}
    origin = origin_by_fuel(store, first, last, set(selected))
    months = _months(period, start)
    export = EnterpriseExport(period, start, first, last, time_zone, version, intervals)
    fuels: set[str] = set()
    for uid in selected:
        info = directory[uid]
        energy_kwh, carbon_kg = sums.get(uid, [0.0, 0.0])
        by_fuel = origin.get(uid, {})
        fuels.update(by_fuel)
        row: dict[str, Any] = {
            "user_id": uid,
            "user_name": info["user_name"],
            "region": info["region"],
            "industry": info["industry"],
            "energy_kwh": energy_kwh,
            "location_carbon_t": carbon_kg / 1000.0,
            "location_intensity_g_per_kwh": carbon_kg * 1000.0 / energy_kwh if energy_kwh else None,
            "origin_energy_kwh": {f: v[0] for f, v in sorted(by_fuel.items())},
            "origin_carbon_t": {f: v[1] / 1000.0 for f, v in sorted(by_fuel.items())},
        }
        if period in MONTHLY_PERIODS:
            row.update(
                market_based(
                    energy_kwh, carbon_kg, contracts.for_user(uid, months), contracts.residual_mix_g_per_kwh
                )
            )
            row["market_note"] = ""
        else:
            row.update(dict.fromkeys(("instrument_ids", "market_carbon_t", "market_intensity_g_per_kwh")))
            row["market_note"] = DAY_NOTE
        export.users.append(row)
    export.fuels = sorted(fuels)
    return export


ENTERPRISE_COLUMNS = [
    "user_id",
    "user_name",
    "region",
    "industry",
    "period",
    "start",
    "from_utc",
    "to_utc",
    "energy_kwh",
    "location_carbon_t",
    "location_intensity_g_per_kwh",
    "instrument_energy_kwh",
    "unclaimed_instrument_energy_kwh",
    "residual_energy_kwh",
    "residual_factor_g_per_kwh",
    "residual_basis",
    "market_carbon_t",
    "market_intensity_g_per_kwh",
    "instrument_ids",
    "market_note",
    "data_version",
]


def flat_rows(export: EnterpriseExport) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows for CSV / XLSX / Parquet: one row per user, origin as ``energy_kwh_<fuel>`` and
    ``carbon_t_<fuel>`` columns (every fuel of the export, 0 where a user has none)."""
    meta = export.metadata()
    columns = [
        *ENTERPRISE_COLUMNS[:11],
        *(f"energy_kwh_{f}" for f in export.fuels),
        *(f"carbon_t_{f}" for f in export.fuels),
        *ENTERPRISE_COLUMNS[11:],
    ]
    rows = []
    for user in export.users:
        row = {
            **user,
            "period": export.period,
            "start": export.start,
            "from_utc": meta["from_utc"],
            "to_utc": meta["to_utc"],
            "data_version": export.data_version,
            "instrument_ids": " ".join(user.get("instrument_ids") or []),
        }
        for fuel in export.fuels:
            row[f"energy_kwh_{fuel}"] = user["origin_energy_kwh"].get(fuel, 0.0)
            row[f"carbon_t_{fuel}"] = user["origin_carbon_t"].get(fuel, 0.0)
        rows.append({c: row.get(c) for c in columns})
    return columns, rows

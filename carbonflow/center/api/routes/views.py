"""The three sides and the overview: generation (per plant and unit), grid (branch carbon flows, loss
carbon by voltage level and region), consumption (users by region and industry), overview (now and today).

"Now" is the latest complete interval (its age and whether data is late are measured on the center's
clock, ``app.state.clock``: simulated in the demo); "today" the local calendar day
(``settings.time_zone``) holding it — so an accelerated demo clock and a replayed history read the same
way as live operation.  Amounts over a range (default: today so far) are energy-weighted sums from
``store.aggregate``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request

from carbonflow.center.api.deps import StoreDep, require_user
from carbonflow.center.api.routes._common import (
    bad_parameter,
    jsonable,
    local_day,
    offset_minutes,
    resolve_range,
    zone_of,
)
from carbonflow.center.api.routes.results import interval_at, quality_of, rows_at
from carbonflow.center.store import (
    Store,
    aggregate,
    aggregate_totals,
    alarm_counts,
    device_status_counts,
    first_interval_ts,
    interval_results,
    latest_interval_ts,
    topology_tables,
)

router = APIRouter(prefix="/api/v1", tags=["views"], dependencies=[Depends(require_user)])


def _range(store: Store, zone: ZoneInfo, start: str | None, end: str | None, header: dict) -> tuple:
    if start is None and end is None:
        first, _ = local_day(header["ts"], zone)
        return first, header["ts"] + timedelta(microseconds=1)
    return resolve_range(store, start, end)


def _sums(store: Store, kind: str, first: datetime, last: datetime, zone: ZoneInfo, **kw) -> dict[Any, list]:
    """Σ energy, Σ carbon per group over [first, last) (month buckets summed)."""
    sums: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    for row in aggregate(
        store, kind, "month", first, last, utc_offset_minutes=offset_minutes(zone, first), **kw
    ):
        sums[row.key][0] += row.energy_kwh
        sums[row.key][1] += row.carbon_kg
    return sums


def _amounts(energy_kwh: float, carbon_kg: float) -> dict[str, float | None]:
    return {
        "energy_kwh": energy_kwh,
        "carbon_t": carbon_kg / 1000.0,
        "intensity_g_per_kwh": carbon_kg * 1000.0 / energy_kwh if energy_kwh else None,
    }


LATE_AFTER_INTERVALS = 2  # the next interval is metered half an interval after its end: 1.5 + a margin


def freshness(ts: datetime, interval_s: int, now: datetime) -> dict[str, Any]:
    """How old the latest complete interval (ending ``ts``) is at ``now`` (the field's time: the wall clock,
    or the demo's simulated clock), and whether data is late: no newer complete interval although the
    next one should have been metered by ``ts + LATE_AFTER_INTERVALS × interval_s``."""
    expected_by = ts + timedelta(seconds=LATE_AFTER_INTERVALS * interval_s)
    return {
        "now_ts": now,  # ("now" holds the latest interval's rates)
        "age_s": (now - ts).total_seconds(),
        "late": now > expected_by,
        "late_after_s": LATE_AFTER_INTERVALS * interval_s,
        "next_expected_by": expected_by,
    }


def overview(store: Store, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    header = interval_at(store, None)
    ts, hours = header["ts"], header["interval_s"] / 3600.0
    totals = header["totals"] or {}
    generation_mw = header["generation_energy_kwh"] / 1000.0 / hours
    load_mw = header["load_energy_kwh"] / 1000.0 / hours
    day_start, _ = local_day(ts, zone)
    today = aggregate_totals(
        store,
        "day",
        day_start,
        ts + timedelta(microseconds=1),
        utc_offset_minutes=offset_minutes(zone, day_start),
    )
    day = {
        k: sum((row[k] or 0.0) for row in today)
        for k in (
            "generation_energy_kwh",
            "load_energy_kwh",
            "generation_carbon_kg",
            "load_carbon_kg",
            "loss_carbon_kg",
        )
    }
    intervals_today = sum(row["intervals"] for row in today)
    # expected since the system began metering (the start of its first interval), if that was today:
    # a center started an hour ago is not 'incomplete' for the hours before it existed
    first = first_interval_ts(store)
    began = first - timedelta(seconds=header["interval_s"]) if first is not None else day_start
    expected_since = max(day_start, began)
    expected = max(1, round((ts - expected_since).total_seconds() / header["interval_s"]))
    device_counts = device_status_counts(store)
    devices_total = sum(device_counts.values())
    quality = quality_of(header)
    latest = latest_interval_ts(store)
    return {
        "ts": ts,
        "interval_s": header["interval_s"],
        # now_ts, age_s, late: no complete interval within the expected time (or none complete at all)
        **(fresh := freshness(ts, header["interval_s"], now)),
        "late": fresh["late"] or not quality["complete"],
        "time_zone": str(zone),
        "latest_metered_ts": latest,  # newer than ts when the latest intervals still wait for data
        "interval": {
            "complete": quality["complete"],
            "completeness": quality["completeness"],
            "version": quality["version"],
            "estimated_inputs": len(quality["estimates"]),
            "derived_inputs": quality["derived"],
            "newer_incomplete": max(0, round((latest - ts).total_seconds() / header["interval_s"]))
            if latest
            else 0,
        },
        "now_band": quality["totals_band"],  # expanded uncertainty (k = coverage_factor) of the totals
        "coverage_factor": quality["coverage_factor"],
        "now": {
            "generation_carbon_t_per_h": totals.get("generation_carbon_t_per_h"),
            "load_carbon_t_per_h": totals.get("load_carbon_t_per_h"),
            "loss_carbon_t_per_h": totals.get("loss_carbon_t_per_h"),
            "residual_t_per_h": totals.get("residual_t_per_h"),
            "generation_mw": generation_mw,
            "load_mw": load_mw,
            "generation_intensity_g_per_kwh": (
                totals.get("generation_carbon_t_per_h", 0.0) * 1000.0 / generation_mw
                if generation_mw
                else None
            ),
            "load_intensity_g_per_kwh": (
                totals.get("load_carbon_t_per_h", 0.0) * 1000.0 / load_mw if load_mw else None
            ),
        },
        "today": {
            "start": day_start,
            "generation_carbon_t": day["generation_carbon_kg"] / 1000.0,
            "load_carbon_t": day["load_carbon_kg"] / 1000.0,
            "loss_carbon_t": day["loss_carbon_kg"] / 1000.0,
            "generation_energy_kwh": day["generation_energy_kwh"],
            "load_energy_kwh": day["load_energy_kwh"],
            "generation_intensity_g_per_kwh": (
                day["generation_carbon_kg"] * 1000.0 / day["generation_energy_kwh"]
                if day["generation_energy_kwh"]
                else None
            ),
            "intervals": intervals_today,
        },
        "completeness": {
            "intervals_today": intervals_today,
            "intervals_expected": expected,
            "expected_since": expected_since,  # the day's start, or when the system began metering
            "intervals_ratio": min(1.0, intervals_today / expected),
            "devices_online": device_counts.get("online", 0),
            "devices_total": devices_total,
            "devices_ratio": device_counts.get("online", 0) / devices_total if devices_total else None,
            "estimated_inputs": len(quality["estimates"]),
        },
        "alarms_active": (alarms := alarm_counts(store))["active"],
        "alarms": alarms,  # active: total, unacknowledged, per severity
    }


@router.get("/overview")
def get_overview(request: Request, store: StoreDep) -> dict:
    """The latest complete interval with its age at the center's ``now`` (``app.state.clock``: the wall
    clock, the simulated clock in the demo) and ``late``; today's amounts; completeness; alarms."""
    return jsonable(overview(store, zone_of(request), request.app.state.clock()))


def generation(store: Store, zone: ZoneInfo, ts, start, end) -> dict[str, Any]:
    header = interval_at(store, ts)
    first, last = _range(store, zone, start, end, header)
    topo = topology_tables(store)
    now = {r["element_id"]: r for r in rows_at(store, "generator", header["ts"])}
    sums = _sums(store, "generator", first, last, zone)
    units, plants = [], {}
    for gen in topo["generators"]:
        row = now.get(gen["id"], {})
        energy, carbon = sums.get(gen["id"], [0.0, 0.0])
        unit = {
            "id": gen["id"],
            "plant": gen["plant"],
            "bus": gen["bus_id"],
            "fuel": gen["fuel"],
            "region": gen["region"],
            "nominal_intensity_g_per_kwh": gen["intensity_g_per_kwh"],
            "p_mw": row.get("p_mw"),
            "carbon_t_per_h": row.get("carbon_t_per_h"),
            "intensity_g_per_kwh": row.get("intensity_g_per_kwh"),
            **{f"range_{k}": v for k, v in _amounts(energy, carbon).items()},
        }
        units.append(unit)
        plant = plants.setdefault(
            gen["plant"] or gen["id"],
            {
                "plant": gen["plant"] or gen["id"],
                "fuel": gen["fuel"],
                "region": gen["region"],
                "units": 0,
                "p_mw": 0.0,
                "carbon_t_per_h": 0.0,
                "energy": 0.0,
                "carbon": 0.0,
            },
        )
        plant["units"] += 1
        plant["p_mw"] += row.get("p_mw") or 0.0
        plant["carbon_t_per_h"] += row.get("carbon_t_per_h") or 0.0
        plant["energy"] += energy
        plant["carbon"] += carbon
    plant_rows = []
    for plant in plants.values():
        energy, carbon = plant.pop("energy"), plant.pop("carbon")
        plant["intensity_g_per_kwh"] = (
            plant["carbon_t_per_h"] * 1000.0 / plant["p_mw"] if plant["p_mw"] else None
        )
        plant_rows.append({**plant, **{f"range_{k}": v for k, v in _amounts(energy, carbon).items()}})
    return {"ts": header["ts"], "start": first, "end": last, "units": units, "plants": plant_rows}


@router.get("/generation")
def get_generation(
    request: Request, store: StoreDep, ts: str | None = None, start: str | None = None, end: str | None = None
) -> dict:
    """Per unit and per plant: rate now (MW, t/h, g/kWh) and over the range (on-grid energy, carbon)."""
    return jsonable(generation(store, zone_of(request), ts, start, end))


def grid(store: Store, zone: ZoneInfo, ts, start, end) -> dict[str, Any]:
    header = interval_at(store, ts)
    first, last = _range(store, zone, start, end, header)
    if last - first > timedelta(days=31):
        raise bad_parameter("start", "the grid view's loss breakdown spans at most 31 days")
    topo = topology_tables(store)
    info = {b["id"]: b for b in topo["branches"]}
    branches = []
    for row in rows_at(store, "branch", header["ts"]):
        meta = info.get(row["element_id"], {})
        branches.append(
            {
                "id": row["element_id"],
                "kind": meta.get("kind"),
                "from_bus": meta.get("from_bus"),
                "to_bus": meta.get("to_bus"),
                "voltage_kv": meta.get("voltage_kv"),
                "region": row["region"],
                "sending_bus": row["sending_bus"],
                "p_send_mw": row["p_send_mw"],
                "p_recv_mw": row["p_recv_mw"],
                "loss_mw": row["p_send_mw"] - row["p_recv_mw"],
                "density_g_per_kwh": row["intensity_g_per_kwh"],
                "carbon_send_t_per_h": row["carbon_send_t_per_h"],
                "carbon_recv_t_per_h": row["carbon_recv_t_per_h"],
                "loss_carbon_t_per_h": row["loss_carbon_t_per_h"],
            }
        )
    by_voltage: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    by_region: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    for row in interval_results(store, "branch", first, last):
        loss_kwh = (row["p_send_mw"] - row["p_recv_mw"]) * row["interval_s"] / 3.6
        voltage = info.get(row["element_id"], {}).get("voltage_kv")
        for table, key in ((by_voltage, voltage), (by_region, row["region"])):
            table[key][0] += loss_kwh
            table[key][1] += row["loss_carbon_kg"]

    def listed(table, name):
        return [
            {name: key, "loss_energy_kwh": e, "loss_carbon_t": c / 1000.0}
            for key, (e, c) in sorted(table.items(), key=lambda item: -item[1][1])
        ]

    return {
        "ts": header["ts"],
        "start": first,
        "end": last,
        "branches": branches,
        "loss_by_voltage": listed(by_voltage, "voltage_kv"),
        "loss_by_region": listed(by_region, "region"),
        "loss_carbon_t_per_h": sum(b["loss_carbon_t_per_h"] for b in branches),
    }


@router.get("/grid")
def get_grid(
    request: Request, store: StoreDep, ts: str | None = None, start: str | None = None, end: str | None = None
) -> dict:
    """Branch carbon flows now; loss energy and loss carbon by voltage level (of the from bus) and region
    over the range."""
    return jsonable(grid(store, zone_of(request), ts, start, end))


def consumption(store: Store, zone: ZoneInfo, ts, start, end, region_depth: int) -> dict[str, Any]:
    header = interval_at(store, ts)
    first, last = _range(store, zone, start, end, header)
    topo = topology_tables(store)
    now = {r["element_id"]: r for r in rows_at(store, "load", header["ts"])}
    sums = _sums(store, "load", first, last, zone)
    users = []
    for load in topo["loads"]:
        row = now.get(load["id"], {})
        users.append(
            {
                "id": load["id"],
                "name": load["user_name"],
                "bus": load["bus_id"],
                "region": load["region"],
                "industry": load["industry"],
                "p_mw": row.get("p_mw"),
                "carbon_t_per_h": row.get("carbon_t_per_h"),
                "intensity_g_per_kwh": row.get("intensity_g_per_kwh"),
                **{f"range_{k}": v for k, v in _amounts(*sums.get(load["id"], [0.0, 0.0])).items()},
            }
        )
    groups = {}
    for name, kw in (
        ("by_region", {"group_by": "region", "region_depth": region_depth}),
        ("by_industry", {"group_by": "industry"}),
    ):
        groups[name] = [
            {"key": key, **_amounts(e, c)}
            for key, (e, c) in sorted(
                _sums(store, "load", first, last, zone, **kw).items(), key=lambda item: str(item[0])
            )
        ]
    return {"ts": header["ts"], "start": first, "end": last, "users": users, **groups}


@router.get("/consumption")
def get_consumption(
    request: Request,
    store: StoreDep,
    ts: str | None = None,
    start: str | None = None,
    end: str | None = None,
    region_depth: int = Query(2, ge=1, le=3),
) -> dict:
    """Users (loads) now and over the range: energy, carbon, energy-weighted intensity; totals by region
    (``region_depth``: 1 province, 2 city, 3 county) and by industry.  Origin per user: ``/origin``."""
    return jsonable(consumption(store, zone_of(request), ts, start, end, region_depth))

"""Interval results: the list of intervals, one interval's full result (latest or by ``ts``), the rows of
one element kind, per-interval series of any stored quantity, and the origin of electricity."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from carbonflow.center.api.deps import StoreDep, require_user
from carbonflow.center.api.routes._common import (
    Format,
    Limit,
    Offset,
    bad_parameter,
    jsonable,
    listing,
    parse_time,
    resolve_range,
    split_ids,
)
from carbonflow.center.store import (
    Store,
    archived_rows,
    generator_plants,
    header_as_of,
    interval_header,
    interval_headers,
    interval_origin,
    interval_results,
    is_complete,
    latest_complete_interval_ts,
    latest_interval_ts,
    result_quantities,
)

router = APIRouter(prefix="/api/v1", tags=["results"], dependencies=[Depends(require_user)])
Kind = Literal["bus", "branch", "generator", "load"]
PLURAL = {"bus": "buses", "branch": "branches", "generator": "generators", "load": "loads"}
_KEY_COLUMNS = ("level", "interval_s")
Version = Annotated[
    int | None, Query(ge=0, description="a version of the results (0: as metered; default: the current)")
]


def interval_at(store: Store, ts: str | None, version: int | None = None) -> dict[str, Any]:
    """The header of the interval ending at ``ts`` (default: the latest metered from complete data, else
    the latest) — as of ``version`` when one is asked for; 404 when there is none."""
    when = parse_time(ts, "ts") if ts else latest_complete_interval_ts(store) or latest_interval_ts(store)
    if when is None:
        raise HTTPException(404, "no interval results stored yet")
    header = interval_header(store, when)
    if header is None:
        raise HTTPException(404, f"no interval ends at {when.isoformat()}")
    header["result_version"] = (header.get("estimation") or {}).get("result_version", 0)
    if version is not None and version != header["result_version"]:
        older = header_as_of(store, when, version, header["level"])
        if older is None:
            raise HTTPException(
                404, f"the interval ending at {when.isoformat()} has no result in version {version}"
            )
        header = older
    return header


def rows_at(store: Store, kind: str, ts: datetime, header: dict[str, Any] | None = None, **filters: Any):
    """The element rows of one interval: the current result's, or those of an older version's ``header``
    (its key columns, bus, intensity, energy and carbon)."""
    if header is not None and not header.get("current", True):
        rows = archived_rows(store, kind, header)
        wanted = filters.get("element_ids")
        return [row for row in rows if wanted is None or row["element_id"] in wanted]
    rows = interval_results(store, kind, ts - timedelta(microseconds=1), ts, **filters)
    for row in rows:
        del row["ts"]
        for key in _KEY_COLUMNS:
            row.pop(key, None)
    return rows


def result_at(store: Store, ts: str | None, version: int | None = None) -> dict[str, Any]:
    header = interval_at(store, ts, version)
    document = {**header, **quality_of(header)}
    for kind, plural in PLURAL.items():
        document[plural] = rows_at(store, kind, header["ts"], header)
    with_bands(document["buses"], header)
    return document


def quality_of(header: dict[str, Any]) -> dict[str, Any]:
    """How far an interval's figures can be trusted: complete or not, what was estimated, the bands."""
    estimation = header.get("estimation") or {}
    uncertainty = estimation.get("uncertainty") or {}
    return {
        "complete": is_complete(estimation),
        "completeness": estimation.get("completeness"),
        "version": estimation.get("version", 1),
        "result_version": estimation.get("result_version", 0),
        "estimates": estimation.get("estimates", []),
        "derived": len(estimation.get("derived", [])),
        "totals_band": uncertainty.get("totals", {}),
        "coverage_factor": uncertainty.get("coverage_factor"),
    }


def with_bands(bus_rows: list[dict[str, Any]], header: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bus row gets its intensity's expanded uncertainty (``intensity_band_g_per_kwh``)."""
    bands = ((header.get("estimation") or {}).get("uncertainty") or {}).get("intensity_g_per_kwh", {})
    for row in bus_rows:
        row["intensity_band_g_per_kwh"] = bands.get(row["element_id"])
    return bus_rows


@router.get("/intervals")
def intervals(
    store: StoreDep,
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Interval headers (ts = interval end, totals, energies, carbon) with ``start ≤ start-of-interval``
    and end ``≤ end``; default: the 24 h up to the latest interval."""
    first, last = resolve_range(store, start, end)
    rows = interval_headers(store, first, last)
    return listing(rows, limit=limit, offset=offset, format=format, name="intervals")


@router.get("/results")
def results(store: StoreDep, ts: str | None = None, version: Version = None) -> dict:
    """One interval (default: the latest): bus intensities, branch carbon flows, generator and load
    carbon, totals — of the current version of the results, or of ``version``."""
    return jsonable(result_at(store, ts, version))


@router.get("/results/{kind}")
def results_of_kind(
    kind: Kind,
    store: StoreDep,
    ts: str | None = None,
    element: str | None = Query(None, description="comma-separated element ids"),
    region: str | None = None,
    industry: str | None = None,
    voltage_kv: float | None = None,
    version: Version = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    header = interval_at(store, ts, version)
    when = header["ts"]
    if not header.get("current", True) and (region or industry or voltage_kv is not None):
        raise bad_parameter("version", "an older version's rows are filtered by element only")
    rows = rows_at(
        store,
        kind,
        when,
        header,
        element_ids=split_ids(element),
        region=region,
        industry=industry,
        voltage_kv=voltage_kv,
    )
    if kind == "bus":
        with_bands(rows, header)
    return listing(
        rows, limit=limit, offset=offset, format=format, name=f"{kind}-results",
        extra={"ts": when, "result_version": header["result_version"]},
    )  # fmt: skip


@router.get("/series")
def series(
    store: StoreDep,
    kind: Kind,
    element: str = Query(..., min_length=1, description="comma-separated element ids"),
    quantity: str = Query("intensity_g_per_kwh", description="any stored column, e.g. flux_mw, p_send_mw"),
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Per-interval values of one stored quantity of some elements (no aggregation)."""
    columns = result_quantities(kind)
    if quantity not in columns:
        raise bad_parameter("quantity", f"{kind} results have {', '.join(sorted(columns))}")
    first, last = resolve_range(store, start, end, max_range=timedelta(days=31))
    rows = [
        {"ts": r["ts"], "element_id": r["element_id"], "interval_s": r["interval_s"], quantity: r[quantity]}
        for r in interval_results(store, kind, first, last, element_ids=split_ids(element))
    ]
    return listing(rows, limit=limit, offset=offset, format=format, name=f"{kind}-{quantity}")


def origin_at(store: Store, ts: str | None, load: str | None, bus: str | None) -> dict[str, Any]:
    header = interval_at(store, ts)
    origin = interval_origin(store, header["ts"], header["level"])
    generators = generator_plants(store)
    if not origin:
        raise HTTPException(
            404, f"no origin shares stored for the interval ending {header['ts'].isoformat()}"
        )
    sources = []
    for source in origin.get("sources", []):
        info = generators.get(
            source["id"], {"plant": None, "fuel": "storage" if ":" in source["id"] else None}
        )
        sources.append({**source, **info})
    loads = origin.get("loads", [])
    buses = origin.get("buses", [])
    if load is not None:
        loads = [item for item in loads if item["id"] == load]
        buses = []
        if not loads:
            raise HTTPException(404, f"unknown load {load!r}")
    if bus is not None:
        buses = [item for item in buses if item["id"] == bus]
        loads = [item for item in loads if item.get("bus") == bus] if load is None else loads
        if not buses:
            raise HTTPException(404, f"unknown bus {bus!r}")
    by_fuel: dict[str, dict[str, float]] = {}
    fuel_of = {s["id"]: s.get("fuel") or "other" for s in sources}
    for item in loads:
        shares: dict[str, float] = {}
        for source, mw in (item.get("power_mw") or {}).items():
            shares[fuel_of.get(source, "other")] = shares.get(fuel_of.get(source, "other"), 0.0) + mw
        by_fuel[item["id"]] = shares
    return {
        "ts": header["ts"],
        "sources": sources,
        "buses": buses,
        "loads": [{**item, "power_mw_by_fuel": by_fuel.get(item["id"], {})} for item in loads],
    }


@router.get("/origin")
def origin(store: StoreDep, ts: str | None = None, load: str | None = None, bus: str | None = None) -> dict:
    """Origin of electricity: each bus's power share per source and each user's power / carbon per source
    (and per fuel), for one interval (default: the latest)."""
    return jsonable(origin_at(store, ts, load, bus))

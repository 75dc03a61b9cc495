"""History: any element kind or total over 1 minute … 1 year in 15min / hour / day / month buckets,
ENERGY-WEIGHTED (intensity of a bucket = Σ carbon / Σ energy, ``store.aggregate``), local-time buckets."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from carbonflow.center.api.deps import StoreDep, require_user
from carbonflow.center.api.routes._common import (
    Format,
    Limit,
    Offset,
    bad_parameter,
    listing,
    offset_minutes,
    resolve_range,
    split_ids,
    zone_of,
)
from carbonflow.center.store import Aggregate, aggregate, aggregate_totals, incomplete_by_bucket

router = APIRouter(prefix="/api/v1", tags=["history"], dependencies=[Depends(require_user)])
BUCKET_SECONDS = {"15min": 900, "hour": 3600, "day": 86400, "month": 31 * 86400}
MAX_BUCKETS = 40_000  # a year of 15-minute buckets is 35,040


def _group_row(group: Aggregate) -> dict[str, Any]:
    return {
        "bucket": group.bucket,
        "key": group.key,
        "energy_kwh": group.energy_kwh,
        "carbon_kg": group.carbon_kg,
        "intensity_g_per_kwh": group.intensity_g_per_kwh,
        "intervals": group.intervals,
    }


@router.get("/history")
def history(
    request: Request,
    store: StoreDep,
    kind: Literal["bus", "branch", "generator", "load", "total"] = "total",
    bucket: Literal["15min", "hour", "day", "month"] = "hour",
    group_by: Literal["element", "region", "industry", "voltage", "total"] = "element",
    element: str | None = Query(None, description="comma-separated element ids"),
    region: str | None = None,
    region_depth: int | None = Query(None, ge=1, le=3),
    industry: str | None = None,
    voltage_kv: float | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """``kind=total``: whole-grid generation / load / loss carbon and energy per bucket.  Otherwise one row
    per bucket and group (element, region, industry or voltage level) with ``energy_kwh``, ``carbon_kg``
    and the energy-weighted ``intensity_g_per_kwh``.  Every row says how many of its bucket's intervals
    were metered from incomplete data (``incomplete_intervals``)."""
    zone = zone_of(request)
    first, last = resolve_range(store, start, end)
    if (last - first).total_seconds() / BUCKET_SECONDS[bucket] > MAX_BUCKETS:
        raise bad_parameter("bucket", f"{bucket} buckets over this range are more than {MAX_BUCKETS}")
    offset_min = offset_minutes(zone, first)
    if kind == "total":
        rows = aggregate_totals(store, bucket, first, last, utc_offset_minutes=offset_min)
        for row in rows:
            row["load_intensity_g_per_kwh"] = (
                row["load_carbon_kg"] * 1000.0 / row["load_energy_kwh"] if row["load_energy_kwh"] else None
            )
    else:
        groups = aggregate(
            store,
            kind,
            bucket,
            first,
            last,
            group_by=group_by,
            region_depth=region_depth,
            element_ids=split_ids(element),
            region=region,
            industry=industry,
            voltage_kv=voltage_kv,
            utc_offset_minutes=offset_min,
        )
        rows = [_group_row(g) for g in groups]
    # intervals metered from incomplete data (an input estimated): charts draw those buckets differently
    incomplete = incomplete_by_bucket(store, bucket, first, last, utc_offset_minutes=offset_min)
    for row in rows:  # local wall time of the bucket start, with its offset
        row["incomplete_intervals"] = incomplete.get(row["bucket"], 0)
        row["bucket"] = row["bucket"].isoformat()
    return listing(rows, limit=limit, offset=offset, format=format, name=f"history-{kind}-{bucket}")

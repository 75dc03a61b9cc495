"""Electricity-carbon totals for carbon-quota work: per month (and for a year, the year too), per region
(at a chosen depth: 1 province, 2 city, 3 county), per industry and per region × industry — the energy
users consumed, its location-based carbon and the energy-weighted intensity, with the data version of
each month so an allocation can be reproduced from the same stored results.

One tidy table (one row per period × grouping × key), the shape a quota analyst loads into a data
frame: ``grouping`` says which of ``region_industry``, ``region``, ``industry`` a row belongs to; the
other key column is ``"*"`` for the single-key groupings.  Sums of sums are exact (the grouping is
done in Python over per-user month sums computed in SQL).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.center.reports.build import ReportInputError, period_bounds
from carbonflow.center.reports.enterprise import in_region
from carbonflow.center.reports.tabular import PeriodTable
from carbonflow.center.store import Store, aggregate, data_version, load_directory

GROUPINGS = ("region_industry", "region", "industry")
QUOTA_COLUMNS = [
    "period",
    "grouping",
    "region",
    "industry",
    "users",
    "energy_kwh",
    "carbon_t",
    "intensity_g_per_kwh",
    "data_version",
]


@dataclass
class QuotaExport(PeriodTable):
    region_depth: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return self.period_metadata(
            "carbonflow electricity-carbon totals for quota work", region_depth=self.region_depth
        )


def _region_at(path: str | None, depth: int) -> str:
    return "/".join((path or "?").split("/")[:depth])


def _rows(period_label: str, sums: dict[tuple, list], users: dict[tuple, set], version: str) -> list[dict]:
    rows = []
    for (grouping, region, industry), (energy, carbon) in sorted(sums.items()):
        rows.append(
            {
                "period": period_label,
                "grouping": grouping,
                "region": region,
                "industry": industry,
                "users": len(users[(grouping, region, industry)]),
                "energy_kwh": energy,
                "carbon_t": carbon / 1000.0,
                "intensity_g_per_kwh": carbon * 1000.0 / energy if energy else None,
                "data_version": version,
            }
        )
    return rows


def quota_export(
    store: Store,
    period: str,
    start: str,
    *,
    time_zone: str = "Asia/Shanghai",
    region_depth: int = 2,
    region: str = "",
) -> QuotaExport:
    """Monthly (and, for a year, annual) totals of the users inside ``region``."""
    if period not in ("month", "year"):
        raise ReportInputError("period", f"quota totals are monthly or annual (month, year), not {period!r}")
    if region_depth not in (1, 2, 3):
        raise ReportInputError("region_depth", f"1 (province), 2 (city) or 3 (county), not {region_depth!r}")
    zone = ZoneInfo(time_zone)
    first, last = period_bounds(period, start, zone)
    region = region.strip("/")
    directory = {u["id"]: u for u in load_directory(store) if in_region(u["region"], region)}
    offset = int(first.astimezone(zone).utcoffset().total_seconds() // 60)
    per_month: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    members: dict[str, dict[tuple, set]] = defaultdict(lambda: defaultdict(set))
    rows = (
        aggregate(
            store, "load", "month", first, last, utc_offset_minutes=offset, element_ids=sorted(directory)
        )
        if directory
        else []
    )
    for row in rows:
        info = directory[row.key]
        month = row.bucket.strftime("%Y-%m")
        region_key, industry = _region_at(info["region"], region_depth), info["industry"] or "?"
        for label in (month, start) if period == "year" else (month,):
            for key in (
                ("region_industry", region_key, industry),
                ("region", region_key, "*"),
                ("industry", "*", industry),
            ):
                per_month[label][key][0] += row.energy_kwh
                per_month[label][key][1] += row.carbon_kg
                members[label][key].add(row.key)
    version, intervals = data_version(store, first, last)
    export = QuotaExport(period, start, first, last, time_zone, version, intervals, region_depth=region_depth)
    for label in sorted(per_month, key=lambda lab: (len(lab) == 4, lab)):  # months, then the year
        if label == start:
            label_version = version
        else:
            month_first, month_last = period_bounds("month", label, zone)
            label_version, _ = data_version(store, month_first, month_last)
        export.rows.extend(_rows(label, per_month[label], members[label], label_version))
    return export

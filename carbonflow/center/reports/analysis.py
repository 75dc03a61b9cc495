"""Multi-dimensional analysis: one local calendar period's carbon by region, industry, voltage level,
user, plant, fuel or unit, ranked, with the period before (month-on-month) and the same period a year
earlier (year-on-year), and two or more keys side by side.

Every figure is a ratio of sums — intensity = Σ carbon / Σ energy over the period, for a group as for the
total — never a mean of intensities (``store.aggregate`` sums in SQL).  A group's change is given for its
carbon, its energy and its intensity; a change against a period without data is ``None``, not 0 or ∞.

The consumption side (users) groups by region, industry, voltage level or user; the generation side by
region, voltage level, plant, fuel or unit.  Periods are those of the reports (:func:`period_bounds`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.center.reports.build import PERIODS, ReportInputError, element_sums, period_bounds
from carbonflow.center.store import Store, generator_plants

SIDES = ("consumption", "generation")
# dimension -> (sides it applies to, the store's group_by, or None: grouped here from the unit directory)
DIMENSIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "region": (SIDES, "region"),
    "industry": (("consumption",), "industry"),
    "voltage": (SIDES, "voltage"),
    "user": (("consumption",), "element"),
    "plant": (("generation",), None),
    "fuel": (("generation",), None),
    "unit": (("generation",), "element"),
}
ORDERS = ("carbon", "energy", "intensity")
MAX_KEYS = 50


@dataclass(frozen=True)
class AnalysisRequest:
    dimension: str
    period: str
    start: str
    side: str = "consumption"
    region: str | None = None  # only elements inside this region path
    region_depth: int | None = None  # region dimension: 1 province, 2 city, 3 county (None: as stored)
    keys: Sequence[str] = ()  # side by side: only these groups (in this order)
    order: str = "carbon"
    top: int | None = None

    def checked(self) -> AnalysisRequest:
        if self.dimension not in DIMENSIONS:
            raise ReportInputError(
                "dimension", f"must be one of {', '.join(DIMENSIONS)}, not {self.dimension!r}"
            )
        sides = DIMENSIONS[self.dimension][0]
        if self.side not in sides:
            raise ReportInputError("side", f"{self.dimension} is analysed on the {' or '.join(sides)} side")
        if self.period not in PERIODS:
            raise ReportInputError("period", f"must be one of {', '.join(PERIODS)}, not {self.period!r}")
        if self.order not in ORDERS:
            raise ReportInputError("order", f"must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if self.region_depth is not None and not 1 <= self.region_depth <= 3:
            raise ReportInputError("region_depth", "1 (province), 2 (city) or 3 (county)")
        if self.top is not None and self.top < 1:
            raise ReportInputError("top", "at least 1")
        if len(self.keys) > MAX_KEYS:
            raise ReportInputError("keys", f"at most {MAX_KEYS} side by side")
        return self


def shifted(period: str, start: str, *, years: int = 0, steps: int = 0) -> str:
    """The label of the period ``steps`` periods and ``years`` years from ``start`` (29 Feb → 28 Feb)."""
    parts = [int(p) for p in start.split("-")]
    if period == "year":
        return f"{parts[0] + years + steps:04d}"
    if period == "month":
        months = parts[0] * 12 + parts[1] - 1 + steps + 12 * years
        return f"{months // 12:04d}-{months % 12 + 1:02d}"
    year, month, day = parts[0] + years, parts[1], parts[2]
    if (month, day) == (2, 29) and years:
        try:
            date(year, 2, 29)
        except ValueError:
            day = 28
    return date.fromordinal(date(year, month, day).toordinal() + steps).isoformat()


def _sums(store: Store, request: AnalysisRequest, start: str, zone: ZoneInfo) -> dict[Any, list[float]]:
    """``{group: [Σ energy kWh, Σ carbon kg]}`` for one period."""
    first, last = period_bounds(request.period, start, zone)
    offset = int(first.astimezone(zone).utcoffset().total_seconds() // 60)
    kind = "load" if request.side == "consumption" else "generator"
    group_by = DIMENSIONS[request.dimension][1]
    sums = element_sums(
        store, kind, first, last, offset, group_by=group_by or "element", region=request.region,
        region_depth=request.region_depth if request.dimension == "region" else None,
    )  # fmt: skip
    if group_by is not None:
        return sums
    plants = generator_plants(store)
    key_of: Callable[[str], Any] = (
        (lambda g: plants.get(g, {}).get("plant") or g)
        if request.dimension == "plant"
        else (lambda g: plants.get(g, {}).get("fuel"))
    )
    grouped: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for unit, (energy, carbon) in sums.items():
        grouped[key_of(unit)][0] += energy
        grouped[key_of(unit)][1] += carbon
    return grouped


def _figures(energy_kwh: float, carbon_kg: float) -> dict[str, float | None]:
    return {
        "energy_kwh": energy_kwh,
        "carbon_t": carbon_kg / 1000.0,
        "intensity_g_per_kwh": carbon_kg * 1000.0 / energy_kwh if energy_kwh else None,
    }


def _change_pct(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / abs(before) * 100.0


def _entry(key: Any, now: list[float], previous: list[float] | None, year_ago: list[float] | None) -> dict:
    entry: dict[str, Any] = {"key": key, **_figures(*now)}
    for name, other in (("previous", previous), ("year_ago", year_ago)):
        figures = _figures(*other) if other is not None else None
        entry[name] = figures
        prefix = "mom" if name == "previous" else "yoy"
        for quantity in ("carbon_t", "energy_kwh", "intensity_g_per_kwh"):
            before = figures[quantity] if figures else None
            entry[f"{prefix}_{quantity.split('_')[0]}_pct"] = _change_pct(entry[quantity], before)
    return entry


def _key_text(key: Any) -> str:
    return "" if key is None else (f"{key:g}" if isinstance(key, float) else str(key))


def analyse(store: Store, request: AnalysisRequest, *, time_zone: str = "Asia/Shanghai") -> dict[str, Any]:
    """The analysis document (the API's answer): ``items`` ranked by ``order`` (descending), each with
    its share of the period's carbon, its rank, and month-on-month / year-on-year figures and changes;
    ``total`` the same over every group (before ``keys`` and ``top`` are applied)."""
    request = request.checked()
    zone = ZoneInfo(time_zone)
    first, last = period_bounds(request.period, request.start, zone)
    previous_start = shifted(request.period, request.start, steps=-1)
    year_ago_start = shifted(request.period, request.start, years=-1)
    now = _sums(store, request, request.start, zone)
    previous = _sums(store, request, previous_start, zone)
    year_ago = previous if request.period == "year" else _sums(store, request, year_ago_start, zone)

    def total(sums: dict[Any, list[float]]) -> list[float]:
        return [sum(v[0] for v in sums.values()), sum(v[1] for v in sums.values())]

    whole = total(now)
    items = [_entry(key, sums, previous.get(key), year_ago.get(key)) for key, sums in now.items()]
    by = {"carbon": "carbon_t", "energy": "energy_kwh", "intensity": "intensity_g_per_kwh"}[request.order]
    items.sort(key=lambda item: (item[by] is None, -(item[by] or 0.0), _key_text(item["key"])))
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
        item["share_of_carbon"] = item["carbon_t"] * 1000.0 / whole[1] if whole[1] else None
    if request.keys:
        found = {_key_text(item["key"]): item for item in items}
        missing = [k for k in request.keys if k not in found]
        if missing:
            raise ReportInputError(
                "keys", f"no {request.dimension} {missing[0]!r} with data in {request.start}"
            )
        items = [found[k] for k in request.keys]
    elif request.top is not None:
        items = items[: request.top]
    return {
        "dimension": request.dimension,
        "side": request.side,
        "period": request.period,
        "start": request.start,
        "from": first,
        "to": last,
        "time_zone": time_zone,
        "region": request.region,
        "region_depth": request.region_depth,
        "order": request.order,
        "previous_start": previous_start,
        "year_ago_start": year_ago_start,
        "total": _entry(
            None, whole, total(previous) if previous else None, total(year_ago) if year_ago else None
        ),
        "items": items,
    }

"""A carbon report's content: the period, the scope, and the generation-, grid- and consumption-side
sections as plain tables — rendering (CSV/XLSX/PDF) is ``render.py``'s.

Every figure is a ratio of sums (``store.aggregate``, ``store.loss_sums``): intensity = Σ carbon / Σ energy,
never a mean of intensities.  Periods are local calendar periods (``time_zone``): ``day`` 2026-12-01,
``month`` 2026-12, ``year`` 2026 — the intervals whose END lies in ``(start, end]``, as every view of the
API counts them.  The report carries the data version (:func:`store.data_version`): the hash over the
result hashes of the intervals it covers, so the same stored results rebuild the same report.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from carbonflow.center.store import (
    Store,
    aggregate,
    data_version,
    generator_plants,
    load_directory,
    loss_sums,
    versions_in,
)

Period = Literal["day", "month", "year"]
ScopeKind = Literal["all", "region", "industry", "plant", "user"]
PERIODS = ("day", "month", "year")
SCOPES = ("all", "region", "industry", "plant", "user")
_PATTERNS = {"day": r"\d{4}-\d{2}-\d{2}", "month": r"\d{4}-\d{2}", "year": r"\d{4}"}
_EXAMPLES = {"day": "2026-12-01", "month": "2026-12", "year": "2026"}
_PROFILE_BUCKET = {"day": "hour", "month": "day", "year": "month"}


class ReportInputError(ValueError):
    """A report request that cannot be built; ``field`` names the offending parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def period_bounds(period: str, start: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC ``[first, last)`` of the local calendar ``period`` labelled ``start``."""
    if period not in PERIODS:
        raise ReportInputError("period", f"must be one of {', '.join(PERIODS)}, not {period!r}")
    if not isinstance(start, str) or not re.fullmatch(_PATTERNS[period], start):
        raise ReportInputError("start", f"a {period} is written like {_EXAMPLES[period]}, not {start!r}")
    parts = [int(p) for p in start.split("-")] + [1, 1]
    try:
        first = datetime(parts[0], parts[1], parts[2], tzinfo=zone)
    except ValueError as error:
        raise ReportInputError("start", f"{start!r} is not a date ({error})") from None
    if period == "day":
        last = first + timedelta(days=1)
    elif period == "month":
        last = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    else:
        last = first.replace(year=first.year + 1)
    return first.astimezone(UTC), last.astimezone(UTC)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    chart: tuple[int, int] | None = None  # (label column, value column) drawn as a bar chart
    note: str = ""


@dataclass
class Section:
    name: str  # generation | grid | consumption | profile
    title: str
    tables: list[Table]
    note: str = ""


@dataclass
class CarbonReport:
    period: str
    start: str
    first: datetime
    last: datetime
    time_zone: str
    scope_kind: str
    scope_value: str | None
    data_version: str
    intervals: int
    summary: list[tuple[str, Any]]
    sections: list[Section] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def empty(self) -> bool:
        return self.intervals == 0

    @property
    def title(self) -> str:
        scope = "whole center" if self.scope_kind == "all" else f"{self.scope_kind} {self.scope_value}"
        return f"Carbon report, {self.period} {self.start} - {scope}"

    @property
    def empty_note(self) -> str:
        return f"No metered data in this period ({self.start}): the report is empty."


def _result_versions(store: Store, first: datetime, last: datetime) -> str:
    """Which versions of the results the report was made from (0: as metered; more: recomputed, see
    docs/recompute.md), e.g. ``"2"`` or ``"0, 2"`` when part of the period was recomputed."""
    return ", ".join(str(v) for v in versions_in(store, first, last)) or "-"


def _intensity(energy_kwh: float, carbon_kg: float) -> float | None:
    return round(carbon_kg * 1000.0 / energy_kwh, 3) if energy_kwh else None


def _amounts(energy_kwh: float, carbon_kg: float) -> list[Any]:
    """Energy MWh, carbon t, intensity g/kWh (rounded for display; the ratio comes from the sums)."""
    return [round(energy_kwh / 1000.0, 3), round(carbon_kg / 1000.0, 3), _intensity(energy_kwh, carbon_kg)]


AMOUNT_COLUMNS = ["energy_mwh", "carbon_t", "intensity_g_per_kwh"]


def element_sums(
    store: Store, kind: str, first: datetime, last: datetime, offset: int, **kw
) -> dict[Any, list]:
    """``{key: [Σ energy kWh, Σ carbon kg]}`` over ``(first, last]`` (month buckets of local time summed, as
    every view of the API sums them, so the same range gives the same floats everywhere)."""
    sums: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    for row in aggregate(store, kind, "month", first, last, utc_offset_minutes=offset, **kw):
        sums[row.key][0] += row.energy_kwh
        sums[row.key][1] += row.carbon_kg
    return sums


def _grouped(rows: dict[str, list], key_of) -> dict[Any, list]:
    out: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    for element, (energy, carbon) in rows.items():
        key = key_of(element)
        out[key][0] += energy
        out[key][1] += carbon
    return out


def _ranked(title: str, key_name: str, sums: dict[Any, list], *, chart: bool = True) -> Table:
    ordered = sorted(sums.items(), key=lambda item: (-item[1][1], str(item[0])))
    return Table(
        title,
        [key_name, *AMOUNT_COLUMNS],
        [[key if key is not None else "-", *_amounts(e, c)] for key, (e, c) in ordered],
        chart=(0, 2) if chart and ordered else None,
    )


def build_report(
    store: Store,
    period: str,
    start: str,
    *,
    time_zone: str = "Asia/Shanghai",
    scope_kind: str = "all",
    scope_value: str | None = None,
) -> CarbonReport:
    """The report of one local calendar period, for the whole center or one region / industry / plant /
    user.  A region scope filters all three sides; an industry or user scope the consumption side; a
    plant scope the generation side (the other sides then show the whole center, and say so)."""
    zone = ZoneInfo(time_zone)
    first, last = period_bounds(period, start, zone)
    if scope_kind not in SCOPES:
        raise ReportInputError("scope", f"must be one of {', '.join(SCOPES)}, not {scope_kind!r}")
    if scope_kind != "all" and not scope_value:
        raise ReportInputError(scope_kind, "a value is needed for this scope")
    scope_value = scope_value.strip("/") if scope_kind == "region" and scope_value else scope_value
    offset = int(first.astimezone(zone).utcoffset().total_seconds() // 60)
    plants = generator_plants(store)
    users = {u["id"]: u for u in load_directory(store)}
    region = scope_value if scope_kind == "region" else None
    gen_filter: dict[str, Any] = {"region": region}
    load_filter: dict[str, Any] = {"region": region}
    if scope_kind == "plant":
        ids = [g for g, info in plants.items() if (info["plant"] or g) == scope_value]
        if not ids:
            raise ReportInputError("plant", f"no plant {scope_value!r} in the topology")
        gen_filter["element_ids"] = ids
    elif scope_kind == "user":
        if scope_value not in users:
            raise ReportInputError("user", f"no user (load) {scope_value!r} in the topology")
        load_filter["element_ids"] = [scope_value]
    elif scope_kind == "industry":
        load_filter["industry"] = scope_value
    version, intervals = data_version(store, first, last)

    generators = element_sums(store, "generator", first, last, offset, **gen_filter)
    loads = element_sums(store, "load", first, last, offset, **load_filter)
    losses = loss_sums(store, first, last, region=region)
    gen_total = [sum(v[0] for v in generators.values()), sum(v[1] for v in generators.values())]
    load_total = [sum(v[0] for v in loads.values()), sum(v[1] for v in loads.values())]
    loss_total = [sum(v[0] for v in losses.values()), sum(v[1] for v in losses.values())]
    summary: list[tuple[str, Any]] = [
        ("period", f"{period} {start}"),
        ("from (UTC)", first.isoformat()),
        ("to (UTC)", last.isoformat()),
        ("time zone", time_zone),
        ("scope", scope_kind if scope_value is None else f"{scope_kind} {scope_value}"),
        ("intervals", intervals),
        ("data version", version),
        ("result version", _result_versions(store, first, last)),
        ("generation energy (MWh)", round(gen_total[0] / 1000.0, 3)),
        ("generation carbon (t)", round(gen_total[1] / 1000.0, 3)),
        ("generation intensity (g/kWh)", _intensity(*gen_total)),
        ("consumption energy (MWh)", round(load_total[0] / 1000.0, 3)),
        ("consumption carbon (t)", round(load_total[1] / 1000.0, 3)),
        ("consumption intensity (g/kWh)", _intensity(*load_total)),
        ("loss energy (MWh)", round(loss_total[0] / 1000.0, 3)),
        ("loss carbon (t)", round(loss_total[1] / 1000.0, 3)),
    ]
    report = CarbonReport(
        period, start, first, last, time_zone, scope_kind, scope_value, version, intervals, summary
    )
    if report.empty:
        return report

    plant_of = lambda g: plants.get(g, {}).get("plant") or g  # noqa: E731
    whole = "whole center (the scope does not apply to this side)"
    report.sections.append(
        Section(
            "generation",
            "Generation side",
            [
                _ranked("Carbon by plant", "plant", _grouped(generators, plant_of)),
                _ranked(
                    "Carbon by fuel", "fuel", _grouped(generators, lambda g: plants.get(g, {}).get("fuel"))
                ),
                _ranked("Carbon by unit", "unit", generators, chart=False),
            ],
            note=whole if scope_kind in ("industry", "user") else "",
        )
    )
    by_voltage: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    by_region: dict[Any, list] = defaultdict(lambda: [0.0, 0.0])
    for (voltage, loss_region), (energy, carbon) in losses.items():
        for table, key in ((by_voltage, voltage), (by_region, loss_region)):
            table[key][0] += energy
            table[key][1] += carbon
    report.sections.append(
        Section(
            "grid",
            "Grid side (losses)",
            [
                _losses("Loss carbon by voltage level (kV)", "voltage_kv", by_voltage),
                _losses("Loss carbon by region", "region", by_region),
            ],
            note=whole if scope_kind in ("industry", "user", "plant") else "",
        )
    )
    info = lambda u, k: users.get(u, {}).get(k)  # noqa: E731
    report.sections.append(
        Section(
            "consumption",
            "Consumption side",
            [
                _ranked("Carbon by region", "region", _grouped(loads, lambda u: info(u, "region"))),
                _ranked("Carbon by industry", "industry", _grouped(loads, lambda u: info(u, "industry"))),
                _ranked("Carbon by user", "user", loads, chart=False),
            ],
            note=whole if scope_kind == "plant" else "",
        )
    )
    report.sections.append(_profile(store, period, first, last, offset, gen_filter, load_filter))
    return report


def _losses(title: str, key_name: str, sums: dict[Any, list]) -> Table:
    ordered = sorted(sums.items(), key=lambda item: (-item[1][1], str(item[0])))
    return Table(
        title,
        [key_name, "loss_energy_mwh", "loss_carbon_t"],
        [[key, round(e / 1000.0, 3), round(c / 1000.0, 3)] for key, (e, c) in ordered],
        chart=(0, 2) if ordered else None,
    )


def _profile(store: Store, period: str, first, last, offset: int, gen_filter, load_filter) -> Section:
    bucket = _PROFILE_BUCKET[period]
    rows: dict[datetime, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for column, kind, kw in ((0, "generator", gen_filter), (2, "load", load_filter)):
        for row in aggregate(
            store, kind, bucket, first, last, group_by="total", utc_offset_minutes=offset, **kw
        ):
            rows[row.bucket][column] += row.energy_kwh
            rows[row.bucket][column + 1] += row.carbon_kg
    label = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}[bucket]
    table = Table(
        f"Per {bucket}",
        [
            bucket,
            "generation_mwh",
            "generation_carbon_t",
            "generation_g_per_kwh",
            "consumption_mwh",
            "consumption_carbon_t",
            "consumption_g_per_kwh",
        ],
        [
            [when.strftime(label), *_amounts(g_e, g_c), *_amounts(l_e, l_c)]
            for when, (g_e, g_c, l_e, l_c) in sorted(rows.items())
        ],
        chart=(0, 6) if rows else None,
    )
    return Section("profile", f"Profile per {bucket}", [table])

"""From stored readings of points to one interval's :class:`Measurements` by element quantity.

A counter's value at an interval boundary is interpolated between the good readings around it (the
last one before it alone when none follows yet), if they are recent enough (``max_age_s``); otherwise,
or when the register went backwards, the counter does not count for the interval and the assembly
estimates instead.  Instantaneous values are the good readings inside ``(start, end]``.
Readings of quality ``invalid`` never count; ``estimated`` and ``stale`` ones count as they are (the
collector already judged them usable) — what they fed is visible in the point's readings.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from carbonflow.center.metering.assemble import ElementKey, Measurements

COUNTER_QUANTITIES = frozenset(
    {"export_energy_kwh", "import_energy_kwh", "carbon_kg", "charge_energy_kwh", "discharge_energy_kwh"}
)


@dataclass(frozen=True)
class PointMapping:
    point_id: str
    element_kind: str
    element_id: str
    quantity: str
    end: str = "-"
    scale_to_element: Decimal = Decimal(1)  # device unit -> element unit (e.g. kW -> MW: 0.001)

    @property
    def key(self) -> ElementKey:
        return (self.element_kind, self.element_id, self.quantity, self.end)

    @property
    def is_counter(self) -> bool:
        return self.quantity in COUNTER_QUANTITIES


@dataclass(frozen=True)
class StoredReading:
    point_id: str
    ts: datetime
    value: Decimal | None
    quality: str = "good"


def measurements_for_interval(
    points: Iterable[PointMapping],
    readings: Iterable[StoredReading],
    start: datetime,
    end: datetime,
    max_age_s: float | None = None,
) -> Measurements:
    """``readings`` must include, for counters, readings up to ``max_age_s`` before ``start``."""
    max_age = timedelta(seconds=max_age_s if max_age_s is not None else (end - start).total_seconds())
    by_point: dict[str, list[StoredReading]] = {}
    for reading in readings:
        if reading.value is not None and reading.quality != "invalid":
            by_point.setdefault(reading.point_id, []).append(reading)
    for series in by_point.values():
        series.sort(key=lambda r: r.ts)

    counters: dict[ElementKey, tuple[Decimal, Decimal]] = {}
    instants: dict[ElementKey, list[Decimal]] = {}
    for point in points:
        series = by_point.get(point.point_id, [])
        if point.is_counter:
            pair = _counter_at_boundaries(series, start, end, max_age)
            if pair is not None:  # the first mapped meter of a quantity wins
                counters.setdefault(
                    point.key, (pair[0] * point.scale_to_element, pair[1] * point.scale_to_element)
                )
        else:
            inside = [r.value * point.scale_to_element for r in series if start < r.ts <= end]
            if inside:
                instants.setdefault(point.key, []).extend(inside)
    return Measurements((end - start).total_seconds(), counters, instants)


def _counter_at_boundaries(
    series: list[StoredReading], start: datetime, end: datetime, max_age: timedelta
) -> tuple[Decimal, Decimal] | None:
    """The register at both boundaries, interpolated linearly between the readings around each one
    (polls are not aligned with intervals; a register grows ~linearly between two polls), or the last
    reading before it when none follows yet.  A register that went backwards in between (a reset, a
    replaced meter) gives None: the energy of that interval is not known from it."""
    times = [r.ts for r in series]
    first, last = _bracket(times, start, max_age), _bracket(times, end, max_age)
    if first is None or last is None:
        return None
    lo, hi = first[0], last[1]
    if any(series[i + 1].value < series[i].value for i in range(lo, hi)):
        return None
    at_start, at_end = _interpolate(series, start, first), _interpolate(series, end, last)
    if at_end < at_start or (hi == lo):
        return None
    return at_start, at_end


def _bracket(times: list[datetime], moment: datetime, max_age: timedelta) -> tuple[int, int] | None:
    """Indices of the readings just before (or at) and just after ``moment`` (the same index twice when
    nothing follows within ``max_age``); None when nothing recent precedes it."""
    before = bisect.bisect_right(times, moment) - 1
    if before < 0 or moment - times[before] > max_age:
        return None
    after = before + 1
    if after < len(times) and times[after] - moment <= max_age and times[before] < moment:
        return before, after
    return before, before


def _interpolate(series: list[StoredReading], moment: datetime, bracket: tuple[int, int]) -> Decimal:
    low, high = series[bracket[0]], series[bracket[1]]
    if bracket[0] == bracket[1] or high.ts == low.ts:
        return low.value
    share = Decimal(str((moment - low.ts).total_seconds() / (high.ts - low.ts).total_seconds()))
    return low.value + (high.value - low.value) * share


def point_mappings(device_map: Mapping) -> list[PointMapping]:
    """Mappings from a device map (``carbonflow.sim.device_map`` format): device values are in the
    element's units divided by ``scale_to_device``."""
    mappings = []
    for device in device_map["devices"]:
        for point in device["points"]:
            scale = Decimal(repr(point.get("scale_to_device", 1.0)))
            mappings.append(
                PointMapping(
                    point_id=point["id"],
                    element_kind=point["element_kind"],
                    element_id=point["element_id"],
                    quantity=point["quantity"],
                    end=point.get("end", "-"),
                    scale_to_element=Decimal(1) / scale if scale else Decimal(1),
                )
            )
    return mappings

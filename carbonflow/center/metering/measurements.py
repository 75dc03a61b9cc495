"""From stored readings of points to one interval's :class:`Measurements` by element quantity.

A counter's value at an interval boundary is its last good reading at or before the boundary, if that
reading is recent enough (``max_age_s``); otherwise the counter does not count for the interval and the
assembly estimates instead.  Instantaneous values are the good readings inside ``(start, end]``.
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
            first = _at_or_before(series, start, max_age)
            last = _at_or_before(series, end, max_age)
            if first is not None and last is not None and last.ts > first.ts and last.value >= first.value:
                pair = (first.value * point.scale_to_element, last.value * point.scale_to_element)
                counters.setdefault(point.key, pair)  # the first mapped meter of a quantity wins
        else:
            inside = [r.value * point.scale_to_element for r in series if start < r.ts <= end]
            if inside:
                instants.setdefault(point.key, []).extend(inside)
    return Measurements((end - start).total_seconds(), counters, instants)


def _at_or_before(series: list[StoredReading], moment: datetime, max_age: timedelta) -> StoredReading | None:
    index = bisect.bisect_right([r.ts for r in series], moment) - 1
    if index < 0:
        return None
    reading = series[index]
    return reading if moment - reading.ts <= max_age else None


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

"""From stored readings of points to one interval's :class:`Measurements` by element quantity.

Counters (energy kWh, carbon kg) count by their value at both interval boundaries:

* a reading time-stamped exactly at a boundary — a frozen register (IEC 104 periodic freeze, DL/T 645
  freeze, DL/T 698.45 minute/hour freeze), or a poll that happened to land there — is the boundary
  value itself: *measured*;
* otherwise the register is interpolated between the two readings that straddle the boundary; the
  true value lies between them (a register never runs backwards), which bounds the interpolation's
  error; the value is *estimated* and carries that bound;
* with no reading after the boundary yet, the register is extrapolated from the last reading before it
  at the rate of the two last readings (estimated, the extrapolated increment as its bound) — the
  interval is metered again when later readings arrive; with nothing read before the boundary (a
  collector that has just started), the register is extrapolated back from the first two readings
  after it, in the same way.

A register that went backwards (reset, replaced meter) does not count for the interval.
Instantaneous values are the good readings inside ``(start, end]``.  Readings of quality ``invalid``
never count; ``estimated`` and ``stale`` ones count, marked as estimates.

Every value carries its standard uncertainty (1σ), from the meter's accuracy class (maximum permissible
error, a rectangular distribution: MPE/√3) and its register resolution (quantisation, r/√12 a value).
Where several points measure the same quantity (the plant RTU and the unit's electric-carbon meter), the
one with the smallest uncertainty counts; a measured value always beats an estimated one.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import repeat
from operator import mul, ne, sub
from typing import NamedTuple

import numpy as np

from carbonflow.center.metering.assemble import ElementKey, Measurements
from carbonflow.center.metering.columns import ReadingColumns, StoredReading, micros

COUNTER_QUANTITIES = frozenset(
    {"export_energy_kwh", "import_energy_kwh", "carbon_kg", "charge_energy_kwh", "discharge_energy_kwh"}
)
DEFAULT_ACCURACY_PERCENT = 0.5  # class 0.5S when the device map does not say
# registers that hold a value set for them (an emission factor) have no measuring error, only a resolution
EXACT_QUANTITIES = frozenset({"intensity_g_per_kwh"})
HELD_QUANTITIES = EXACT_QUANTITIES
ESTIMATED_QUALITIES = frozenset({"estimated", "stale"})
SQRT_3 = math.sqrt(3)


@dataclass(frozen=True)
class PointMapping:
    point_id: str
    element_kind: str
    element_id: str
    quantity: str
    end: str = "-"
    scale_to_element: Decimal = Decimal(1)  # device unit -> element unit (e.g. kW -> MW: 0.001; x CT x VT)
    accuracy_percent: float | None = None  # maximum permissible error, % of the reading (None: default)
    resolution: Decimal = Decimal(0)  # the register's last digit, in device units

    @cached_property
    def mpe_percent(self) -> float:
        if self.accuracy_percent is not None:
            return self.accuracy_percent
        return 0.0 if self.quantity in EXACT_QUANTITIES else DEFAULT_ACCURACY_PERCENT

    @cached_property  # cached: read for every point of every interval
    def key(self) -> ElementKey:
        return (self.element_kind, self.element_id, self.quantity, self.end)

    @cached_property
    def is_counter(self) -> bool:
        return self.quantity in COUNTER_QUANTITIES

    def resolution_in_element_units(self) -> float:
        return self._resolution_in_element_units

    @cached_property
    def _resolution_in_element_units(self) -> float:
        return float(abs(self.resolution * self.scale_to_element))

    @cached_property
    def quantisation_variance(self) -> float:
        """Of a counter's increase: two quantised registers (element units squared)."""
        return self._resolution_in_element_units**2 / 6


class BoundaryValue(NamedTuple):  # a tuple: two per counter and interval
    value: Decimal
    bound: Decimal  # the true register lies within value ± bound (0 for a reading at the boundary)
    estimated: str | None  # why it is an estimate, None when read at the boundary
    since: datetime  # the latest reading it rests on


class _Candidate(NamedTuple):  # a tuple: one per point and interval
    u: float
    estimated: str | None
    order: int

    def better_than(self, other: _Candidate | None) -> bool:
        if other is None:
            return True
        if (self.estimated is None) != (other.estimated is None):
            return self.estimated is None
        return (self.u, self.order) < (other.u, other.order)


class PointIndex:
    """The points an interval is measured for (those of ``quantities``; None: all), indexed once: a
    service meters interval after interval with the same points.  ``series``: each point's index among
    the distinct point ids; ``shared``: whether another point measures the same element quantity."""

    def __init__(self, points: Iterable[PointMapping], quantities: Collection[str] | None = None) -> None:
        self.source = points if isinstance(points, list) else list(points)
        self.size = len(self.source)  # a point appended to the list: indexed again
        self.quantities = quantities
        chosen = self.source if quantities is None else [p for p in self.source if p.quantity in quantities]
        self.points = chosen
        self.series_of = {pid: k for k, pid in enumerate(dict.fromkeys(p.point_id for p in self.points))}
        self.known_runs: list[tuple[list[str], np.ndarray]] = []  # (ReadingColumns.series_indexes)
        counting = {p.point_id for p in self.points if p.is_counter}
        self.is_counter = np.fromiter(map(counting.__contains__, self.series_of), bool, len(self.series_of))
        self.series = [self.series_of[p.point_id] for p in self.points]
        keys = Counter(p.key for p in self.points)
        self.shared = [keys[p.key] > 1 for p in self.points]
        shared_keys = {key: g for g, key in enumerate(key for key, count in keys.items() if count > 1)}
        self.group_of = np.fromiter(
            (shared_keys.get(p.key, -1) for p in self.points), np.int64, len(self.points)
        )
        # by kind, for the bulk of their usual cases: (position, series, key, scale, MPE / 100, the
        # resolution in element units, quantisation variance of an increase, alone on its quantity)
        self.by_kind = {
            counter: [
                (order, k, p.key, p.scale_to_element, p.mpe_percent / 100.0,
                 p.resolution_in_element_units(), p.quantisation_variance, not shared)
                for order, (p, k, shared) in enumerate(zip(self.points, self.series, self.shared))
                if p.is_counter == counter
            ]
            for counter in (True, False)
        }  # fmt: skip

    def of(self, points: Iterable[PointMapping], quantities: Collection[str] | None) -> bool:
        """Whether this is the index of ``points`` (the same list, unchanged in length) for ``quantities``."""
        return points is self.source and len(self.source) == self.size and quantities == self.quantities


def measurements_for_interval(
    points: Iterable[PointMapping] | PointIndex,
    readings: Iterable[StoredReading],
    start: datetime,
    end: datetime,
    max_age_s: float | None = None,
    held_max_age_s: float | None = None,
    quantities: Collection[str] | None = None,
) -> Measurements:
    """``readings`` must include, for counters, readings up to ``max_age_s`` before ``start``, and for
    factor registers the last reading up to ``held_max_age_s`` before it.  ``quantities``: only the
    points of these (default: every point) — the assembly reads neither voltages nor reactive power,
    a third of a large grid's points.  ``points`` may be given indexed (:class:`PointIndex`, built for
    the same ``quantities``); ``readings`` as :class:`ReadingColumns` (the store's read) are not turned
    into one object per reading."""
    max_age = timedelta(seconds=max_age_s if max_age_s is not None else (end - start).total_seconds())
    held_max_age = timedelta(seconds=held_max_age_s) if held_max_age_s is not None else max_age
    if isinstance(points, PointIndex):
        index = points if points.quantities == quantities else PointIndex(points.source, quantities)
    else:
        index = PointIndex(points, quantities)
    grouped = _Grouped(ReadingColumns.of(readings), index)
    read_at_both = grouped.counters_read_at_both(start, end, max_age)
    read_inside = grouped.samples_read_inside(start, end)
    bounds = grouped.bounds

    counters: dict[ElementKey, tuple[Decimal, Decimal]] = {}
    instants: dict[ElementKey, list[Decimal]] = {}
    uncertainty: dict[ElementKey, float] = {}
    estimated: dict[ElementKey, str] = {}
    window = (start - max_age, end + max_age)  # the readings a counter's reset is looked for in
    held_since = start - held_max_age
    # the usual cases (a counter read at both boundaries, samples all inside and sure) in bulk, with the
    # per-point code's arithmetic; those alone on their quantity stored at once, the shared ones at the end
    found = _bulk_counters(index.by_kind[True], read_at_both, counters)
    found += _bulk_samples(index.by_kind[False], read_inside, instants)
    handled = np.zeros(len(index.points), bool)
    sharing: list[tuple] = []  # (position, key, value, 1σ, why, target) of the points sharing a quantity
    for orders, keys, pairs, us, whys, alone, target in found:
        handled[list(orders)] = True
        if all(alone):
            target.update(zip(keys, pairs))
            uncertainty.update(zip(keys, us))
            estimated.update((key, why) for key, why in zip(keys, whys) if why)
            continue
        for order, key, pair, u, why, single in zip(orders, keys, pairs, us, whys, alone):
            if single:
                target[key] = pair
                uncertainty[key] = u
                if why:
                    estimated[key] = why
            else:
                sharing.append((order, key, pair, u, why, target))
    points, series_of_point, shared_of_point = index.points, index.series, index.shared
    for order in np.flatnonzero(~handled).tolist():
        point, k, shared = points[order], series_of_point[order], shared_of_point[order]
        if bounds[k] == bounds[k + 1]:  # nothing read: neither a counter nor a sample says anything
            continue
        # (a counter read at both boundaries and samples all inside and sure were taken in bulk above)
        if point.is_counter:
            result = _counter_over_interval(point, grouped.series(k), start, end, max_age, window)
            if result is None:
                continue
            pair, u, why = result
            target = counters
        else:
            series = grouped.series(k)
            inside = [r for r in series if start < r.ts <= end]
            sure = [r for r in inside if r.quality not in ESTIMATED_QUALITIES]
            if sure:  # a sample read across a boundary counts only when nothing surer came
                inside, why = sure, None
            else:
                if not inside and point.quantity in HELD_QUANTITIES:
                    # a factor register is reported when it changes (IEC 104 spontaneous data, a
                    # download): the last value before the interval is still the value in force
                    inside = [r for r in series if held_since <= r.ts <= start][-1:]
                if not inside:
                    continue
                flagged = sorted({r.quality for r in inside if r.quality in ESTIMATED_QUALITIES})
                why = f"{' and '.join(flagged)} readings" if flagged else None
            scale = point.scale_to_element
            values = [r.value * scale for r in inside]
            pair, u = values, _sample_mean_uncertainty(point, values)
            target = instants
        if shared:
            sharing.append((order, point.key, pair, u, why, target))
        else:
            target[point.key] = pair  # type: ignore[index]
            uncertainty[point.key] = u
            if why:
                estimated[point.key] = why
    _surest(sharing, index.group_of, uncertainty, estimated)
    return Measurements((end - start).total_seconds(), counters, instants, uncertainty, estimated)


def _surest(
    candidates: list[tuple], group_of: np.ndarray, uncertainty: dict[ElementKey, float], estimated: dict
) -> None:
    """Of the points measuring one quantity (``candidates``: position, key, value, 1σ, why, target), the
    surest counts: a measured value before an estimated one, then the smaller 1σ, then the earlier
    point — the least candidate of that order, which is what taking them one by one and keeping a
    better one kept (numpy, all quantities at once).  A 1σ that is NaN compares false with everything:
    then they are taken one by one, in their order, as before."""
    if not candidates:
        return
    orders, keys, values, us, whys, targets = zip(*candidates)
    u = np.array(us, float)
    if np.isnan(u).any():
        chosen: dict[ElementKey, _Candidate] = {}
        for order, key, value, one_u, why, target in sorted(candidates, key=lambda c: c[0]):
            candidate, other = _Candidate(one_u, why, order), chosen.get(key)
            if other is not None and not candidate.better_than(other):
                continue
            chosen[key] = candidate
            if not why:
                estimated.pop(key, None)
            target[key] = value
            uncertainty[key] = one_u
            if why:
                estimated[key] = why
        return
    position = np.array(orders)
    group = group_of[position]
    flagged = np.fromiter((why is not None for why in whys), bool, len(whys))
    ranked = np.lexsort((position, u, flagged, group))  # by quantity, then measured, 1σ, position
    ranked_group = group[ranked]
    for i in ranked[np.r_[True, ranked_group[1:] != ranked_group[:-1]]].tolist():
        key, why = keys[i], whys[i]
        targets[i][key] = values[i]
        uncertainty[key] = us[i]
        if why:
            estimated[key] = why


_FLAGS = {quality: f"{quality} reading" for quality in ESTIMATED_QUALITIES}  # why a boundary value estimates


_Bulk = tuple  # (positions, keys, values, 1σ, why an estimate, alone on its quantity, target dict)


def _bulk_counters(
    counters: list[tuple],
    read_at_both: dict[int, tuple[Decimal, str | None, Decimal, str | None]],
    target: dict[ElementKey, tuple[Decimal, Decimal]],
) -> list[_Bulk]:
    """The counters (``PointIndex.by_kind[True]``) read exactly at both boundaries (``read_at_both``):
    what :func:`_counter_result` gives each with bounds of 0 — the same ``Decimal`` and float operations
    in the same order, as C-level maps and one comprehension over all of them."""
    found = [(c, b) for c in counters if (b := read_at_both.get(c[1])) is not None]
    if not found:
        return []
    orders, _series, keys, scales, mpes, _resolutions, variances, alone = zip(*(c for c, _ in found))
    firsts, befores, lasts, afters = zip(*(b for _, b in found))
    energies = map(float, map(mul, map(sub, lasts, firsts), scales))
    # ``mpes``: each point's mpe_percent / 100.0, computed once (the same float as each time)
    us = [math.sqrt((m * abs(e)) ** 2 / 3 + v) for m, e, v in zip(mpes, energies, variances)]
    if any(befores) or any(afters):
        whys = [
            (f"{b}; {a}" if b and a and b != a else b or a or None) if b or a else None
            for b, a in zip(befores, afters)
        ]
    else:  # nothing read estimated or stale at a boundary (the usual interval): no reason anywhere
        whys = [None] * len(found)
    pairs = list(zip(map(mul, firsts, scales), map(mul, lasts, scales)))
    return [(orders, keys, pairs, us, whys, alone, target)]


_SQRT_12 = math.sqrt(12)  # math.sqrt(12 * 1): one sample


def _bulk_samples(
    samples: list[tuple], read_inside: dict[int, list[Decimal]], target: dict[ElementKey, list[Decimal]]
) -> list[_Bulk]:
    """The samples (``PointIndex.by_kind[False]``) all inside the interval and sure (``read_inside``):
    their values in element units and the uncertainty of their mean, as :func:`_sample_mean_uncertainty`
    gives it (one sample: the same float operations, inline; several: that function)."""
    found = [(c, s) for c in samples if (s := read_inside.get(c[1])) is not None]
    if not found:
        return []
    orders, _series, keys, scales, mpes, resolutions, _variances, alone = zip(*(c for c, _ in found))
    values = [
        [s[0] * scale] if len(s) == 1 else list(map(mul, s, repeat(scale)))
        for (_c, s), scale in zip(found, scales)
    ]
    # one sample: ``float(sum(v))`` is ``float(v[0])`` — 0 + v[0] is v[0] rounded to the context's
    # precision, which the product v[0] already is (and a zero's sign goes in abs())
    us = [
        math.sqrt((m * abs(float(v[0])) / SQRT_3) ** 2 + (r / _SQRT_12) ** 2 + 0.0**2)
        if len(v) == 1
        else _sample_uncertainty(m, r, v)
        for m, r, v in zip(mpes, resolutions, values)
    ]
    return [(orders, keys, values, us, [None] * len(orders), alone, target)]


class _Grouped:
    """The usable readings (a value, not ``invalid``) of ``points`` by point, each point's in time order
    (numpy: one stable sort of positions, no list per point until one is asked for)."""

    def __init__(self, columns: ReadingColumns, index: PointIndex) -> None:
        self.columns, self.series_of, self.is_counter = columns, index.series_of, index.is_counter
        series = columns.series_indexes(self.series_of, index.known_runs)
        usable = np.flatnonzero(columns.usable() & (series >= 0))
        ts, series = columns.ts_us[usable], series[usable]
        order = np.lexsort((ts, series))  # stable: readings of one time keep their order, as sorted() did
        self.rows, self.series_at, self.ts = usable[order], series[order], ts[order]
        self.bounds = np.searchsorted(self.series_at, np.arange(len(self.series_of) + 1)).tolist()
        self.row_list = self.rows.tolist()

    def series(self, k: int) -> list[StoredReading]:
        return list(map(self.columns.reading, self.row_list[self.bounds[k] : self.bounds[k + 1]]))

    def samples_read_inside(self, start: datetime, end: datetime) -> dict[int, list[Decimal]]:
        """The points that are not counters (by series) with readings inside ``(start, end]``, none of
        them ``estimated`` or ``stale``: their values (device units, in time order)."""
        start_us, end_us, series = micros(start), micros(end), self.series_at
        inside = np.flatnonzero(~self.is_counter[series] & (self.ts > start_us) & (self.ts <= end_us))
        qualities = self.columns.qualities_at(self.rows[inside].tolist())
        flagged = np.fromiter(map(ESTIMATED_QUALITIES.__contains__, qualities), bool, len(inside))
        sure = np.ones(len(self.series_of), bool)
        sure[series[inside[flagged]]] = False
        inside = inside[sure[series[inside]]]  # still one run of positions per series (a time range)
        ks, first = np.unique(series[inside], return_index=True)
        values = self.columns.decimals_at(self.rows[inside].tolist())
        runs = np.append(first, len(inside)).tolist()
        return dict(zip(ks.tolist(), map(values.__getitem__, map(slice, runs[:-1], runs[1:]))))

    def counters_read_at_both(
        self, start: datetime, end: datetime, max_age: timedelta
    ) -> dict[int, tuple[Decimal, str | None, Decimal, str | None]]:
        """The counters (by series) read exactly at ``start`` and at ``end`` whose readings within
        ``max_age`` of the interval never go backwards — what :func:`_counter_over_interval` finds
        without interpolating or extrapolating — with both boundary readings (value, why an estimate).  A
        counter it cannot decide at once (equal floats of different decimals, one time read twice, a
        value that is not finite) is left to the per-point code."""
        start_us, end_us, age_us = micros(start), micros(end), max_age // timedelta(microseconds=1)
        if not (start_us < end_us and age_us >= 0) or not len(self.rows):
            return {}
        series, ts, positions = self.series_at, self.ts, np.arange(len(self.rows))
        at_start, at_end = np.full(len(self.series_of), -1), np.full(len(self.series_of), -1)
        at_start[series[ts == start_us]] = positions[ts == start_us]
        at_end[series[ts == end_us]] = positions[ts == end_us]
        candidate = self.is_counter & (at_start >= 0) & (at_end >= 0)
        twice = (series[1:] == series[:-1]) & (ts[1:] == ts[:-1])
        candidate[series[1:][twice]] = False
        # the readings of the window of every candidate (contiguous per counter, in time order)
        inside = np.flatnonzero(candidate[series] & (ts >= start_us - age_us) & (ts <= end_us + age_us))
        stored = self.columns.values_at(self.rows[inside].tolist())
        try:
            as_float = np.fromiter(map(float, stored), float, len(stored))
        except ValueError:  # a stored value float() does not read (``sNaN``): all to the per-point code
            return {}
        same = series[inside[1:]] == series[inside[:-1]]
        later, earlier = as_float[1:], as_float[:-1]
        # float() rounds monotonically: a lower float is a lower decimal; equal floats of different
        # stored values are left undecided (an exact comparison is the per-point code's)
        doubtful = same & (later < earlier)
        tied = np.flatnonzero(same & (later == earlier)).tolist()  # a register that did not move, mostly
        doubtful[tied] = list(map(ne, map(stored.__getitem__, tied), [stored[i + 1] for i in tied]))
        candidate[series[inside[1:]][doubtful]] = False
        candidate[series[inside][~np.isfinite(as_float)]] = False
        ks = np.flatnonzero(candidate)
        firsts, lasts = self.rows[at_start[ks]].tolist(), self.rows[at_end[ks]].tolist()
        columns = self.columns
        flags = (map(_FLAGS.get, columns.qualities_at(firsts)), map(_FLAGS.get, columns.qualities_at(lasts)))
        values = zip(columns.decimals_at(firsts), flags[0], columns.decimals_at(lasts), flags[1])
        return dict(zip(ks.tolist(), values))


def _sample_mean_uncertainty(point: PointMapping, values: list[Decimal]) -> float:
    """1σ of the mean of ``values``: the class error is systematic (it does not average out), the
    quantisation is random, and so is the spread of the samples themselves."""
    return _sample_uncertainty(point.mpe_percent / 100.0, point.resolution_in_element_units(), values)


def _sample_uncertainty(mpe: float, resolution: float, values: list[Decimal]) -> float:
    """:func:`_sample_mean_uncertainty` of a point of ``mpe`` (its MPE / 100) and ``resolution`` (in
    element units)."""
    mean = float(sum(values)) / len(values)
    systematic = mpe * abs(mean) / SQRT_3
    quantisation = resolution / math.sqrt(12 * len(values))
    spread = 0.0
    if len(values) > 1:
        variance = sum((float(v) - mean) ** 2 for v in values) / (len(values) - 1)
        spread = math.sqrt(variance / len(values))
    return math.sqrt(systematic**2 + quantisation**2 + spread**2)


def _counter_over_interval(
    point: PointMapping,
    series: list[StoredReading],
    start: datetime,
    end: datetime,
    max_age: timedelta,
    window: tuple[datetime, datetime],
) -> tuple[tuple[Decimal, Decimal], float, str | None] | None:
    """(value at start, value at end) in element units, the 1σ of their difference, and why it is an
    estimate (None: both read at the boundaries); ``window``: ``start - max_age, end + max_age``."""
    times = [r.ts for r in series]
    first = register_at(series, start, max_age, times)
    last = register_at(series, end, max_age, times)
    if first is None or last is None or last.since <= start:
        return None  # nothing read inside the interval: the register says nothing about it
    lo = bisect.bisect_left(times, window[0])
    hi = bisect.bisect_right(times, window[1])
    values = [r.value for r in series[lo:hi]]
    if values != sorted(values):  # type: ignore[type-var]
        return None  # reset or replaced meter in between (a register ran backwards): not an energy
    if last.value < first.value:
        return None
    return _counter_result(
        point, first.value, first.bound, first.estimated, last.value, last.bound, last.estimated
    )


def _counter_result(
    point: PointMapping,
    first: Decimal,
    first_bound: Decimal | int,
    before: str | None,
    last: Decimal,
    last_bound: Decimal | int,
    after: str | None,
) -> tuple[tuple[Decimal, Decimal], float, str | None]:
    """A counter's boundary values (device units) with their bounds and why each is an estimate, as
    (values in element units, 1σ of their difference, why the increase is an estimate)."""
    scale = point.scale_to_element
    energy = float((last - first) * scale)
    u_squared = (point.mpe_percent / 100.0 * abs(energy)) ** 2 / 3 + point.quantisation_variance
    if first_bound:  # a bound of 0 adds 0.0: left out, the same sum
        u_squared += float(first_bound * abs(scale)) ** 2 / 3
    if last_bound:
        u_squared += float(last_bound * abs(scale)) ** 2 / 3
    why = f"{before}; {after}" if before and after and before != after else before or after or None
    return (first * scale, last * scale), math.sqrt(u_squared), why


def register_at(
    series: list[StoredReading], moment: datetime, max_age: timedelta, times: list[datetime] | None = None
) -> BoundaryValue | None:
    """A counter's value at ``moment`` from its time-ordered readings (device units); ``times``: their
    time stamps, when the caller has them."""
    if times is None:
        times = [r.ts for r in series]
    before = bisect.bisect_right(times, moment) - 1
    if before < 0 or moment - times[before] > max_age:
        return _extrapolated_back(series, moment, max_age, before + 1)
    low = series[before]
    flagged = low.quality in ESTIMATED_QUALITIES
    if low.ts == moment:
        why = f"{low.quality} reading" if flagged else None
        return BoundaryValue(low.value, Decimal(0), why, low.ts)  # type: ignore[arg-type]
    after = before + 1
    if after < len(series) and series[after].ts - moment <= max_age:
        high = series[after]
        share = Decimal(str((moment - low.ts).total_seconds() / (high.ts - low.ts).total_seconds()))
        value = low.value + (high.value - low.value) * share  # type: ignore[operator]
        bound = max(value - low.value, high.value - value)  # type: ignore[operator]
        return BoundaryValue(value, bound, "interpolated between reads around the boundary", high.ts)
    # nothing after it yet: the register has gone on at its recent rate since its last reading (holding
    # the last value instead would be the lowest possible value, not the likeliest: on a busy collector
    # every such interval would read low, its consumers' energy going to the losses); the increment
    # itself is the bound
    earlier = before - 1
    value, bound = low.value, Decimal(0)
    if earlier >= 0 and series[earlier].ts < low.ts:
        bound = _added_at_rate(series[earlier], low, (moment - low.ts).total_seconds())
        value = low.value + bound  # type: ignore[operator]
    extrapolated = "extrapolated at the recent rate from the last reading before the boundary"
    return BoundaryValue(value, bound, extrapolated, low.ts)  # type: ignore[arg-type]


def _extrapolated_back(
    series: list[StoredReading], moment: datetime, max_age: timedelta, after: int
) -> BoundaryValue | None:
    """Nothing read before ``moment`` (a collector that has just started, a meter back from an outage):
    the register ran before its first reading after ``moment`` at the rate of the first two readings
    after it — the same estimate as forward from the last reading, and bound by the same increment.
    With fewer than two readings there is no rate: the register says nothing about the interval."""
    if after + 1 >= len(series):
        return None
    first, second = series[after], series[after + 1]
    if first.ts - moment > max_age or second.ts <= first.ts:
        return None
    bound = _added_at_rate(first, second, (first.ts - moment).total_seconds())
    why = "extrapolated back at the rate of the first readings after the boundary"
    return BoundaryValue(first.value - bound, bound, why, second.ts)  # type: ignore[operator]


def _added_at_rate(earlier: StoredReading, later: StoredReading, seconds: float) -> Decimal:
    """What a register adds in ``seconds`` at the rate it ran from ``earlier`` to ``later`` (exact
    decimals; never negative: a register does not run backwards)."""
    increment = max(later.value - earlier.value, Decimal(0))  # type: ignore[operator]
    span_s = Decimal(str((later.ts - earlier.ts).total_seconds()))
    return increment * Decimal(str(seconds)) / span_s


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

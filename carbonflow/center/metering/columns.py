"""An interval window's readings by column (issue 17 §4: an interval of a 10,000-bus grid reads ~470,000).

:class:`ReadingColumns` keeps the readings as the store returns them — its rows, read column by column
(C-level maps, numpy arrays: the time stamps as integer microseconds) — and turns a value into a
``Decimal`` only when it is used.  It is still a sequence of :class:`StoredReading` for whoever iterates
it (the alarms, the recomputation): those are built once, on first use, exactly as the store's typed
columns give them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain, repeat
from operator import is_not, itemgetter, ne
from typing import Any, NamedTuple, overload

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KNOWN_RUNS = 4  # runs of point ids (with their series indexes) remembered from earlier windows
_MICROSECOND = timedelta(microseconds=1)


class StoredReading(NamedTuple):
    """A reading as stored (a tuple: an interval of a large grid reads hundreds of thousands of them)."""

    point_id: str
    ts: datetime
    value: Decimal | None
    quality: str = "good"


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (a naive time taken as UTC): orders exactly as the datetimes do."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def exact_decimal(value: Any) -> Decimal:
    """A stored value as ``ExactDecimal`` gives it (SQLite's text, or a number it stored as one)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(value if isinstance(value, str) else str(value))


class ReadingColumns(Sequence[StoredReading]):
    """Readings kept as the store gives them, ``(point_id, ts, value, quality)`` — ``ts`` as stored
    (converted by ``to_datetime`` once per distinct time stamp), ``value`` as stored (text, a number or
    a ``Decimal``; None for no value) — in four columns (lists); ``ts_us``: the times in microseconds.
    ``all_usable``: set by a builder that knows every reading has a value and none is ``invalid``."""

    all_usable = False

    def __init__(self, rows: list[Any], to_datetime: Callable[[Any], datetime] | None = None) -> None:
        self._set_columns(
            list(map(_POINT_ID, rows)), list(map(_TS, rows)), list(map(_VALUE, rows)),
            list(map(_QUALITY, rows)), to_datetime,
        )  # fmt: skip
        self._rows: list[Any] | None = rows

    def _set_columns(
        self,
        point_ids: list[str],
        stamps: list[Any],
        values: list[Any],
        qualities: list[str],
        to_datetime: Callable[[Any], datetime] | None,
        runs: list[tuple[Any, int]] | None = None,
    ) -> None:
        """``runs``: the readings as runs of one time stamp each, ``(ts, length)`` in order, when known."""
        self.point_id_list, self.stamps, self.values, self.quality_list = point_ids, stamps, values, qualities
        distinct = set(stamps) if runs is None else {ts for ts, _length in runs}  # a handful
        self.moments = {ts: to_datetime(ts) if to_datetime else ts for ts in distinct}
        at = {ts: micros(moment) for ts, moment in self.moments.items()}
        n = len(point_ids)
        if runs is None:
            self.ts_us = np.fromiter(map(at.__getitem__, stamps), np.int64, n)
        else:
            self.ts_us = np.repeat(np.array([at[ts] for ts, _ in runs], np.int64), [k for _, k in runs])
        self._readings: list[StoredReading] | None = None
        self._rows = None

    @classmethod
    def of_runs(
        cls,
        runs: list[tuple[Any, list[str], list[Any], list[str]]],
        to_datetime: Callable[[Any], datetime] | None = None,
    ) -> ReadingColumns:
        """Readings given as runs of one time stamp: ``(ts, point ids, values, qualities)`` each."""
        columns = cls.__new__(cls)
        point_ids, values, qualities = (list(chain.from_iterable(run[i] for run in runs)) for i in (1, 2, 3))
        stamps = list(chain.from_iterable(repeat(ts, len(ids)) for ts, ids, _values, _qualities in runs))
        columns._set_columns(
            point_ids, stamps, values, qualities, to_datetime, [(ts, len(ids)) for ts, ids, _v, _q in runs]
        )
        return columns

    @classmethod
    def of(cls, readings: Iterable[StoredReading]) -> ReadingColumns:
        """Columns of readings given one by one (a list built by a caller, a test)."""
        if isinstance(readings, ReadingColumns):
            return readings
        columns = cls(readings if isinstance(readings, list) else list(readings))
        columns._readings = columns._rows
        return columns

    @property
    def rows(self) -> list[Any]:
        """The readings as the store's rows ``(point_id, ts, value, quality)``."""
        if self._rows is None:
            self._rows = list(zip(self.point_id_list, self.stamps, self.values, self.quality_list))
        return self._rows

    def point_ids(self) -> Iterator[str]:
        return iter(self.point_id_list)

    def qualities(self) -> Iterator[str]:
        return iter(self.quality_list)

    def _runs(self) -> Iterator[tuple[int, int, int | None]]:
        """The runs of one time stamp, ``(lo, hi, earlier)``: ``earlier`` the position of an earlier run
        whose point ids are this run's, in the same order (a collector sends its points in one order at
        every boundary; one comparison of lists), else None."""
        ids, ts_us = self.point_id_list, self.ts_us
        starts = [0, *(np.flatnonzero(ts_us[1:] != ts_us[:-1]) + 1).tolist(), len(ids)]
        seen: list[list[str]] = []
        for lo, hi in zip(starts[:-1], starts[1:]):
            run = ids[lo:hi]
            earlier = next((k for k, other in enumerate(seen) if other == run), None)
            if earlier is None:
                seen.append(run)
            yield lo, hi, earlier

    def distinct_point_id_runs(self) -> Iterator[list[str]]:
        """The point ids, run by run, leaving out a run that repeats an earlier one: every point id is
        in them (the window of 10,000 buses: 2 runs of 118,000 ids to look at instead of 472,000 ids)."""
        ids = self.point_id_list
        return (ids[lo:hi] for lo, hi, earlier in self._runs() if earlier is None)

    def series_indexes(
        self, series_of: dict[str, int], known: list[tuple[list[str], np.ndarray]] | None = None
    ) -> np.ndarray:
        """``series_of[point_id]`` of every reading (-1: not in it).  A run of one time stamp whose point
        ids are those of an earlier run takes that run's indexes: no look-up per reading.  ``known``:
        runs of earlier windows with their indexes in ``series_of`` (kept by the caller, with this
        window's distinct runs added; at most ``KNOWN_RUNS``): a run equal to one of them takes its
        indexes too (one comparison of lists; a collector sends the same points every interval)."""
        ids = self.point_id_list
        found = np.empty(len(ids), np.int64)
        first: list[tuple[int, int]] = []  # (lo, hi) of the distinct runs
        for lo, hi, earlier in self._runs():
            if earlier is not None:
                found[lo:hi] = found[slice(*first[earlier])]
                continue
            first.append((lo, hi))
            run = ids[lo:hi]
            indexes = next((indexes for other, indexes in known or () if other == run), None)
            if indexes is None:
                indexes = np.fromiter(map(series_of.get, run, repeat(-1)), np.int64, hi - lo)
                if known is not None:
                    known.append((run, indexes))
                    del known[:-KNOWN_RUNS]
            found[lo:hi] = indexes
        return found

    def usable(self) -> np.ndarray:
        """Whether each reading counts at all: it has a value and is not ``invalid``."""
        values, qualities, n = self.values, self.quality_list, len(self.values)
        if self.all_usable:  # known by whoever built the columns
            return np.ones(n, bool)
        if None not in values and "invalid" not in qualities:  # the usual window: one scan each, in C
            return np.ones(n, bool)
        has_value = np.fromiter(map(is_not, values, repeat(None)), bool, n)
        return has_value & np.fromiter(map(ne, qualities, repeat("invalid")), bool, n)

    def values_at(self, indexes: list[int]) -> list[Any]:
        """The values of the readings at ``indexes``, as stored."""
        return list(map(self.values.__getitem__, indexes))

    def qualities_at(self, indexes: list[int]) -> list[str]:
        return list(map(self.quality_list.__getitem__, indexes))

    def decimals_at(self, indexes: list[int]) -> list[Decimal]:
        """The values of the readings at ``indexes`` (none of them None) as decimals."""
        stored = self.values_at(indexes)
        if set(map(type, stored)) <= _DECIMAL_AS_IS:  # Decimal(x) is exact_decimal(x): no call per value
            return list(map(Decimal, stored))
        return list(map(exact_decimal, stored))

    def decimal(self, index: int) -> Decimal:
        return exact_decimal(self.values[index])

    def reading(self, index: int) -> StoredReading:
        value = self.values[index]
        return StoredReading(
            self.point_id_list[index],
            self.moments[self.stamps[index]],
            None if value is None else exact_decimal(value),
            self.quality_list[index],
        )

    def readings(self) -> list[StoredReading]:
        if self._readings is None:
            self._readings = [self.reading(i) for i in range(len(self.values))]
        return self._readings

    def last_per_point(self, start: datetime, end: datetime) -> dict[str, tuple[datetime, Decimal]]:
        """The last reading with a value of every point with ``start < ts <= end``, as ``(ts, value)``
        (the alarms' view of an interval: the readings in it are found by their times, only the chosen
        values are made decimals); of readings at the same time the first one counts."""
        ids, values, ts_us = self.point_id_list, self.values, self.ts_us
        inside = np.flatnonzero((ts_us > micros(start)) & (ts_us <= micros(end)))
        chosen: dict[str, tuple[int, int]] = {}  # point -> (its time in µs, row)
        for index, moment in zip(inside.tolist(), ts_us[inside].tolist(), strict=True):
            if values[index] is not None:
                point_id = ids[index]
                held = chosen.get(point_id)
                if held is None or moment > held[0]:
                    chosen[point_id] = (moment, index)
        moments, stamps = self.moments, self.stamps
        return {
            point_id: (moments[stamps[index]], exact_decimal(values[index]))
            for point_id, (_moment, index) in chosen.items()
        }

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[StoredReading]:
        return iter(self.readings())

    @overload
    def __getitem__(self, index: int) -> StoredReading: ...
    @overload
    def __getitem__(self, index: slice) -> list[StoredReading]: ...
    def __getitem__(self, index: int | slice) -> StoredReading | list[StoredReading]:
        return self.readings()[index]


_POINT_ID, _TS, _VALUE, _QUALITY = (itemgetter(i) for i in range(4))
_DECIMAL_AS_IS = frozenset({str, int, Decimal})  # a float is read through its repr, as the store does

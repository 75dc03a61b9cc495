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
from itertools import repeat
from operator import is_not, itemgetter, ne
from typing import Any, NamedTuple, overload

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    """Readings kept as the store's rows ``(point_id, ts, value, quality)`` — ``ts`` as stored (converted
    by ``to_datetime`` once per distinct time stamp), ``value`` as stored (text, a number or a
    ``Decimal``; None for no value) — read by column; ``ts_us``: the times in microseconds."""

    def __init__(self, rows: list[Any], to_datetime: Callable[[Any], datetime] | None = None) -> None:
        self.rows = rows
        stamps = set(map(_TS, rows))  # a window holds a handful
        self.moments = {ts: to_datetime(ts) if to_datetime else ts for ts in stamps}
        distinct = {ts: micros(moment) for ts, moment in self.moments.items()}
        self.ts_us = np.fromiter(map(distinct.__getitem__, map(_TS, rows)), np.int64, len(rows))
        self._readings: list[StoredReading] | None = None

    @classmethod
    def of(cls, readings: Iterable[StoredReading]) -> ReadingColumns:
        """Columns of readings given one by one (a list built by a caller, a test)."""
        if isinstance(readings, ReadingColumns):
            return readings
        columns = cls(readings if isinstance(readings, list) else list(readings))
        columns._readings = columns.rows
        return columns

    def point_ids(self) -> Iterator[str]:
        return map(_POINT_ID, self.rows)

    def qualities(self) -> Iterator[str]:
        return map(_QUALITY, self.rows)

    def usable(self) -> np.ndarray:
        """Whether each reading counts at all: it has a value and is not ``invalid``."""
        n = len(self.rows)
        has_value = np.fromiter(map(is_not, map(_VALUE, self.rows), repeat(None)), bool, n)
        return has_value & np.fromiter(map(ne, self.qualities(), repeat("invalid")), bool, n)

    def values_at(self, indexes: list[int]) -> list[Any]:
        """The values of the readings at ``indexes``, as stored."""
        return list(map(_VALUE, map(self.rows.__getitem__, indexes)))

    def qualities_at(self, indexes: list[int]) -> list[str]:
        return list(map(_QUALITY, map(self.rows.__getitem__, indexes)))

    def decimals_at(self, indexes: list[int]) -> list[Decimal]:
        """The values of the readings at ``indexes`` (none of them None) as decimals."""
        stored = self.values_at(indexes)
        if set(map(type, stored)) <= _DECIMAL_AS_IS:  # Decimal(x) is exact_decimal(x): no call per value
            return list(map(Decimal, stored))
        return list(map(exact_decimal, stored))

    def decimal(self, index: int) -> Decimal:
        return exact_decimal(self.rows[index][2])

    def reading(self, index: int) -> StoredReading:
        point_id, ts, value, quality = self.rows[index]
        return StoredReading(
            point_id, self.moments[ts], None if value is None else exact_decimal(value), quality
        )

    def readings(self) -> list[StoredReading]:
        if self._readings is None:
            self._readings = [self.reading(i) for i in range(len(self.rows))]
        return self._readings

    def last_per_point(self, start: datetime, end: datetime) -> dict[str, tuple[datetime, Decimal]]:
        """The last reading with a value of every point with ``start < ts <= end``, as ``(ts, value)``
        (the alarms' view of an interval: the readings in it are found by their times, only the chosen
        values are made decimals); of readings at the same time the first one counts."""
        rows, ts_us = self.rows, self.ts_us
        inside = np.flatnonzero((ts_us > micros(start)) & (ts_us <= micros(end)))
        chosen: dict[str, tuple[int, int]] = {}  # point -> (its time in µs, row)
        for index, moment in zip(inside.tolist(), ts_us[inside].tolist(), strict=True):
            point_id, _ts, value, _quality = rows[index]
            if value is not None:
                held = chosen.get(point_id)
                if held is None or moment > held[0]:
                    chosen[point_id] = (moment, index)
        moments = self.moments
        return {
            point_id: (moments[rows[index][1]], exact_decimal(rows[index][2]))
            for point_id, (_moment, index) in chosen.items()
        }

    def __len__(self) -> int:
        return len(self.rows)

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

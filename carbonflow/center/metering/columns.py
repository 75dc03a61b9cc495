"""An interval window's readings as columns (issue 17 §4: an interval of a 10,000-bus grid reads ~470,000).

:class:`ReadingColumns` keeps the readings as the store returns them — one list per column, the time
stamps also as integer microseconds in a numpy array — and turns a value into a ``Decimal`` only when
it is used.  It is still a sequence of :class:`StoredReading` for whoever iterates it (the alarms, the
recomputation): those are built once, on first use, exactly as the store's typed columns give them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import repeat
from operator import is_not, ne
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
    """Readings by column: ``point_ids``, ``times`` (datetimes), ``values`` (as stored: text, a number or
    a ``Decimal``; None for no value) and ``qualities``; ``ts_us``: the times in microseconds."""

    def __init__(
        self, point_ids: list[str], times: list[datetime], values: list[Any], qualities: list[str]
    ) -> None:
        self.point_ids, self.times, self.values, self.qualities = point_ids, times, values, qualities
        distinct = {moment: micros(moment) for moment in set(times)}  # a window holds a handful
        self.ts_us = np.fromiter(map(distinct.__getitem__, times), np.int64, len(times))
        self._readings: list[StoredReading] | None = None

    @classmethod
    def of(cls, readings: Iterable[StoredReading]) -> ReadingColumns:
        """Columns of readings given one by one (a list built by a caller, a test)."""
        if isinstance(readings, ReadingColumns):
            return readings
        rows = list(readings)
        if not rows:
            return cls([], [], [], [])
        point_ids, times, values, qualities = (list(column) for column in zip(*rows))
        columns = cls(point_ids, times, values, qualities)
        columns._readings = [StoredReading(*row) for row in rows]
        return columns

    @classmethod
    def of_rows(cls, rows: list[Any], to_datetime: Any) -> ReadingColumns:
        """Columns of the store's rows ``(point_id, ts, value, quality)``; ``to_datetime`` converts a
        stored time stamp (once per distinct one)."""
        if not rows:
            return cls([], [], [], [])
        point_ids, stamps, values, qualities = (list(column) for column in zip(*rows))
        moments = {ts: to_datetime(ts) for ts in set(stamps)}
        return cls(point_ids, list(map(moments.__getitem__, stamps)), values, qualities)

    def usable(self) -> np.ndarray:
        """Whether each reading counts at all: it has a value and is not ``invalid``."""
        n = len(self.point_ids)
        has_value = np.fromiter(map(is_not, self.values, repeat(None)), bool, n)
        return has_value & np.fromiter(map(ne, self.qualities, repeat("invalid")), bool, n)

    def decimal(self, index: int) -> Decimal:
        return exact_decimal(self.values[index])

    def reading(self, index: int) -> StoredReading:
        value = self.values[index]
        return StoredReading(
            self.point_ids[index],
            self.times[index],
            None if value is None else exact_decimal(value),
            self.qualities[index],
        )

    def readings(self) -> list[StoredReading]:
        if self._readings is None:
            self._readings = [self.reading(i) for i in range(len(self.point_ids))]
        return self._readings

    def __len__(self) -> int:
        return len(self.point_ids)

    def __iter__(self) -> Iterator[StoredReading]:
        return iter(self.readings())

    @overload
    def __getitem__(self, index: int) -> StoredReading: ...
    @overload
    def __getitem__(self, index: slice) -> list[StoredReading]: ...
    def __getitem__(self, index: int | slice) -> StoredReading | list[StoredReading]:
        return self.readings()[index]

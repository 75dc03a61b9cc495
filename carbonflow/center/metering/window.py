"""An interval window's readings read from the store (issue 17 §4): on SQLite as runs of one time stamp
(one row per time stamp, each column joined by SQLite and split back), else as rows; the held factor
registers' last readings before the window; all of it as :class:`ReadingColumns`."""

from __future__ import annotations

import functools
import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, select, type_coerce

from carbonflow.center.metering.columns import ReadingColumns
from carbonflow.center.store.schema import Reading
from carbonflow.center.store.types import UtcDateTime, sqlite_ts


class RunCache:
    """The runs of the last window read (SQLite), by time stamp, each with the count and largest rowid it
    was read with: consecutive intervals' windows share three of their four boundaries, and a run whose
    time stamp still holds as many readings up to the same rowid is the same run (readings are never
    updated: ``ON CONFLICT DO NOTHING``, first write wins; one that arrives late changes both).  Also the
    texts split so far (``_pieces``), so that a new run takes the cached runs' very lists."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[tuple[int, int], tuple[str, list, list, list]]] = {}
        self.split: list[tuple[str, list[str]]] = []


def window_readings(
    connection: Any,
    low: datetime,
    high: datetime,
    since: datetime,
    held: list[str],
    held_json: str,
    cache: RunCache | None = None,
) -> ReadingColumns:
    """The readings stored in ``[low, high]`` and, of the points ``held`` (the factor registers: a register
    reports when it changes, its last value before the window still holds), the last reading in
    ``[since, low)``; ``held_json``: ``held`` as a JSON array (SQLite's parameter); ``cache``: the runs of
    the window read before, reused where unchanged (SQLite)."""
    raw = connection.dialect.name == "sqlite"
    columns = _reading_columns(raw)
    runs = _window_runs(connection, low, high, cache) if raw else None
    rows = _window_rows(connection, low, high, raw) if runs is None else []
    if raw and _SQLITE_JSON:  # the point ids as one JSON parameter, not one bound value each
        rows += connection.connection.driver_connection.execute(
            _HELD_ROWS, (held_json, sqlite_ts(low), sqlite_ts(since))
        ).fetchall()
    else:
        latest = (
            select(Reading.point_id, func.max(Reading.ts).label("ts"))
            .where(Reading.point_id.in_(held), Reading.ts < low, Reading.ts >= since)
            .group_by(Reading.point_id)
            .subquery()
        )
        rows += connection.execute(
            select(*columns).join(
                latest, (Reading.point_id == latest.c.point_id) & (Reading.ts == latest.c.ts)
            )
        ).all()
    return _stored_readings(rows, raw) if runs is None else _stored_runs(runs, rows)


def _reading_columns(raw: bool) -> tuple[Any, ...]:
    """The columns of a stored reading; ``raw`` (SQLite): time and value as the stored text, converted by
    :func:`_stored_readings` (an interval of 10,000 buses reads ~470,000 readings: the per-value type
    processing was most of the read)."""
    if not raw:
        return Reading.point_id, Reading.ts, Reading.value, Reading.quality
    text = (type_coerce(Reading.ts, String), type_coerce(Reading.value, String))
    return Reading.point_id, *text, Reading.quality


def _window_rows(connection: Any, low: datetime, high: datetime, raw: bool) -> list[Any]:
    """The readings stored in ``[low, high]``; ``raw`` (SQLite): as the driver's plain tuples of stored
    text (the same query as the typed one; no result row object per reading)."""
    if not raw:
        return list(
            connection.execute(select(*_reading_columns(raw)).where(Reading.ts >= low, Reading.ts <= high))
        )
    cursor = connection.connection.driver_connection.execute(
        "SELECT point_id, ts, value, quality FROM readings WHERE ts >= ? AND ts <= ?",
        (sqlite_ts(low), sqlite_ts(high)),
    )
    return cursor.fetchall()


_SEPARATOR = "\x1f"  # ASCII unit separator: the columns of a run of one time stamp, joined by SQLite
# the window's readings as one row per time stamp (a window holds a handful): each column of the run
# joined into one text, in the order of the scan (the same for every column of one group).  SQLite's
# driver costs ~0.3 µs a row whatever the row holds; 470,000 readings as rows were most of the read
# (point ids and qualities are text: written only through the typed columns, VARCHAR; a value that is
# not text — None — would be skipped by group_concat: counted, and the rows read instead)
_WINDOW_RUNS = (
    "SELECT ts, count(*), max(rowid), sum(typeof(value) = 'text'), group_concat(point_id, ?),"
    " group_concat(value, ?), group_concat(quality, ?) FROM readings WHERE ts >= ? AND ts <= ? GROUP BY ts"
)
# what a cached run is checked against: ix_readings_ts alone (the rowid is in the index), no table row read
_WINDOW_STAMPS = "SELECT ts, count(*), max(rowid) FROM readings WHERE ts >= ? AND ts <= ? GROUP BY ts"


def _window_runs(
    connection: Any, low: datetime, high: datetime, cache: RunCache | None = None
) -> list[tuple[str, list, list, list]] | None:
    """SQLite: the readings stored in ``[low, high]`` as runs of one time stamp, ``(ts, point ids,
    values, qualities)`` — the same texts as :func:`_window_rows` gives — or None where a run cannot be
    split back exactly (a value that is None or not text, a separator inside a text): then the rows.
    ``cache``: the runs read before, taken again where their time stamp's count and largest rowid are
    unchanged; the others read by their time stamp (the same query over a range of one time stamp)."""
    driver = connection.connection.driver_connection
    bounds = (sqlite_ts(low), sqlite_ts(high))
    if cache is None:
        rows = driver.execute(_WINDOW_RUNS, (_SEPARATOR, _SEPARATOR, _SEPARATOR, *bounds)).fetchall()
        return _split_runs(rows, [])
    known, runs, fresh = cache.runs, [], {}
    for ts, count, top in driver.execute(_WINDOW_STAMPS, bounds).fetchall():
        cached = known.get(ts) if isinstance(ts, str) else None
        if cached is not None and cached[0] == (count, top):
            run = cached[1]
        else:
            rows = driver.execute(_WINDOW_RUNS, (_SEPARATOR, _SEPARATOR, _SEPARATOR, ts, ts)).fetchall()
            split = _split_runs(rows, cache.split)
            if split is None:
                cache.runs, cache.split = {}, []
                return None
            if not split:  # deleted meanwhile
                continue
            (run,), ((_ts, count, top, *_rest),) = split, rows
        fresh[ts] = ((count, top), run)
        runs.append(run)
    cache.runs = fresh
    keep = {id(piece) for _ts, (_key, run) in fresh.items() for piece in (run[1], run[3])}
    cache.split = [(text, pieces) for text, pieces in cache.split if id(pieces) in keep]
    return runs


def _split_runs(rows: list[tuple], split: list[tuple[str, list[str]]]) -> list[tuple] | None:
    """Rows of ``_WINDOW_RUNS`` as runs, or None where one cannot be split back exactly; ``split``: (text,
    its pieces) of the point ids and qualities split so far (extended)."""
    runs = []
    for ts, count, _top, texts, point_ids, values, qualities in rows:
        if texts != count or not isinstance(ts, str):
            return None
        columns = [_pieces(point_ids, split), values.split(_SEPARATOR), _pieces(qualities, split)]
        if any(len(column) != count for column in columns):  # a separator inside a text: more pieces
            return None
        runs.append((ts, *columns))
    return runs


def _pieces(text: str, split: list[tuple[str, list[str]]]) -> list[str]:
    """``text`` split at the separator; a text equal to one split before (a collector sends its points
    in one order at every boundary, their qualities mostly all good) gives that one's pieces — the same
    list, the same strings: no split, and no string to hash or compare again."""
    for earlier, pieces in split:
        if earlier == text:
            return pieces
    pieces = text.split(_SEPARATOR)
    split.append((text, pieces))
    return pieces


# the held registers' last readings before the window (the query of :meth:`MeteringService.readings_for`
# on other databases), their ids as one JSON array: ~9,500 of them at 10,000 buses
_HELD_ROWS = (
    "SELECT r.point_id, r.ts, r.value, r.quality FROM readings AS r JOIN (SELECT point_id, max(ts) AS ts"
    " FROM readings WHERE point_id IN (SELECT value FROM json_each(?)) AND ts < ? AND ts >= ?"
    " GROUP BY point_id) AS latest ON r.point_id = latest.point_id AND r.ts = latest.ts"
)
_SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 38)  # JSON functions built in


def _stored_readings(rows: list[Any], raw: bool) -> ReadingColumns:
    """Rows of :func:`_reading_columns` as columns of readings; the same values as the typed columns give
    (each distinct time stamp converted once: a window holds a handful of them; a value made a
    ``Decimal`` only when used)."""
    if not raw:
        return ReadingColumns(rows)
    return ReadingColumns(rows, _SQLITE_DATETIME)


_SQLITE_DATETIME = functools.partial(UtcDateTime().process_result_value, dialect=None)


def _stored_runs(runs: list[tuple[str, list, list, list]], rows: list[Any]) -> ReadingColumns:
    """Runs of :func:`_window_runs` and rows of :func:`_reading_columns` (SQLite's text) as columns of
    readings: the rows grouped by their time stamp into runs after the others."""
    extra: dict[str, tuple[list, list, list]] = {}
    for point_id, ts, value, quality in rows:
        ids, values, qualities = extra.setdefault(ts, ([], [], []))
        ids.append(point_id)
        values.append(value)
        qualities.append(quality)
    columns = ReadingColumns.of_runs([*runs, *((ts, *run) for ts, run in extra.items())], _SQLITE_DATETIME)
    # every value of the runs is text (``_window_runs``); their qualities looked at once per distinct list
    # (runs of equal quality texts share theirs): nothing invalid and no value missing, every reading counts
    distinct = {id(run[3]): run[3] for run in runs}.values()
    if not any("invalid" in qualities for qualities in distinct) and all(
        value is not None and quality != "invalid" for _point_id, _ts, value, quality in rows
    ):
        columns.all_usable = True
    return columns

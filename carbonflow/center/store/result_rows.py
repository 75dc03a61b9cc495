"""Writing interval results in bulk (recomputation, bench fills): driver-level ``executemany`` of plain
tuples, JSON columns serialised once (or as the record serialised them), element rows given as rows or
as columns (``IntervalRecord.columns``), and element rows replaced in place (``update_rows``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import repeat
from math import copysign
from typing import Any

from sqlalchemy import JSON, Connection, TypeDecorator, delete
from sqlalchemy.orm import Session

from carbonflow.center.store.access import chunks, connection_of
from carbonflow.center.store.chain import INTERVAL, append_links, interval_fields, interval_key
from carbonflow.center.store.engine import Store
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.results import IntervalRecord, header_row
from carbonflow.center.store.schema import RESULT_MODELS, TIME_SERIES_TABLES, Interval

KEY_COLUMNS = ("ts", "level", "interval_s", "element_id")


def insert_results(connection: Connection, records: Sequence[IntervalRecord], *, rows: bool = True) -> None:
    """Store ``records`` (of one level and interval length, none stored yet) as current results: their
    headers with one new link each in the interval chains, and their element rows (unless ``rows`` is
    False: written by ``update_rows``) — in bulk."""
    if not records:
        return
    level, interval_s = records[0].level, records[0].interval_s
    if connection.dialect.name == "postgresql":
        stamps = [record.ts for record in records]
        ensure_partitions(connection, TIME_SERIES_TABLES[1:], months_between(min(stamps), max(stamps)))
    headers = [header_row(record) for record in records]
    links = append_links(
        connection,
        INTERVAL,
        [(interval_key(h["ts"], level, interval_s), interval_fields(h)) for h in headers],
    )
    for header, (seq, digest) in zip(headers, links):
        header["chain_seq"], header["chain_hash"] = seq, digest
    _insert_headers(connection, headers, records)
    if rows:
        for kind, model in RESULT_MODELS.items():
            _insert_rows(connection, model.__table__, records, kind)


def _statement(connection: Connection, table, names: Sequence[str], json_names: Sequence[str] = ()) -> str:
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    postgres = connection.dialect.name == "postgresql"
    markers = [f"{marker}::json" if postgres and name in json_names else marker for name in names]
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(markers)})"  # nosec B608


def _insert_headers(connection: Connection, headers: Sequence[dict[str, Any]], records) -> None:
    """The ``intervals`` rows as one driver-level executemany: JSON columns serialised once (or taken
    as the record serialised them: the origin text its result hash was computed over)."""
    table = Interval.__table__
    dialect = connection.dialect
    names = [column.name for column in table.c]
    json_names = [column.name for column in table.c if isinstance(column.type, JSON)]
    decorated = [column.name for column in table.c if isinstance(column.type, TypeDecorator)]
    rows = []
    for header, record in zip(headers, records):
        texts = record.texts or {}
        values = dict(header)
        for name in json_names:
            values[name] = texts[name] if name in texts else json.dumps(header[name])
        for name in decorated:  # timestamps, the chain hash as bytes
            values[name] = table.c[name].type.process_bind_param(header[name], dialect)
        rows.append(tuple(values[name] for name in names))
    connection.exec_driver_sql(_statement(connection, table, names, json_names), rows)


def _row_tuples(connection: Connection, table, records: Sequence[IntervalRecord], kind: str, names):
    """The element rows of ``kind`` as plain tuples of ``names``: the interval's timestamp converted once
    per interval, not once per row (most of the cost of a bulk write through the ORM's per-row
    parameter processing); rows given as columns are zipped, not looked up."""
    ts_type = table.c.ts.type
    rows: list[tuple[Any, ...]] = []
    for record in records:
        key = {"ts": ts_type.process_bind_param(record.ts, connection.dialect), "level": record.level,
               "interval_s": record.interval_s}  # fmt: skip
        if record.columns is not None:
            columns = record.columns.get(kind, {})
            count = len(columns.get("element_id", ()))
            rows.extend(
                zip(*(repeat(key[name], count) if name in key else columns.get(name, repeat(None, count))
                      for name in names))
            )  # fmt: skip
            continue
        rows.extend(_dict_rows(record.rows.get(kind, []), key, names))
    return rows


def _dict_rows(rows: Sequence[dict[str, Any]], key: dict[str, Any], names: Sequence[str]) -> list[tuple]:
    """Rows given as dicts as tuples of ``names``, the ``key`` columns from ``key``: where the key columns
    lead or close ``names`` (inserts, updates), the rest of each row is taken with one C-level ``map``."""
    free = [name for name in names if name not in key]
    fixed = tuple(key[name] for name in names if name in key)
    if list(names) == [*(name for name in names if name in key), *free]:
        return [fixed + tuple(map(row.get, free)) for row in rows]
    if list(names) == [*free, *(name for name in names if name in key)]:
        return [tuple(map(row.get, free)) + fixed for row in rows]
    return [tuple(key[name] if name in key else row.get(name) for name in names) for row in rows]


def _insert_rows(connection: Connection, table, records: Sequence[IntervalRecord], kind: str) -> None:
    names = [column.name for column in table.c]
    statement = _statement(connection, table, names)
    for page in chunks(_row_tuples(connection, table, records, kind, names), 5000):
        connection.exec_driver_sql(statement, page)


def value_columns(table) -> list[str]:
    """The columns of a result table that ``update_rows`` writes (all but the key), in table order."""
    return [column.name for column in table.c if column.name not in KEY_COLUMNS]


def bound_ts(connection: Connection, model, ts: Any) -> Any:
    """``ts`` as the driver is given it for ``model``'s ``ts`` column (what ``_row_tuples`` writes)."""
    return model.__table__.c.ts.type.process_bind_param(ts, connection.dialect)


def update_rows(
    connection: Connection,
    records: Sequence[IntervalRecord],
    stored: Mapping[str, Mapping[Any, Mapping[str, tuple[Any, ...]]]],
) -> bool:
    """Write the element rows of ``records`` over the stored rows of their intervals, in place: True when
    done, False when not possible (other elements than the stored ones, or a driver that does not count
    the rows of an executemany): the caller then deletes the intervals' rows and inserts them.
    :func:`changed_rows` then :func:`write_changed` (recomputation compares before it takes the write
    lock, store/result_versions.py)."""
    changed = changed_rows(connection, records, stored)
    return changed is not None and write_changed(connection, changed)


def changed_rows(
    connection: Connection,
    records: Sequence[IntervalRecord],
    stored: Mapping[str, Mapping[Any, Mapping[str, tuple[Any, ...]]]],
) -> dict[str, list[tuple[Any, ...]]] | None:
    """The element rows of ``records`` that differ from the stored rows of their intervals, by kind, as
    the ``UPDATE`` of :func:`write_changed` takes them; None when they cannot be updated in place
    (other elements than the stored ones, or a driver that does not count the rows of an executemany).

    ``stored`` holds every stored row of these intervals as read, kind -> ``bound_ts`` -> element ->
    ``(ts, element_id, *value_columns)``: a row whose values are all the same is not written at all (a
    corrected factor changes the carbon of the elements downstream of its unit: 38 % of the reference
    grid's rows in bench/recompute.py); zeros are compared with their sign where the database keeps it
    (PostgreSQL).  The new rows are made in the same layout and compared whole; only the changed ones
    are rearranged for the ``UPDATE``.  In place, no index entry changes (the key stays); a delete and
    an insert touch every index twice."""
    if not connection.dialect.supports_sane_multi_rowcount:
        return None
    total = sum(record.row_count() for record in records)
    if total != sum(len(rows) for by_ts in stored.values() for rows in by_ts.values()):
        return None
    signed_zero = connection.dialect.name != "sqlite"  # SQLite stores -0.0 as 0.0
    changed: dict[str, list[tuple[Any, ...]]] = {}
    for kind, model in RESULT_MODELS.items():
        table = model.__table__
        values = value_columns(table)
        rows: list[tuple[Any, ...]] = []
        by_ts = stored.get(kind, {})
        for record in records:
            ts = bound_ts(connection, model, record.ts)
            old = by_ts.get(ts, {})
            tail = (record.level, record.interval_s)
            for row in _layout_rows(record, kind, ts, values):
                before = old.get(row[1])
                if before is None:
                    return None  # an element the stored results do not have (with equal counts: one missing)
                if row != before or (signed_zero and not _same_zeros(row, before)):
                    rows.append(row[2:] + row[:2] + tail)
        changed[kind] = rows
    return changed


def write_changed(connection: Connection, changed: Mapping[str, Sequence[tuple[Any, ...]]]) -> bool:
    """``UPDATE`` the rows :func:`changed_rows` gave, by key: True when every one was found."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    updated = expected = 0
    keys = ("ts", "element_id", "level", "interval_s")
    for kind, rows in changed.items():
        table = RESULT_MODELS[kind].__table__
        values = value_columns(table)
        statement = (
            f"UPDATE {table.name} SET {', '.join(f'{name} = {marker}' for name in values)} "  # nosec B608
            f"WHERE {' AND '.join(f'{name} = {marker}' for name in keys)}"
        )
        for page in chunks(rows, 5000):
            updated += connection.exec_driver_sql(statement, page).rowcount
        expected += len(rows)
    return updated == expected


def _layout_rows(record: IntervalRecord, kind: str, ts: Any, values: Sequence[str]):
    """The element rows of ``kind`` in ``record`` as ``(ts, element_id, *values)`` tuples (the layout
    ``_replaced_rows`` reads them in), from columns or from row dicts."""
    if record.columns is not None:
        columns = record.columns.get(kind, {})
        ids = columns.get("element_id", ())
        count = len(ids)
        return zip(repeat(ts, count), ids, *(columns.get(name, repeat(None, count)) for name in values))
    return ((ts, row.get("element_id"), *map(row.get, values)) for row in record.rows.get(kind, []))


def _same_zeros(new: tuple[Any, ...], old: tuple[Any, ...]) -> bool:
    """Whether the zeros of ``new`` (equal to ``old``) have the signs of ``old``'s: writing ``new`` over
    ``old`` would store the very same values."""
    if 0.0 not in new:
        return True
    zeros = [(a, b) for a, b in zip(new, old) if type(a) is float and a == 0.0]
    return all(copysign(1.0, a) == copysign(1.0, b) for a, b in zeros)


def save_interval(target: Store | Session | Connection, record: IntervalRecord) -> None:
    """Store (or replace: a recomputation wins) one interval and all its element rows: the rows written
    as plain tuples in one driver-level executemany per table (:func:`insert_results`; through
    the ORM's per-row parameter processing, 118,000 rows of a 10,000-bus grid took most of a second)."""
    with connection_of(target, write=True) as connection:
        for model in (Interval, *RESULT_MODELS.values()):
            connection.execute(
                delete(model).where(
                    model.ts == record.ts, model.level == record.level, model.interval_s == record.interval_s
                )
            )
        # a new link in the interval's chain of versions (the replaced one is kept by save_new_version)
        insert_results(connection, [record])

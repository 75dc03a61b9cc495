"""Chaining the rows stored before the chains existed (run once, by migration 0011).

Without it every reading, interval, release and audit entry of an upgraded database would be reported
``inserted``.  The order stands in for the insertion order that was never recorded: readings by
``received_at`` then ``ts`` per point, interval versions by version number (the current one last),
releases and audit entries by id.  Only the columns present at revision 0011 are named, so later
migrations adding columns to these tables do not break this one.  Tables are streamed and updated in
pages; memory holds one interval's versions or one page of updates.  The updates touch only the chain
columns, never a key or what a pending read orders by, so reading and updating a table on one connection
is safe on both backends (PostgreSQL's cursor reads a snapshot; SQLite allows updates of rows under a
pending read that leave their keys alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, select, update

from carbonflow.center.store.access import stream
from carbonflow.center.store.chain import (
    AUDIT,
    GENESIS,
    INTERVAL,
    READING,
    RELEASE,
    ChainHead,
    audit_fields,
    interval_fields,
    interval_key,
    link_hash,
    reading_fields,
    release_fields,
)
from carbonflow.center.store.reports import Release
from carbonflow.center.store.schema import AuditEntry, Interval, Reading
from carbonflow.center.store.versions import IntervalVersion, versions_by_ts

UPDATE_PAGE = 1000


class _Pages:
    """Row updates (by primary key) sent ``UPDATE_PAGE`` at a time."""

    def __init__(self, connection: Connection, table: Table, keys: tuple[str, ...]) -> None:
        self.connection, self.rows = connection, []
        self.statement = (
            update(table)
            .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
            .values(chain_seq=bindparam("s"), chain_hash=bindparam("h"))
        )

    def add(self, key_values: dict[str, Any], seq: int, digest: str) -> None:
        self.rows.append({**{f"k_{k}": v for k, v in key_values.items()}, "s": seq, "h": digest})
        if len(self.rows) >= UPDATE_PAGE:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.connection.execute(self.statement, self.rows)
            self.rows = []


def _chain(
    connection: Connection,
    kind: str,
    rows: Iterator[tuple[str, list[Any], dict[str, Any], Table]],
    pages: dict[str, _Pages],
) -> None:
    """Link ``(chain key, fields, primary key values, table)`` rows, grouped by chain key, in order."""
    heads = []
    for key, group in groupby(rows, key=lambda row: row[0]):
        seq, previous = 0, GENESIS
        for _key, fields, primary, table in group:
            seq += 1
            previous = link_hash(kind, fields, seq, previous)
            pages[table.name].add(primary, seq, previous)
        heads.append(
            {
                "kind": kind,
                "key": key,
                "seq": seq,
                "hash": previous,
                "anchor_seq": 0,
                "anchor_hash": GENESIS,
                "updated_at": datetime.now(UTC),
            }
        )
        if len(heads) >= UPDATE_PAGE:
            connection.execute(ChainHead.__table__.insert(), heads)
            heads = []
    if heads:
        connection.execute(ChainHead.__table__.insert(), heads)
    for page in pages.values():
        page.flush()


def _readings(connection: Connection) -> Iterator[tuple[str, list[Any], dict[str, Any], Table]]:
    table = Reading.__table__
    c = table.c
    query = select(c.point_id, c.ts, c.value, c.quality).order_by(c.point_id, c.received_at, c.ts)
    for row in stream(connection, query):
        fields = reading_fields(row.point_id, row.ts, row.value, row.quality)
        yield row.point_id, fields, {"point_id": row.point_id, "ts": row.ts}, table


def _intervals(connection: Connection) -> Iterator[tuple[str, list[Any], dict[str, Any], Table]]:
    names = ("ts", "level", "interval_s", "hash", "totals", "estimation", "created_at")
    for row, current in versions_by_ts(connection, names):
        primary = {"ts": row.ts, "level": row.level, "interval_s": row.interval_s}
        if not current:
            primary["version"] = row.version
        table = Interval.__table__ if current else IntervalVersion.__table__
        yield interval_key(row.ts, row.level, row.interval_s), interval_fields(row._mapping), primary, table


def _single(table: Table, fields: Callable[[Any], list[Any]], names: tuple[str, ...]):
    def rows(connection: Connection) -> Iterator[tuple[str, list[Any], dict[str, Any], Table]]:
        query = select(*(table.c[n] for n in names)).order_by(table.c.id)
        for row in stream(connection, query):
            yield "", fields(row._mapping), {"id": row.id}, table

    return rows


def chain_existing(connection: Connection) -> None:
    """Link every stored row of the chained tables; heads made.  Expects no chains yet."""
    release_names = (
        "id",
        "period",
        "start",
        "min_users",
        "data_version",
        "sha256",
        "note",
        "actor",
        "created_at",
    )
    audit_names = ("id", "ts", "actor", "action", "object", "detail")
    plans = (
        (READING, _readings, {"readings": ("point_id", "ts")}),
        (
            INTERVAL,
            _intervals,
            {
                "interval_versions": ("ts", "level", "interval_s", "version"),
                "intervals": ("ts", "level", "interval_s"),
            },
        ),
        (RELEASE, _single(Release.__table__, release_fields, release_names), {"releases": ("id",)}),
        (AUDIT, _single(AuditEntry.__table__, audit_fields, audit_names), {"audit": ("id",)}),
    )
    tables = {
        t.name: t
        for t in (
            Reading.__table__,
            Interval.__table__,
            IntervalVersion.__table__,
            Release.__table__,
            AuditEntry.__table__,
        )
    }
    for kind, rows, keyed in plans:
        pages = {name: _Pages(connection, tables[name], keys) for name, keys in keyed.items()}
        _chain(connection, kind, rows(connection), pages)

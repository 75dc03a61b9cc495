"""PostgreSQL monthly partitions of the time-series tables (``schema.TIME_SERIES_TABLES``).

Partitions are named ``<table>_pYYYYMM`` and hold ``[first of month, first of next month)`` in UTC.
They are created ahead (this month and ``MONTHS_AHEAD`` more, at migration, at store open and at purge)
and on demand for the months a batch or an interval touches, so an insert never finds no partition.
Retention drops whole partitions (instant, no vacuum) and deletes only inside the boundary month.
No DEFAULT partition: a row there would block creating its month's partition later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text

from carbonflow.center.store.schema import TIME_SERIES_TABLES

MONTHS_AHEAD = 3
PARTITION_LOCK_KEY = 0x63665F70617274  # "cf_part": the advisory lock of partition creators
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})(?P<month>\d{2})$")


def month_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def months_between(first: datetime, last: datetime) -> list[datetime]:
    """Every month start from ``first``'s month to ``last``'s month, both included."""
    months, month = [], month_start(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def existing_partitions(connection: Connection, table: str) -> dict[str, datetime]:
    """Partitions of ``table`` in the current schema: name → month start."""
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE p.relname = :table AND n.nspname = current_schema()"
        ),
        {"table": table},
    ).scalars()
    found = {}
    for name in rows:
        match = _NAME.match(name)
        if match and match["table"] == table:
            found[name] = datetime(int(match["year"]), int(match["month"]), 1, tzinfo=UTC)
    return found


def ensure_partitions(connection: Connection, tables: Iterable[str], months: Iterable[datetime]) -> list[str]:
    """Create the missing monthly partitions; returns the names created."""
    months = sorted(set(months))
    created = []
    locked = False
    for table in tables:
        have = existing_partitions(connection, table)
        missing = [month for month in months if partition_name(table, month) not in have]
        if missing and not locked:
            # Two transactions creating the same partition (two batches of a month not yet seen, e.g. a
            # backfill) would both pass the check above, and the later CREATE ... IF NOT EXISTS fails
            # with DuplicateTable once the first commits: creators queue on this lock (held until
            # commit) and look again once they hold it.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
            locked = True
            have = existing_partitions(connection, table)
            missing = [month for month in months if partition_name(table, month) not in have]
        for month in missing:
            name = partition_name(table, month)
            connection.execute(
                text(
                    f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                    f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
                )
            )
            created.append(name)
    return created


def ensure_partitions_ahead(connection: Connection, now: datetime | None = None) -> list[str]:
    """This month, last month (late data) and ``MONTHS_AHEAD`` months ahead, for every time-series table."""
    now = now or datetime.now(UTC)
    this_month = month_start(now)
    previous = month_start(this_month - timedelta(days=1))
    months = [previous, this_month]
    for _ in range(MONTHS_AHEAD):
        months.append(next_month(months[-1]))
    return ensure_partitions(connection, TIME_SERIES_TABLES, months)


def drop_partitions_before(connection: Connection, table: str, cutoff: datetime) -> list[str]:
    """Drop every partition of ``table`` whose whole month ends at or before ``cutoff``."""
    dropped = []
    for name, month in sorted(existing_partitions(connection, table).items(), key=lambda item: item[1]):
        if next_month(month) <= cutoff:
            connection.execute(text(f'DROP TABLE "{name}"'))
            dropped.append(name)
    return dropped

"""Versions of an interval's result: metering again (late readings, a correction) never erases.

``intervals`` and the result tables hold the current version of every interval; when an interval is
metered again, the version it replaces is kept in ``interval_versions`` — its hash, totals, estimation
(completeness, estimates, uncertainty) and when it was made — with the reason it was replaced.  The
current version's number is ``estimation["version"]`` (1 for the first metering).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import JSON, Connection, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import connection_of, stream
from carbonflow.center.store.engine import Store
from carbonflow.center.store.result_rows import save_interval
from carbonflow.center.store.results import IntervalRecord
from carbonflow.center.store.schema import Base, Interval
from carbonflow.center.store.types import Sha256, UtcDateTime


class IntervalVersion(Base):
    __tablename__ = "interval_versions"
    __table_args__ = (Index("ix_interval_versions_ts", "ts"),)

    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    level: Mapped[str] = mapped_column(String(100), primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    totals: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    estimation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    superseded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    chain_seq: Mapped[int | None] = mapped_column(Integer)  # the link the version had when current
    chain_hash: Mapped[str | None] = mapped_column(Sha256)


@dataclass(frozen=True)
class StoredVersion:
    version: int
    hash: str
    totals: dict[str, Any]
    estimation: dict[str, Any]
    created_at: datetime
    superseded_at: datetime | None  # None: the current version
    reason: str | None


def version_of(estimation: dict[str, Any] | None) -> int:
    return int((estimation or {}).get("version", 1))


def save_new_version(store: Store, record: IntervalRecord, reason: str, now: datetime | None = None) -> int:
    """Store ``record`` as the interval's current version, keeping the one it replaces; its number."""
    key = (Interval.ts == record.ts, Interval.level == record.level, Interval.interval_s == record.interval_s)
    with store.write() as connection:
        current = connection.execute(
            select(
                Interval.hash,
                Interval.totals,
                Interval.estimation,
                Interval.created_at,
                Interval.chain_seq,
                Interval.chain_hash,
            ).where(*key)
        ).first()
        version = 1
        if current is not None:
            version = version_of(current.estimation) + 1
            connection.execute(
                IntervalVersion.__table__.insert(),
                {
                    "ts": record.ts,
                    "level": record.level,
                    "interval_s": record.interval_s,
                    "version": version - 1,
                    "hash": current.hash,
                    "totals": current.totals,
                    "estimation": current.estimation,
                    "created_at": current.created_at,
                    "superseded_at": now or datetime.now(UTC),
                    "reason": reason,
                    "chain_seq": current.chain_seq,
                    "chain_hash": current.chain_hash,
                },
            )
        record.estimation = {**(record.estimation or {}), "version": version}
        save_interval(connection, record)
    return version


def interval_versions(store: Store, ts: datetime, level: str = "") -> list[StoredVersion]:
    """Every version of the interval ending at ``ts``, oldest first, the current one last."""
    with connection_of(store, write=False) as connection:
        old = connection.execute(
            select(IntervalVersion.__table__)
            .where(IntervalVersion.ts == ts, IntervalVersion.level == level)
            .order_by(IntervalVersion.version)
        ).all()
        versions = [
            StoredVersion(
                v.version, v.hash, v.totals or {}, v.estimation or {}, v.created_at, v.superseded_at, v.reason
            )
            for v in old
        ]
        current = connection.execute(
            select(Interval.hash, Interval.totals, Interval.estimation, Interval.created_at).where(
                Interval.ts == ts, Interval.level == level
            )
        ).first()
    if current is not None:
        versions.append(
            StoredVersion(
                version_of(current.estimation),
                current.hash,
                current.totals or {},
                current.estimation or {},
                current.created_at,
                None,
                None,
            )
        )
    return versions


def _tagged(rows: Iterator[Any], current: bool) -> Iterator[tuple[Any, bool]]:
    # a function, not a generator expression in the loop: that would see the loop's last ``current``
    return ((row, current) for row in rows)


def versions_by_ts(
    connection: Connection, columns: tuple[str, ...], *, chained: bool | None = None
) -> Iterator[tuple[Any, bool]]:
    """Every stored version — old ones (``interval_versions``, with ``version``) and current ones
    (``intervals``) — as ``(row, is_current)``, streamed in ts order and, within a ts, by level,
    interval_s, then old before current by version number.  Sorted here within a ts, so the order never
    depends on the database's collation of ``level``.  ``chained``: only rows with (True) / without
    (False) a chain link."""
    streams = []
    for table, current in ((IntervalVersion.__table__, False), (Interval.__table__, True)):
        query = select(*(table.c[n] for n in columns)).order_by(table.c.ts)
        if not current:
            query = query.add_columns(table.c.version)
        if chained is not None:
            query = query.where(table.c.chain_seq.is_not(None) if chained else table.c.chain_seq.is_(None))
        streams.append(_tagged(stream(connection, query), current))
    for _ts, pairs in groupby(
        heapq.merge(*streams, key=lambda pair: pair[0].ts), key=lambda pair: pair[0].ts
    ):
        yield from sorted(
            pairs, key=lambda p: (p[0].level, p[0].interval_s, p[1], 0 if p[1] else p[0].version)
        )

"""Retention: readings, batches and interval results older than ``days`` (default 400) are removed.

SQLite: ``DELETE ... WHERE ts < cutoff`` (indexed on ts).  PostgreSQL: monthly partitions entirely
before the cutoff are dropped (instant, no bloat), the rows of the boundary month before the cutoff are
deleted, and the partitions ahead are topped up.  The cutoff is exact on both: nothing at or after it
is touched.  Commands and the audit log are kept (they are the maintenance record).  Superseded
interval versions go with their interval, devices' clock offsets over time (``clock_offsets``) too.

Before anything is deleted the links it carries are recorded (``chain.retire_links``): the hash chains
stay verifiable and ``carbonflow audit verify`` does not report retention as tampering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, select

from carbonflow.center.store.access import stream
from carbonflow.center.store.chain import INTERVAL, READING, interval_key, retire_links
from carbonflow.center.store.engine import Store
from carbonflow.center.store.partitions import drop_partitions_before, ensure_partitions_ahead
from carbonflow.center.store.result_versions import ArchivedInterval, ArchivedResult
from carbonflow.center.store.schema import RESULT_MODELS, Batch, ClockOffset, Interval, Reading
from carbonflow.center.store.versions import IntervalVersion

DEFAULT_RETENTION_DAYS = 400


@dataclass
class PurgeReport:
    cutoff: datetime
    rows_deleted: dict[str, int] = field(default_factory=dict)
    partitions_dropped: list[str] = field(default_factory=list)
    links_retired: int = 0  # hash-chain links recorded as removed by retention


def purge_older_than(
    store: Store, days: int = DEFAULT_RETENTION_DAYS, *, now: datetime | None = None
) -> PurgeReport:
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, not {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    report = PurgeReport(cutoff=cutoff)
    time_series = (Reading, Interval, *RESULT_MODELS.values())
    with store.write() as connection:
        report.links_retired = _retire(connection, cutoff)
        if connection.dialect.name == "postgresql":
            for model in time_series:
                report.partitions_dropped += drop_partitions_before(connection, model.__tablename__, cutoff)
        for model in time_series:
            report.rows_deleted[model.__tablename__] = connection.execute(
                delete(model).where(model.ts < cutoff)
            ).rowcount
        # older versions of the results, and the devices' clock offsets over time
        for model in (IntervalVersion, ArchivedInterval, ArchivedResult, ClockOffset):
            report.rows_deleted[model.__tablename__] = connection.execute(
                delete(model).where(model.ts < cutoff)
            ).rowcount
        report.rows_deleted["batches"] = connection.execute(
            delete(Batch).where(Batch.received_at < cutoff)
        ).rowcount
        if connection.dialect.name == "postgresql":
            ensure_partitions_ahead(connection, now)
    return report


def _retire(connection: Connection, cutoff: datetime) -> int:
    """Record the chain links of the rows about to go: readings streamed point by point, interval
    versions (a few per interval) grouped here."""
    c = Reading.__table__.c
    readings = stream(
        connection,
        select(c.point_id, c.chain_seq, c.chain_hash, c.ts)
        .where(c.ts < cutoff, c.chain_seq.is_not(None))
        .order_by(c.point_id, c.chain_seq),
    )
    count = retire_links(connection, READING, (tuple(row) for row in readings))
    versions = []
    for model in (IntervalVersion, Interval):
        t = model.__table__.c
        query = select(t.ts, t.level, t.interval_s, t.chain_seq, t.chain_hash).where(
            t.ts < cutoff, t.chain_seq.is_not(None)
        )
        versions += [
            (interval_key(r.ts, r.level, r.interval_s), r.chain_seq, r.chain_hash, r.ts)
            for r in connection.execute(query)
        ]
    return count + retire_links(connection, INTERVAL, sorted(versions))

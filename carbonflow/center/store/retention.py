"""Retention: readings, batches and interval results older than ``days`` (default 400) are removed.

SQLite: ``DELETE ... WHERE ts < cutoff`` (indexed on ts).  PostgreSQL: monthly partitions entirely
before the cutoff are dropped (instant, no bloat), the rows of the boundary month before the cutoff are
deleted, and the partitions ahead are topped up.  The cutoff is exact on both: nothing at or after it
is touched.  Commands and the audit log are kept (they are the maintenance record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from carbonflow.center.store.engine import Store
from carbonflow.center.store.partitions import drop_partitions_before, ensure_partitions_ahead
from carbonflow.center.store.schema import RESULT_MODELS, Batch, Interval, Reading

DEFAULT_RETENTION_DAYS = 400


@dataclass
class PurgeReport:
    cutoff: datetime
    rows_deleted: dict[str, int] = field(default_factory=dict)
    partitions_dropped: list[str] = field(default_factory=list)


def purge_older_than(
    store: Store, days: int = DEFAULT_RETENTION_DAYS, *, now: datetime | None = None
) -> PurgeReport:
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, not {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    report = PurgeReport(cutoff=cutoff)
    time_series = (Reading, Interval, *RESULT_MODELS.values())
    with store.write() as connection:
        if connection.dialect.name == "postgresql":
            for model in time_series:
                report.partitions_dropped += drop_partitions_before(connection, model.__tablename__, cutoff)
        for model in time_series:
            report.rows_deleted[model.__tablename__] = connection.execute(
                delete(model).where(model.ts < cutoff)
            ).rowcount
        report.rows_deleted["batches"] = connection.execute(
            delete(Batch).where(Batch.received_at < cutoff)
        ).rowcount
        if connection.dialect.name == "postgresql":
            ensure_partitions_ahead(connection, now)
    return report

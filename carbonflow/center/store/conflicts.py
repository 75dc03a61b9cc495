"""Readings that arrive again for a ``(point, ts)`` already stored, with a different value.

A replay of the same value is a duplicate (idempotent ingest).  A *different* value for the same point
and time — two runs of a collector overlapping, a meter replaced without a new point, a tampered outbox
— is never resolved silently: the first stored value stays (the interval results were metered from it)
and the offer is recorded here with its batch, and reported in the batch's acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Index, String, select, tuple_
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import chunks, connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import ID, Base, Reading
from carbonflow.center.store.types import ExactDecimal, UtcDateTime, utc


class ReadingConflict(Base):
    __tablename__ = "reading_conflicts"
    __table_args__ = (Index("ix_reading_conflicts_received_at", "received_at"),)

    point_id: Mapped[str] = mapped_column(ID, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    stored_value: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    offered_value: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    collector_id: Mapped[str | None] = mapped_column(ID)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class Conflict:
    point_id: str
    ts: datetime
    stored_value: Decimal | None
    offered_value: Decimal | None
    batch_id: str
    collector_id: str | None
    received_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "ts": self.ts.isoformat(),
            "stored_value": None if self.stored_value is None else format(self.stored_value, "f"),
            "offered_value": None if self.offered_value is None else format(self.offered_value, "f"),
            "batch_id": self.batch_id,
            "collector_id": self.collector_id,
            "received_at": self.received_at.isoformat(),
        }


def record_conflicts(
    connection: Connection, offered: list[dict[str, Any]], collector_id: str, received_at: datetime
) -> int:
    """After a batch with duplicates was stored: every offered row whose value differs from the stored
    one (stored before, or by an earlier row of the same batch) is recorded; returns how many."""
    by_key: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for row in offered:
        by_key.setdefault((row["point_id"], utc(row["ts"])), []).append(row)
    conflicts: dict[tuple[str, datetime], dict[str, Any]] = {}
    for page in chunks(list(by_key), 500):
        existing = connection.execute(
            select(Reading.point_id, Reading.ts, Reading.value).where(
                tuple_(Reading.point_id, Reading.ts).in_(page)
            )
        ).all()
        for point_id, ts, value in existing:
            key = (point_id, utc(ts))
            for row in by_key[key]:
                offered_value = None if row["value"] is None else Decimal(str(row["value"]))
                if offered_value != value and key not in conflicts:
                    conflicts[key] = {
                        "point_id": point_id,
                        "ts": ts,
                        "batch_id": row["batch_id"],
                        "stored_value": value,
                        "offered_value": offered_value,
                        "collector_id": collector_id,
                        "received_at": received_at,
                    }
    if conflicts:
        connection.execute(ReadingConflict.__table__.insert(), list(conflicts.values()))
    return len(conflicts)


def list_conflicts(store: Store, since: datetime | None = None, limit: int = 1000) -> list[Conflict]:
    query = select(ReadingConflict.__table__).order_by(ReadingConflict.received_at.desc()).limit(limit)
    if since is not None:
        query = query.where(ReadingConflict.received_at >= since)
    with connection_of(store, write=False) as connection:
        rows = connection.execute(query).all()
    return [
        Conflict(r.point_id, r.ts, r.stored_value, r.offered_value, r.batch_id, r.collector_id, r.received_at)
        for r in rows
    ]

"""Reading the audit log (written by ``maintenance.record_audit``): newest first, filtered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import AuditEntry


def list_audit(
    target: Store | Session | Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    query = select(AuditEntry.__table__).order_by(AuditEntry.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if start is not None:
        query = query.where(AuditEntry.ts >= start)
    if end is not None:
        query = query.where(AuditEntry.ts < end)
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]

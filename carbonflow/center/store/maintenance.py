"""Remote-maintenance commands with persistent state, and the audit log.

Lifecycle: ``queued`` → ``sent`` (handed to the collector: HTTP poll or MQTT publish; ``attempts`` + 1)
→ ``acknowledged`` | ``failed`` (the collector's ``CommandResult``).  A command sent but not answered
within a timeout goes back to ``queued`` (``requeue_unanswered``) until ``max_attempts``, then
``failed``; collectors must therefore execute a command id at most once (they remember ids).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.chain import AUDIT, append_one, audit_fields
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import NotFoundError, UnknownCollectorError
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import AuditEntry, Collector, Device
from carbonflow.center.store.schema import Command as CommandRow
from carbonflow.messages.c4 import Command, CommandResult


def _as_message(row: CommandRow | Any) -> Command:
    return Command(
        command_id=row.id,
        collector_id=row.collector_id,
        kind=row.kind,
        device=row.device_id,
        params=row.params or {},
        created_at=row.created_at,
    )


def queue_command(
    target: Store | Session | Connection,
    collector_id: str,
    kind: str,
    *,
    device_id: str | None = None,
    params: dict[str, Any] | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Command:
    now = now or datetime.now(UTC)
    command = Command(
        command_id=uuid.uuid4().hex,
        collector_id=collector_id,
        kind=kind,  # validated by the Command model
        device=device_id,
        params=params or {},
        created_at=now,
    )
    with connection_of(target, write=True) as connection:
        if connection.execute(select(Collector.id).where(Collector.id == collector_id)).first() is None:
            raise UnknownCollectorError(f"unknown collector {collector_id!r}")
        connection.execute(
            CommandRow.__table__.insert(),
            {
                "id": command.command_id,
                "collector_id": collector_id,
                "device_id": device_id,
                "kind": kind,
                "params": command.params,
                "status": "queued",
                "attempts": 0,
                "actor": actor,
                "created_at": now,
                "updated_at": now,
            },
        )
        _audit(
            connection,
            actor or "system",
            "command.queue",
            command.command_id,
            {"kind": kind, "device": device_id},
        )
    return command


def take_queued_commands(
    target: Store | Session | Connection, collector_id: str, *, now: datetime | None = None
) -> list[Command]:
    """The collector's queued commands, oldest first, marked ``sent`` in the same transaction."""
    now = now or datetime.now(UTC)
    with connection_of(target, write=True) as connection:
        query = (
            select(CommandRow.__table__)
            .where(CommandRow.collector_id == collector_id, CommandRow.status == "queued")
            .order_by(CommandRow.created_at, CommandRow.id)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # two pollers never take the same command
        rows = connection.execute(query).all()
        for row in rows:
            connection.execute(
                update(CommandRow)
                .where(CommandRow.id == row.id)
                .values(status="sent", attempts=row.attempts + 1, updated_at=now)
            )
    return [_as_message(row) for row in rows]


def record_command_result(
    target: Store | Session | Connection, collector_id: str, result: CommandResult
) -> None:
    with connection_of(target, write=True) as connection:
        owner = connection.execute(
            select(CommandRow.collector_id).where(CommandRow.id == result.command_id)
        ).scalar_one_or_none()
        if owner is None or owner != collector_id:
            raise NotFoundError(f"unknown command {result.command_id!r} for collector {collector_id!r}")
        connection.execute(
            update(CommandRow)
            .where(CommandRow.id == result.command_id)
            .values(status=result.status, detail=result.detail, updated_at=result.finished_at)
        )
        _audit(
            connection,
            f"collector:{collector_id}",
            f"command.{result.status}",
            result.command_id,
            {"detail": result.detail},
        )


def requeue_unanswered(
    target: Store | Session | Connection,
    timeout: timedelta,
    *,
    max_attempts: int = 3,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Sent commands unanswered for ``timeout``: back to queued, or failed after ``max_attempts``."""
    now = now or datetime.now(UTC)
    stale = (CommandRow.status == "sent", CommandRow.updated_at < now - timeout)
    with connection_of(target, write=True) as connection:
        failed = connection.execute(
            update(CommandRow)
            .where(*stale, CommandRow.attempts >= max_attempts)
            .values(status="failed", detail=f"no answer after {max_attempts} attempts", updated_at=now)
        ).rowcount
        requeued = connection.execute(
            update(CommandRow)
            .where(*stale, CommandRow.attempts < max_attempts)
            .values(status="queued", updated_at=now)
        ).rowcount
    return requeued, failed


def in_scope(query, scope: RowScope | None):
    """``query`` (over commands) restricted to the commands in ``scope``: a command's region is its
    device's (a command without a device, e.g. ``reload_config``: its collector's)."""
    if scope is None:
        return query
    return query.where(
        or_(
            and_(
                CommandRow.device_id.is_not(None), scope.names(CommandRow.device_id, Device.id, Device.region)
            ),
            and_(
                CommandRow.device_id.is_(None),
                scope.names(CommandRow.collector_id, Collector.id, Collector.region),
            ),
        )
    )


def list_commands(
    target: Store | Session | Connection,
    *,
    collector_id: str | None = None,
    status: str | None = None,
    device_id: str | None = None,
    exclude_kinds: Sequence[str] = (),
    scope: RowScope | None = None,
) -> list[dict[str, Any]]:
    """Commands, oldest first; ``exclude_kinds`` leaves routine ones out (in the database: a year of
    factor downloads is millions of rows)."""
    query = select(CommandRow.__table__).order_by(CommandRow.created_at)
    if collector_id is not None:
        query = query.where(CommandRow.collector_id == collector_id)
    if status is not None:
        query = query.where(CommandRow.status == status)
    if device_id is not None:
        query = query.where(CommandRow.device_id == device_id)
    if exclude_kinds:
        query = query.where(CommandRow.kind.not_in(list(exclude_kinds)))
    query = in_scope(query, scope)  # last: SQLite tests the cheap conditions first
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def command_summary(
    target: Store | Session | Connection, *, scope: RowScope | None = None
) -> list[dict[str, Any]]:
    """Per command kind: how many, by status, and the newest - routine commands (a factor download per
    electric-carbon meter and interval) summed up instead of listed one by one."""
    query = in_scope(
        select(
            CommandRow.kind, CommandRow.status, func.count().label("count"), func.max(CommandRow.created_at)
        ).group_by(CommandRow.kind, CommandRow.status),
        scope,
    )
    kinds: dict[str, dict[str, Any]] = {}
    with connection_of(target, write=False) as connection:
        for kind, status, count, newest in connection.execute(query):
            entry = kinds.setdefault(
                kind, {"kind": kind, "count": 0, "by_status": {}, "last_created_at": None}
            )
            entry["count"] += count
            entry["by_status"][status] = count
            if newest is not None and (entry["last_created_at"] is None or newest > entry["last_created_at"]):
                entry["last_created_at"] = newest
    return sorted(kinds.values(), key=lambda entry: entry["kind"])


def _audit(connection: Connection, actor: str, action: str, obj: str | None, detail: dict | None) -> None:
    row = {"ts": datetime.now(UTC), "actor": actor, "action": action, "object": obj, "detail": detail}
    connection.execute(
        AuditEntry.__table__.insert(), {**row, **append_one(connection, AUDIT, "", audit_fields(row))}
    )


def record_audit(
    target: Store | Session | Connection,
    actor: str,
    action: str,
    obj: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    with connection_of(target, write=True) as connection:
        _audit(connection, actor, action, obj, detail)

"""Collectors as the center maintains them: status (from batches and the collector's own status report)
and versioned configurations pushed by the center.

A configuration version is the TOML text a user posted, validated by the collector's own loader before
it is stored; versions are immutable (a version id is never reused for other text) and each push queues
a ``reload_config`` command carrying ``{"version", "url"}`` for the collector to fetch it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import NotFoundError, StoreError, UnknownCollectorError
from carbonflow.center.store.maintenance import _audit, queue_command
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Collector, CollectorConfigVersion, Device
from carbonflow.center.store.schema import Command as CommandRow
from carbonflow.messages.c4 import Command

Target = Store | Session | Connection


class VersionConflictError(StoreError):
    status_code = 409


def collectors_overview(target: Target, *, scope: RowScope | None = None) -> list[dict[str, Any]]:
    """Every collector (in ``scope``; secret left out) with device and open-command counts and its latest
    pushed version."""
    columns = [c for c in Collector.__table__.c if c.name != "secret"]
    query = select(*columns).order_by(Collector.id)
    if scope is not None:
        query = query.where(scope.clause(Collector.region))
    with connection_of(target, write=False) as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
        devices = dict(
            connection.execute(select(Device.collector_id, func.count()).group_by(Device.collector_id)).all()
        )
        open_commands: dict[str, dict[str, int]] = {}
        for collector_id, status, count in connection.execute(
            select(CommandRow.collector_id, CommandRow.status, func.count())
            .where(CommandRow.status.in_(("queued", "sent")))
            .group_by(CommandRow.collector_id, CommandRow.status)
        ):
            open_commands.setdefault(collector_id, {})[status] = count
        latest = {}
        for collector_id, version, _created_at in connection.execute(
            select(
                CollectorConfigVersion.collector_id,
                CollectorConfigVersion.version,
                CollectorConfigVersion.created_at,
            ).order_by(CollectorConfigVersion.created_at)
        ):
            latest[collector_id] = version
    for row in rows:
        row["devices"] = devices.get(row["id"], 0)
        row["commands_queued"] = open_commands.get(row["id"], {}).get("queued", 0)
        row["commands_sent"] = open_commands.get(row["id"], {}).get("sent", 0)
        row["pushed_config_version"] = latest.get(row["id"])
    return rows


def collector_exists(target: Target, collector_id: str) -> bool:
    with connection_of(target, write=False) as connection:
        found = connection.execute(select(Collector.id).where(Collector.id == collector_id)).first()
    return found is not None


def collector_status_report(target: Target, collector_id: str) -> dict[str, Any] | None:
    """The collector's own latest status report as it sent it (signature left out), if any."""
    with connection_of(target, write=False) as connection:
        return connection.execute(
            select(Collector.status_report).where(Collector.id == collector_id)
        ).scalar_one_or_none()


def record_status_report(
    target: Target, collector_id: str, report: dict[str, Any], *, received_at: datetime | None = None
) -> None:
    """Keep the collector's own status report (outbox state, last send error, devices)."""
    received_at = received_at or datetime.now(UTC)
    report = {k: v for k, v in report.items() if k != "signature"}
    with connection_of(target, write=True) as connection:
        changed = connection.execute(
            update(Collector)
            .where(Collector.id == collector_id)
            .values(status_report=report, reported_at=received_at)
        ).rowcount
        if not changed:
            raise UnknownCollectorError(f"unknown collector {collector_id!r}")


def next_config_version(target: Target, collector_id: str) -> str:
    """'1', '2', ... : one more than the highest numeric version pushed to this collector or reported
    by it (a collector started from a local file numbered "3" gets "4" next)."""
    with connection_of(target, write=False) as connection:
        versions = list(
            connection.execute(
                select(CollectorConfigVersion.version).where(
                    CollectorConfigVersion.collector_id == collector_id
                )
            ).scalars()
        )
        versions.append(
            connection.execute(select(Collector.config_version).where(Collector.id == collector_id)).scalar()
            or ""
        )
        numbers = [int(v) for v in versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def save_collector_config(
    target: Target,
    collector_id: str,
    version: str,
    toml: str,
    *,
    actor: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a (validated) configuration version; the same text again is a no-op, other text a conflict."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(toml.encode("utf-8")).hexdigest()
    with connection_of(target, write=True) as connection:
        if connection.execute(select(Collector.id).where(Collector.id == collector_id)).first() is None:
            raise UnknownCollectorError(f"unknown collector {collector_id!r}")
        seen = connection.execute(
            select(CollectorConfigVersion.sha256).where(
                CollectorConfigVersion.collector_id == collector_id, CollectorConfigVersion.version == version
            )
        ).scalar_one_or_none()
        if seen is not None and seen != digest:
            raise VersionConflictError(
                f"configuration version {version!r} of collector {collector_id!r} exists with other content"
            )
        if seen is None:
            connection.execute(
                CollectorConfigVersion.__table__.insert(),
                {
                    "collector_id": collector_id,
                    "version": version,
                    "toml": toml,
                    "sha256": digest,
                    "created_at": now,
                    "actor": actor,
                },
            )
            _audit(connection, actor or "system", "config.push", collector_id, {"version": version})
    return {"collector_id": collector_id, "version": version, "sha256": digest, "created_at": now}


def push_collector_config(
    target: Target, collector_id: str, version: str, toml: str, *, url: str, actor: str | None = None
) -> tuple[dict[str, Any], Command]:
    """Store a configuration version and queue its ``reload_config`` command — both or neither.
    The saved version (as ``save_collector_config`` gives it) and the command."""
    with connection_of(target, write=True) as connection:
        saved = save_collector_config(connection, collector_id, version, toml, actor=actor)
        command = queue_command(
            connection, collector_id, "reload_config", params={"version": version, "url": url}, actor=actor
        )
    return saved, command


def collector_config(target: Target, collector_id: str, version: str) -> str:
    with connection_of(target, write=False) as connection:
        text = connection.execute(
            select(CollectorConfigVersion.toml).where(
                CollectorConfigVersion.collector_id == collector_id, CollectorConfigVersion.version == version
            )
        ).scalar_one_or_none()
    if text is None:
        raise NotFoundError(f"collector {collector_id!r} has no configuration version {version!r}")
    return text


def collector_configs(target: Target, collector_id: str) -> list[dict[str, Any]]:
    """The versions pushed to a collector, newest first (without their text)."""
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(
                CollectorConfigVersion.version,
                CollectorConfigVersion.sha256,
                CollectorConfigVersion.created_at,
                CollectorConfigVersion.actor,
            )
            .where(CollectorConfigVersion.collector_id == collector_id)
            .order_by(CollectorConfigVersion.created_at.desc())
        )
        return [dict(row._mapping) for row in rows]

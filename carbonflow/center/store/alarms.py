"""Alarms, alarm rules and the notification queue: tables and the queries over them.

* ``alarm_rules`` — one row per rule, its validated definition as JSON (``carbonflow.center.alarms.rules``).
* ``alarms`` — one row per raised alarm: ``state`` active | cleared × ``acknowledged`` (who, when, note).
  At most one *active* alarm per ``(rule_id, subject_kind, subject_id)``: a condition seen again while
  its alarm is active counts an occurrence on it instead of raising another (de-duplication).
  ``raised_at`` / ``cleared_at`` are times of the fault on the center's clock (the interval end that
  showed it, or the simulated clock of the demo); ``updated_at`` is the wall time of the last change,
  what the live socket watches.
* ``alarm_notifications`` — the durable queue of webhook / e-mail notifications: queued, retried with
  back-off, ``sent`` or ``failed`` after the last attempt; visible in the API, never blocking metering.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.conflicts import ReadingConflict
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import NotFoundError
from carbonflow.center.store.images import Image
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import (
    ID,
    AutoId,
    Base,
    Bus,
    Collector,
    Device,
    MeterCheck,
    Point,
    Reading,
)
from carbonflow.center.store.types import UtcDateTime


class AlarmRuleRow(Base):
    __tablename__ = "alarm_rules"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str | None] = mapped_column(String(100))


class Alarm(Base):
    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_state", "state"),
        Index("ix_alarms_subject", "rule_id", "subject_kind", "subject_id", "state"),
        Index("ix_alarms_updated_at", "updated_at"),
        Index("ix_alarms_raised_at", "raised_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(20))
    subject_kind: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(ID)
    region: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(10))  # active | cleared
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_by: Mapped[str | None] = mapped_column(String(100))
    ack_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ack_note: Mapped[str | None] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    image_camera: Mapped[str | None] = mapped_column(ID)
    image_ts: Mapped[datetime | None] = mapped_column(UtcDateTime)
    image_key: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlarmNotification(Base):
    __tablename__ = "alarm_notifications"
    __table_args__ = (Index("ix_alarm_notifications_status", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(20))  # raised | cleared | acknowledged
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))  # queued | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


def _now() -> datetime:
    return datetime.now(UTC)


# --- rules ---------------------------------------------------------------------------------------------


def stored_rules(target: Store) -> list[dict[str, Any]] | None:
    """The rule definitions in order, or None when no rule was ever stored (then the defaults apply)."""
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(AlarmRuleRow.definition).order_by(AlarmRuleRow.position, AlarmRuleRow.id)
        ).all()
        marker = connection.execute(select(func.count()).select_from(AlarmRuleRow)).scalar_one()
    return [row.definition for row in rows] if marker else None


def replace_rules(target: Store, definitions: list[dict[str, Any]], actor: str | None) -> None:
    """The whole rule set, in one transaction (a PUT replaces it)."""
    now = _now()
    with connection_of(target, write=True) as connection:
        connection.execute(delete(AlarmRuleRow))
        if definitions:
            connection.execute(
                AlarmRuleRow.__table__.insert(),
                [
                    {"id": d["id"], "definition": d, "position": k, "updated_at": now, "actor": actor}
                    for k, d in enumerate(definitions)
                ],
            )


# --- alarms --------------------------------------------------------------------------------------------

_SHOWN = Alarm.__table__.c


def alarm_dict(row: Any) -> dict[str, Any]:
    """The API's form of an alarm row (contract: id, rule, severity, state, acknowledged, subject,
    raised_at, cleared_at, message, image; the rest are extra fields)."""
    data = dict(row._mapping)
    image = None
    if data.get("image_key"):
        image = {
            "camera": data["image_camera"],
            "ts": data["image_ts"],
            "key": data["image_key"],
            "url": f"/api/v1/images/{data['image_key']}",
        }
    return {
        "id": data["id"],
        "rule": data["rule_id"],
        "kind": data["kind"],
        "severity": data["severity"],
        "state": data["state"],
        "acknowledged": bool(data["acknowledged"]),
        "subject": {"kind": data["subject_kind"], "id": data["subject_id"]},
        "region": data["region"],
        "raised_at": data["raised_at"],
        "cleared_at": data["cleared_at"],
        "last_seen_at": data["last_seen_at"],
        "occurrences": data["occurrences"],
        "flapping": bool(data["flapping"]),
        "message": data["message"],
        "value": data["value"],
        "image": image,
        "ack": (
            {"by": data["ack_by"], "at": data["ack_at"], "note": data["ack_note"]}
            if data["acknowledged"]
            else None
        ),
        "detail": data["detail"],
    }


def active_alarm_keys(target: Store) -> dict[tuple[str, str, str], int]:
    """``(rule, subject kind, subject id) -> alarm id`` of every active alarm (an engine's restart)."""
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(Alarm.rule_id, Alarm.subject_kind, Alarm.subject_id, Alarm.id).where(
                Alarm.state == "active"
            )
        ).all()
    return {(r.rule_id, r.subject_kind, r.subject_id): r.id for r in rows}


def insert_alarm(target: Store, values: dict[str, Any]) -> int:
    now = _now()
    row = {"state": "active", "acknowledged": False, "occurrences": 1, "flapping": False, **values}
    row.setdefault("last_seen_at", row["raised_at"])
    row["updated_at"] = now
    with connection_of(target, write=True) as connection:
        return int(
            connection.execute(Alarm.__table__.insert().values(**row).returning(Alarm.id)).scalar_one()
        )


def touch_alarm(target: Store, alarm_id: int, seen_at: datetime, message: str, value: float | None) -> None:
    """The condition seen again while the alarm is active: one more occurrence, no new alarm."""
    with connection_of(target, write=True) as connection:
        connection.execute(
            update(Alarm)
            .where(Alarm.id == alarm_id)
            .values(occurrences=Alarm.occurrences + 1, last_seen_at=seen_at, message=message, value=value)
        )


def clear_alarm(target: Store, alarm_id: int, cleared_at: datetime, note: str | None = None) -> bool:
    values: dict[str, Any] = {"state": "cleared", "cleared_at": cleared_at, "updated_at": _now()}
    with connection_of(target, write=True) as connection:
        if note:
            detail = connection.execute(select(Alarm.detail).where(Alarm.id == alarm_id)).scalar_one_or_none()
            values["detail"] = {**(detail or {}), "cleared_by": note}
        done = connection.execute(
            update(Alarm).where(Alarm.id == alarm_id, Alarm.state == "active").values(**values)
        )
    return bool(done.rowcount)


def acknowledge_alarm(target: Store, alarm_id: int, user: str, note: str | None) -> dict[str, Any]:
    now = _now()
    with connection_of(target, write=True) as connection:
        found = connection.execute(select(Alarm.id).where(Alarm.id == alarm_id)).first()
        if found is None:
            raise NotFoundError(f"no alarm {alarm_id}")
        connection.execute(
            update(Alarm)
            .where(Alarm.id == alarm_id)
            .values(acknowledged=True, ack_by=user, ack_at=now, ack_note=note, updated_at=now)
        )
        row = connection.execute(select(Alarm.__table__).where(Alarm.id == alarm_id)).one()
    return alarm_dict(row)


def get_alarm(target: Store, alarm_id: int) -> dict[str, Any]:
    with connection_of(target, write=False) as connection:
        row = connection.execute(select(Alarm.__table__).where(Alarm.id == alarm_id)).first()
    if row is None:
        raise NotFoundError(f"no alarm {alarm_id}")
    return alarm_dict(row)


def list_alarms(
    target: Store,
    *,
    state: str = "active",
    since: datetime | None = None,
    region: str | None = None,
    limit: int = 1000,
    updated_after: datetime | None = None,
    unregioned: bool = False,
) -> list[dict[str, Any]]:
    """Newest first.  ``since``: raised or cleared at or after it; ``region``: a region path prefix (and
    the center's own alarms, without a region, when ``unregioned``)."""
    query = select(Alarm.__table__).order_by(Alarm.raised_at.desc(), Alarm.id.desc()).limit(limit)
    if state in ("active", "cleared"):
        query = query.where(Alarm.state == state)
    if since is not None:
        query = query.where((Alarm.raised_at >= since) | (Alarm.cleared_at >= since))
    query = _in_region(query, region, unregioned)
    if updated_after is not None:
        query = query.where(Alarm.updated_at > updated_after)
    with connection_of(target, write=False) as connection:
        return [alarm_dict(row) for row in connection.execute(query)]


def _in_region(query, region: str | None, unregioned: bool):
    """``query`` (over alarms) restricted to the alarms of a region path prefix (compared exactly)."""
    prefix = (region or "").strip("/")
    return query.where(RowScope(prefix, unregioned).clause(Alarm.region)) if prefix else query


def alarm_counts(target: Store, *, region: str | None = None, unregioned: bool = False) -> dict[str, int]:
    """Active alarms (of a region path prefix, as :func:`list_alarms`): total, unacknowledged, and per
    severity."""
    query = (
        select(Alarm.severity, Alarm.acknowledged, func.count())
        .where(Alarm.state == "active")
        .group_by(Alarm.severity, Alarm.acknowledged)
    )
    with connection_of(target, write=False) as connection:
        rows = connection.execute(_in_region(query, region, unregioned)).all()
    counts: dict[str, int] = {"active": 0, "unacknowledged": 0}
    for severity, acknowledged, n in rows:
        counts["active"] += n
        counts[severity] = counts.get(severity, 0) + n
        if not acknowledged:
            counts["unacknowledged"] += n
    return counts


def latest_alarm_change(target: Store) -> datetime | None:
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.max(Alarm.updated_at))).scalar_one_or_none()


# --- context for the rules: current device state, nearest site image ------------------------------------


def device_states(target: Store, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Every device's current state (one row each; ``ids``: of these devices only): what the time-based
    rules look at, never history."""
    columns = (
        Device.id,
        Device.kind,
        Device.collector_id,
        Device.bus_id,
        Device.region,
        Device.online,
        Device.status,
        Device.last_seen,
        Device.clock_offset_s,
        Device.error,
    )
    query = select(*columns) if ids is None else select(*columns).where(Device.id.in_(ids))
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def latest_images(target: Store, camera_ids: list[str]) -> dict[str, datetime]:
    """Each camera's latest image time (one indexed lookup per camera)."""
    found: dict[str, datetime] = {}
    with connection_of(target, write=False) as connection:
        for camera in camera_ids:
            ts = connection.execute(select(func.max(Image.ts)).where(Image.camera_id == camera)).scalar()
            if ts is not None:
                found[camera] = ts
    return found


def nearest_image(target: Store, camera_ids: list[str], at: datetime) -> dict[str, Any] | None:
    """The image of one of ``camera_ids`` whose time is nearest to ``at`` (one before, one after)."""
    if not camera_ids:
        return None
    found = []
    with connection_of(target, write=False) as connection:
        base = select(Image.camera_id, Image.ts, Image.object_key).where(Image.camera_id.in_(camera_ids))
        before = connection.execute(base.where(Image.ts <= at).order_by(Image.ts.desc()).limit(1)).first()
        after = connection.execute(base.where(Image.ts > at).order_by(Image.ts).limit(1)).first()
        found = [row for row in (before, after) if row is not None]
    if not found:
        return None
    best = min(found, key=lambda row: abs((row.ts - at).total_seconds()))
    return {"camera": best.camera_id, "ts": best.ts, "key": best.object_key}


# --- notifications -------------------------------------------------------------------------------------


def queue_notifications(target: Store, alarm_id: int, event: str, channels: list[str], payload: dict) -> int:
    if not channels:
        return 0
    now = _now()
    rows = [
        {
            "alarm_id": alarm_id,
            "channel": channel,
            "event": event,
            "payload": payload,
            "status": "queued",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for channel in channels
    ]
    with connection_of(target, write=True) as connection:
        connection.execute(AlarmNotification.__table__.insert(), rows)
    return len(rows)


def due_notifications(target: Store, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    query = (
        select(AlarmNotification.__table__)
        .where(AlarmNotification.status == "queued", AlarmNotification.next_attempt_at <= now)
        .order_by(AlarmNotification.id)
        .limit(limit)
    )
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def notification_outcome(
    target: Store,
    notification_id: int,
    *,
    status: str,
    attempts: int,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "attempts": attempts, "last_error": error}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status == "sent":
        values["sent_at"] = _now()
    with connection_of(target, write=True) as connection:
        connection.execute(
            update(AlarmNotification).where(AlarmNotification.id == notification_id).values(**values)
        )


def list_notifications(target: Store, *, status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    query = select(AlarmNotification.__table__).order_by(AlarmNotification.id.desc()).limit(limit)
    if status:
        query = query.where(AlarmNotification.status == status)
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


# --- observations of one interval ----------------------------------------------------------------------


def interval_point_values(target: Store, start: datetime, end: datetime) -> dict[str, tuple[datetime, Any]]:
    """The last reading of every point with ``start < ts <= end`` (one interval's readings only; an
    ``invalid`` one too: a register reset or a value out of bounds is what the tamper rule looks for)."""
    query = select(Reading.point_id, Reading.ts, Reading.value).where(Reading.ts > start, Reading.ts <= end)
    latest: dict[str, tuple[datetime, Any]] = {}
    with connection_of(target, write=False) as connection:
        for point_id, ts, value in connection.execute(query):
            if value is not None and (point_id not in latest or ts > latest[point_id][0]):
                latest[point_id] = (ts, value)
    return latest


def point_catalogue(target: Store) -> dict[str, dict[str, Any]]:
    """Every point with its device (kind, region, bus), element, quantity and scale."""
    query = select(
        Point.id, Point.device_id, Point.element_kind, Point.element_id, Point.quantity, Point.end,
        Point.scale, Device.kind.label("device_kind"), Device.region, Device.bus_id,
    ).join(Device, Device.id == Point.device_id)  # fmt: skip
    with connection_of(target, write=False) as connection:
        return {row.id: dict(row._mapping) for row in connection.execute(query)}


def bus_regions(target: Store) -> dict[str, str]:
    """Bus id -> its region path (bus quantities of a region-scoped rule)."""
    with connection_of(target, write=False) as connection:
        return {row.id: row.region for row in connection.execute(select(Bus.id, Bus.region))}


def meter_checks_after(target: Store, after_id: int) -> list[dict[str, Any]]:
    """Electric-carbon meter checks stored after ``after_id``, oldest first."""
    query = select(
        MeterCheck.id, MeterCheck.device_id, MeterCheck.status, MeterCheck.end_ts, MeterCheck.deviation_kg,
        MeterCheck.detail,
    ).where(MeterCheck.id > after_id).order_by(MeterCheck.id)  # fmt: skip
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def last_meter_check_id(target: Store) -> int:
    with connection_of(target, write=False) as connection:
        return int(connection.execute(select(func.max(MeterCheck.id))).scalar_one_or_none() or 0)


def conflicts_after(target: Store, after: datetime | None) -> list[dict[str, Any]]:
    """Readings offered again with a different value, received after ``after``, oldest first."""
    query = select(
        ReadingConflict.point_id, ReadingConflict.ts, ReadingConflict.stored_value,
        ReadingConflict.offered_value, ReadingConflict.received_at,
    ).order_by(ReadingConflict.received_at)  # fmt: skip
    if after is not None:
        query = query.where(ReadingConflict.received_at > after)
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def latest_conflict_received(target: Store) -> datetime | None:
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.max(ReadingConflict.received_at))).scalar_one_or_none()


def collector_states(target: Store, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Every collector's region, last seen and status (``ids``: of these collectors only)."""
    query = select(Collector.id, Collector.region, Collector.last_seen, Collector.status)
    if ids is not None:
        query = query.where(Collector.id.in_(ids))
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]

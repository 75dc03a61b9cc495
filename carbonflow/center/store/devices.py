"""Devices and points as the API reads them, device status counts, and the "sync all clocks"
command round.  Filters given as ``None`` select everything; ``scope`` (a region-scoped user's
:class:`RowScope`) keeps the rows of devices in the user's region."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.maintenance import queue_command
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Device, Point

Target = Store | Session | Connection


def _rows(target: Target, query) -> list[dict[str, Any]]:
    with connection_of(target, write=False) as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


def _where_equal(query, model, equal: dict[str, Any]):
    for name, value in equal.items():
        if value is not None:
            query = query.where(getattr(model, name) == value)
    return query


def list_devices(
    target: Target, *, scope: RowScope | None = None, **equal: str | None
) -> list[dict[str, Any]]:
    """Devices (every column) by id, e.g. ``list_devices(store, status="online", collector_id="C1")``."""
    query = _where_equal(select(Device.__table__).order_by(Device.id), Device, equal)
    return _rows(target, query if scope is None else query.where(scope.clause(Device.region)))


def device_row(target: Target, device_id: str) -> dict[str, Any] | None:
    found = list_devices(target, id=device_id)
    return found[0] if found else None


def list_points(
    target: Target, *, scope: RowScope | None = None, **equal: str | None
) -> list[dict[str, Any]]:
    """Points (every column) by id, e.g. ``list_points(store, device_id="M1", quantity="p_mw")``."""
    query = _where_equal(select(Point.__table__).order_by(Point.id), Point, equal)
    return _rows(target, query if scope is None else scope.by_device(query, Point.device_id))


def device_status_counts(target: Target) -> dict[str, int]:
    """Device status (online | offline | unknown) → how many devices have it."""
    with connection_of(target, write=False) as connection:
        return dict(connection.execute(select(Device.status, func.count()).group_by(Device.status)).all())


def collector_devices(
    target: Target, collector_id: str, *, scope: RowScope | None = None
) -> list[dict[str, Any]]:
    """The devices a collector reads (in ``scope``): id, kind, protocol, status, last seen."""
    query = (
        select(Device.id, Device.kind, Device.protocol, Device.status, Device.last_seen)
        .where(Device.collector_id == collector_id)
        .order_by(Device.id)
    )
    return _rows(target, query if scope is None else query.where(scope.clause(Device.region)))


def queue_time_sync_all(
    target: Target, protocols: tuple[str, ...], *, actor: str | None, scope: RowScope | None = None
) -> list[str]:
    """Queue ``time_sync`` for every device of these protocols that has a collector (and lies in
    ``scope``), in one transaction; the device ids, in order."""
    query = (
        select(Device.id, Device.collector_id)
        .where(Device.protocol.in_(protocols), Device.collector_id.is_not(None))
        .order_by(Device.id)
    )
    if scope is not None:
        query = query.where(scope.clause(Device.region))
    with connection_of(target, write=True) as connection:
        devices = connection.execute(query).all()
        for device_id, collector_id in devices:
            queue_command(connection, collector_id, "time_sync", device_id=device_id, actor=actor)
    return [device_id for device_id, _ in devices]

"""Devices (status, last seen, clock offset), their points, remote-maintenance commands and readings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.deps import StoreDep, UserDep, require_user
from carbonflow.center.api.routes._common import (
    Format,
    Limit,
    Offset,
    bad_parameter,
    jsonable,
    listing,
    resolve_range,
)
from carbonflow.center.store import (
    Store,
    list_commands,
    queue_command,
    readings_for_element,
    readings_for_point,
)
from carbonflow.center.store.schema import Device, Point

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(require_user)])
USER_COMMANDS = ("time_sync", "read_now", "restart")


def devices_of(store: Store) -> list[dict[str, Any]]:
    with store.read() as connection:
        return [dict(r._mapping) for r in connection.execute(select(Device.__table__).order_by(Device.id))]


def points_of(store: Store, **equal: str | None) -> list[dict[str, Any]]:
    query = select(Point.__table__).order_by(Point.id)
    for name, value in equal.items():
        if value is not None:
            query = query.where(getattr(Point, name) == value)
    with store.read() as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


@router.get("/devices")
async def devices(
    store: StoreDep,
    status: str | None = None,
    collector: str | None = None,
    kind: str | None = None,
    protocol: str | None = None,
    bus: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = await run_in_threadpool(devices_of, store)
    wanted = {"status": status, "collector_id": collector, "kind": kind, "protocol": protocol, "bus_id": bus}
    rows = [r for r in rows if all(v is None or r.get(k) == v for k, v in wanted.items())]
    return listing(rows, limit=limit, offset=offset, format=format, name="devices")


@router.get("/devices/{device_id}")
async def device(device_id: str, store: StoreDep) -> dict:
    rows = [r for r in await run_in_threadpool(devices_of, store) if r["id"] == device_id]
    if not rows:
        raise HTTPException(404, f"unknown device {device_id!r}")
    points = await run_in_threadpool(points_of, store, device_id=device_id)
    commands = await run_in_threadpool(list_commands, store, collector_id=rows[0]["collector_id"])
    return jsonable(
        {**rows[0], "points": points, "commands": [c for c in commands if c["device_id"] == device_id][-20:]}
    )


class CommandRequest(BaseModel):
    kind: Literal["time_sync", "read_now", "restart"]
    params: dict[str, Any] = Field(default_factory=dict)


@router.post("/devices/{device_id}/commands", status_code=202)
async def command(device_id: str, body: CommandRequest, store: StoreDep, user: UserDep) -> dict:
    """Queue a remote-maintenance command for the device's collector (state: queued → sent → acknowledged
    | failed, see ``/commands``)."""
    rows = [r for r in await run_in_threadpool(devices_of, store) if r["id"] == device_id]
    if not rows:
        raise HTTPException(404, f"unknown device {device_id!r}")
    if not rows[0]["collector_id"]:
        raise HTTPException(409, f"device {device_id!r} has no collector to send commands through")
    queued = await run_in_threadpool(
        lambda: queue_command(
            store, rows[0]["collector_id"], body.kind, device_id=device_id, params=body.params, actor=user
        )
    )
    return jsonable({**queued.model_dump(), "status": "queued"})


@router.get("/commands")
async def commands(
    store: StoreDep,
    collector: str | None = None,
    device: str | None = None,
    status: Literal["queued", "sent", "acknowledged", "failed"] | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = await run_in_threadpool(lambda: list_commands(store, collector_id=collector, status=status))
    if device is not None:
        rows = [r for r in rows if r["device_id"] == device]
    rows.reverse()  # newest first
    return listing(rows, limit=limit, offset=offset, format=format, name="commands")


@router.get("/points")
async def points(
    store: StoreDep,
    device: str | None = None,
    element_kind: str | None = None,
    element_id: str | None = None,
    quantity: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = await run_in_threadpool(
        lambda: points_of(
            store, device_id=device, element_kind=element_kind, element_id=element_id, quantity=quantity
        )
    )
    return listing(rows, limit=limit, offset=offset, format=format, name="points")


@router.get("/readings")
async def readings(
    store: StoreDep,
    point: str | None = Query(None, description="a point id '<device>/<name>'"),
    element_kind: str | None = None,
    element_id: str | None = None,
    quantity: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Readings (exact meter values as text) of one point, or of every point mapped to an element's
    quantity, with ``start ≤ ts < end`` (default: the last 24 h; at most 31 days)."""
    if point is None and not (element_kind and element_id and quantity):
        raise bad_parameter("point", "give a point, or element_kind + element_id + quantity")

    def load():
        first, last = resolve_range(store, start, end, max_range=timedelta(days=31))
        if point is not None:
            found = readings_for_point(store, point, first, last)
        else:
            found = readings_for_element(store, element_kind, element_id, quantity, first, last)
        return [r.__dict__ for r in found]

    rows = await run_in_threadpool(load)
    return listing(rows, limit=limit, offset=offset, format=format, name="readings")

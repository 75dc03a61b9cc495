"""Devices (status, last seen, clock offset), their points, remote-maintenance commands and readings.

The lists (``rows`` in the access policy) hold only the rows of the user's region (``RowScopeDep``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from carbonflow.center.api.deps import RowScopeDep, StoreDep, UserDep, require_user
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
    command_summary,
    device_row,
    list_commands,
    list_devices,
    list_points,
    queue_command,
    readings_for_element,
    readings_for_point,
)
from carbonflow.center.store.clock_offsets import latest_offset_ts, offset_series

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(require_user)])
CLOCK_OFFSET_RANGE = timedelta(days=7)
USER_COMMANDS = ("time_sync", "read_now", "restart")


@router.get("/devices")
def devices(
    store: StoreDep,
    scope: RowScopeDep,
    status: str | None = None,
    collector: str | None = None,
    kind: str | None = None,
    protocol: str | None = None,
    bus: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = list_devices(
        store, scope=scope, status=status, collector_id=collector, kind=kind, protocol=protocol, bus_id=bus
    )
    return listing(rows, limit=limit, offset=offset, format=format, name="devices")


@router.get("/devices/{device_id}")
def device(device_id: str, store: StoreDep) -> dict:
    row = device_row(store, device_id)
    if row is None:
        raise HTTPException(404, f"unknown device {device_id!r}")
    points = list_points(store, device_id=device_id)
    commands = list_commands(store, collector_id=row["collector_id"])
    return jsonable(
        {**row, "points": points, "commands": [c for c in commands if c["device_id"] == device_id][-20:]}
    )


@router.get("/devices/{device_id}/clock-offsets")
def clock_offsets(device_id: str, store: StoreDep, start: str | None = None, end: str | None = None) -> dict:
    """The device's measured clock offsets over time, oldest first, ``start <= ts < end`` (default: the
    7 days up to its latest sample; at most 31 days); ``worst_offset_s`` is the largest in absolute value."""
    if device_row(store, device_id) is None:
        raise HTTPException(404, f"unknown device {device_id!r}")
    if end is None and start is None:
        latest = latest_offset_ts(store, device_id)
        end_t = (latest or datetime.now(UTC)) + timedelta(microseconds=1)
        first, last = end_t - CLOCK_OFFSET_RANGE, end_t
    else:
        first, last = resolve_range(
            store, start, end, default=CLOCK_OFFSET_RANGE, max_range=timedelta(days=31)
        )
    items = offset_series(store, device_id, first, last)
    worst = max((item["offset_s"] for item in items), key=abs, default=None)
    return jsonable(
        {"device_id": device_id, "start": first, "end": last, "items": items, "worst_offset_s": worst}
    )


class CommandRequest(BaseModel):
    kind: Literal["time_sync", "read_now", "restart"]
    params: dict[str, Any] = Field(default_factory=dict)


@router.post("/devices/{device_id}/commands", status_code=202)
def command(device_id: str, body: CommandRequest, store: StoreDep, user: UserDep) -> dict:
    """Queue a remote-maintenance command for the device's collector (state: queued → sent → acknowledged
    | failed, see ``/commands``)."""
    row = device_row(store, device_id)
    if row is None:
        raise HTTPException(404, f"unknown device {device_id!r}")
    if not row["collector_id"]:
        raise HTTPException(409, f"device {device_id!r} has no collector to send commands through")
    queued = queue_command(
        store, row["collector_id"], body.kind, device_id=device_id, params=body.params, actor=user
    )
    return jsonable({**queued.model_dump(), "status": "queued"})


@router.get("/commands")
def commands(
    store: StoreDep,
    scope: RowScopeDep,
    collector: str | None = None,
    device: str | None = None,
    status: Literal["queued", "sent", "acknowledged", "failed"] | None = None,
    exclude_kind: list[str] = Query(default=[]),  # noqa: B008 - FastAPI's way to take a repeated parameter
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Commands, newest first; ``exclude_kind=set_carbon_factor`` leaves out the routine factor downloads
    (``/commands/summary`` counts them)."""
    rows = list_commands(
        store,
        collector_id=collector,
        status=status,
        device_id=device,
        exclude_kinds=exclude_kind,
        scope=scope,
    )
    rows.reverse()  # newest first
    return listing(rows, limit=limit, offset=offset, format=format, name="commands")


@router.get("/commands/summary")
def commands_summary(store: StoreDep, scope: RowScopeDep) -> dict:
    """Per kind: count, count by status and the newest command."""
    return jsonable({"items": command_summary(store, scope=scope)})


@router.get("/points")
def points(
    store: StoreDep,
    scope: RowScopeDep,
    device: str | None = None,
    element_kind: str | None = None,
    element_id: str | None = None,
    quantity: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = list_points(
        store,
        scope=scope,
        device_id=device,
        element_kind=element_kind,
        element_id=element_id,
        quantity=quantity,
    )
    return listing(rows, limit=limit, offset=offset, format=format, name="points")


@router.get("/readings")
def readings(
    store: StoreDep,
    scope: RowScopeDep,
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

    first, last = resolve_range(store, start, end, max_range=timedelta(days=31))
    if point is not None:
        found = readings_for_point(store, point, first, last, scope=scope)
    else:
        found = readings_for_element(store, element_kind, element_id, quantity, first, last, scope=scope)
    rows = [r.__dict__ for r in found]
    return listing(rows, limit=limit, offset=offset, format=format, name="readings")

"""Site cameras as the API lists them: registered camera devices merged with what the image store holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.images import ImageStore
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Bus, Device

CAMERA_COLUMNS = (
    Device.id,
    Device.bus_id,
    Bus.name.label("bus_name"),
    Device.region,
    Device.collector_id,
    Device.endpoint,
    Device.status,
    Device.online,
    Device.last_seen,
    Device.error,
)


def camera_overview(images: ImageStore, *, scope: RowScope | None = None) -> list[dict[str, Any]]:
    """Every camera (a device of protocol camera-http or kind camera, or a camera that has sent images),
    by id, with its status, images stored, first/latest image time and the latest image's key.
    ``scope``: the cameras of a region (one not registered as a device has no region)."""
    query = (
        select(*CAMERA_COLUMNS)
        .outerjoin(Bus, Bus.id == Device.bus_id)
        .where(or_(Device.protocol == "camera-http", Device.kind == "camera"))
        .order_by(Device.id)
    )
    if scope is not None:
        query = query.where(scope.clause(Device.region))
    summary = images.summary()
    with connection_of(images.store, write=False) as connection:
        rows = {row.id: dict(row._mapping) for row in connection.execute(query)}
        unlisted = [camera for camera in summary if camera not in rows]  # has images, not listed yet
        if scope is not None and unlisted:  # a camera's region is its device's (none: not registered)
            found = select(Device.id, Device.region).where(Device.id.in_(unlisted))
            regions = dict(connection.execute(found).all())
            unlisted = [camera for camera in unlisted if scope.admits(regions.get(camera))]
    for camera in unlisted:
        rows[camera] = {"id": camera, "status": "unknown"}
    out = []
    for camera_id in sorted(rows):
        row = rows[camera_id]
        row.update(summary.get(camera_id, {"images": 0, "first_ts": None, "latest_ts": None}))
        latest = images.latest(camera_id) if row["images"] else None
        row["latest_key"] = latest["key"] if latest else None
        out.append(row)
    return out


def camera_known(images: ImageStore, camera_id: str) -> bool:
    return any(row["id"] == camera_id for row in camera_overview(images))

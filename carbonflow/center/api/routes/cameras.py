"""Site cameras: images in from collectors (signed), cameras, latest image, stored images for playback.

``POST /api/v1/images`` is the collector's (HMAC signature, see :mod:`carbonflow.messages.images`);
every other endpoint requires a logged-in user.  Image bytes are served by object key
(``GET /api/v1/images/{key}``, content-addressed, so cacheable for good) and as a camera's latest
(``GET /api/v1/cameras/{id}/latest``, never cached).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.deps import require_user
from carbonflow.center.api.routes._common import (
    MIN_RANGE,
    Format,
    Limit,
    Offset,
    bad_parameter,
    jsonable,
    listing,
    parse_time,
)
from carbonflow.center.ingest.images import receive_image
from carbonflow.center.store import ImageStore
from carbonflow.center.store.schema import Bus, Device
from carbonflow.messages.images import (
    CAMERA_HEADER,
    COLLECTOR_HEADER,
    SHA256_HEADER,
    SIGNATURE_HEADER,
    TS_HEADER,
    ImageAck,
)

ingest_router = APIRouter(tags=["cameras"])
router = APIRouter(prefix="/api/v1", tags=["cameras"], dependencies=[Depends(require_user)])
MAX_PLAYBACK_RANGE = timedelta(days=31)
DEFAULT_PLAYBACK_RANGE = timedelta(hours=24)


def images_of(request: Request) -> ImageStore:
    return request.app.state.images


@ingest_router.post("/api/v1/images", response_model=ImageAck)
async def post_image(request: Request) -> ImageAck:
    """A collector's snapshot: raw PNG/JPEG body; collector, camera, ts, sha256 and the signature in
    headers.  200 + ImageAck after the commit (``duplicate`` for a replay)."""
    data = await request.body()
    headers = request.headers
    return await run_in_threadpool(
        lambda: receive_image(
            images_of(request),
            collector_id=headers.get(COLLECTOR_HEADER),
            camera=headers.get(CAMERA_HEADER),
            ts=headers.get(TS_HEADER),
            sha256=headers.get(SHA256_HEADER),
            signature=headers.get(SIGNATURE_HEADER),
            data=data,
        )
    )


def camera_rows(images: ImageStore) -> list[dict[str, Any]]:
    """Every camera (a device of protocol camera-http, or a camera that has sent images) with its status
    and its latest image."""
    query = (
        select(
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
        .outerjoin(Bus, Bus.id == Device.bus_id)
        .where(or_(Device.protocol == "camera-http", Device.kind == "camera"))
        .order_by(Device.id)
    )
    with images.store.read() as connection:
        rows = {row.id: dict(row._mapping) for row in connection.execute(query)}
    summary = images.summary()
    for camera in summary:
        rows.setdefault(camera, {"id": camera, "status": "unknown"})
    out = []
    for camera_id in sorted(rows):
        row = rows[camera_id]
        row.update(summary.get(camera_id, {"images": 0, "first_ts": None, "latest_ts": None}))
        latest = images.latest(camera_id) if row["images"] else None
        row["latest_key"] = latest["key"] if latest else None
        out.append(row)
    return out


def _known(images: ImageStore, camera_id: str) -> bool:
    return any(row["id"] == camera_id for row in camera_rows(images))


def _image_response(data: bytes, row: dict[str, Any], cache: str) -> Response:
    return Response(
        data,
        media_type=row["content_type"],
        headers={
            "Cache-Control": cache,
            "ETag": f'"{row["sha256"]}"',
            "X-Carbonflow-Camera": row["camera_id"],
            "X-Carbonflow-Ts": jsonable(row["ts"]),
        },
    )


@router.get("/cameras")
async def cameras(request: Request, limit: Limit = None, offset: Offset = 0, format: Format = "json"):
    """Cameras with status (online, last seen, error), images stored and the latest image's time/key."""
    rows = await run_in_threadpool(camera_rows, images_of(request))
    for row in rows:
        row["latest_url"] = f"/api/v1/cameras/{row['id']}/latest" if row["latest_key"] else None
    return listing(rows, limit=limit, offset=offset, format=format, name="cameras")


@router.get("/cameras/{camera_id}/latest")
async def latest_image(camera_id: str, request: Request) -> Response:
    images = images_of(request)
    row = await run_in_threadpool(images.latest, camera_id)
    if row is None:
        raise HTTPException(404, f"camera {camera_id!r} has no image")
    data = await run_in_threadpool(images.read, row["key"])
    return _image_response(data, row, "no-cache")


@router.get("/cameras/{camera_id}/images")
async def camera_images(
    camera_id: str,
    request: Request,
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Stored images of a camera with ``start <= ts < end``, oldest first (playback).  Defaults: the 24 h
    up to the camera's latest image; at most 31 days."""
    images = images_of(request)

    def load() -> tuple[list[dict[str, Any]], datetime, datetime]:
        if not _known(images, camera_id):
            raise HTTPException(404, f"unknown camera {camera_id!r}")
        first, last = parse_time(start, "start"), parse_time(end, "end")
        if last is None:
            if first is not None:
                last = first + DEFAULT_PLAYBACK_RANGE
            else:
                latest = images.latest(camera_id)
                last = (latest["ts"] if latest else datetime.now(UTC)) + timedelta(microseconds=1)
        first = first or last - DEFAULT_PLAYBACK_RANGE
        if last - first < MIN_RANGE:
            raise bad_parameter("end", "must be at least one minute after start")
        if last - first > MAX_PLAYBACK_RANGE:
            raise bad_parameter("start", f"the range may span at most {MAX_PLAYBACK_RANGE.days} days")
        rows = images.between(camera_id, first, last)
        for row in rows:
            row["url"] = f"/api/v1/images/{row['key']}"
        return rows, first, last

    rows, first, last = await run_in_threadpool(load)
    return listing(
        rows,
        limit=limit,
        offset=offset,
        format=format,
        name=f"images-{camera_id}",
        extra={"camera_id": camera_id, "start": first, "end": last},
    )


@router.get("/images/{key}")
async def image(key: str, request: Request) -> Response:
    """Image bytes by object key (``<sha256>.png``); immutable, so cached for good."""
    images = images_of(request)
    row = await run_in_threadpool(images.owner, key)
    if row is None:
        raise HTTPException(404, f"no image {key!r}")
    data = await run_in_threadpool(images.read, key)
    return _image_response(data, row, "private, max-age=31536000, immutable")

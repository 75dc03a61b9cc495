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

from carbonflow.center.api.deps import RawBody, RowScopeDep, require_user
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
from carbonflow.center.store import ImageStore, camera_known, camera_overview
from carbonflow.messages.images import (
    CAMERA_HEADER,
    COLLECTOR_HEADER,
    NONCE_HEADER,
    SHA256_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
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
def post_image(request: Request, data: RawBody) -> ImageAck:
    """A collector's snapshot: raw PNG/JPEG body; collector, camera, ts, sha256 and the signature in
    headers.  200 + ImageAck after the commit (``duplicate`` for a replay)."""
    headers = request.headers
    return receive_image(
        images_of(request),
        collector_id=headers.get(COLLECTOR_HEADER),
        camera=headers.get(CAMERA_HEADER),
        ts=headers.get(TS_HEADER),
        sha256=headers.get(SHA256_HEADER),
        signed_at=headers.get(SIGNED_AT_HEADER),
        nonce=headers.get(NONCE_HEADER),
        signature=headers.get(SIGNATURE_HEADER),
        data=data,
    )


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
def cameras(
    request: Request, scope: RowScopeDep, limit: Limit = None, offset: Offset = 0, format: Format = "json"
):
    """Cameras (of the user's region) with status (online, last seen, error), images stored and the
    latest image's time/key."""
    rows = camera_overview(images_of(request), scope=scope)
    for row in rows:
        row["latest_url"] = f"/api/v1/cameras/{row['id']}/latest" if row["latest_key"] else None
    return listing(rows, limit=limit, offset=offset, format=format, name="cameras")


@router.get("/cameras/{camera_id}/latest")
def latest_image(camera_id: str, request: Request) -> Response:
    images = images_of(request)
    row = images.latest(camera_id)
    if row is None:
        raise HTTPException(404, f"camera {camera_id!r} has no image")
    data = images.read(row["key"])
    return _image_response(data, row, "no-cache")


@router.get("/cameras/{camera_id}/images")
def camera_images(
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
    if not camera_known(images, camera_id):
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
    return listing(
        rows,
        limit=limit,
        offset=offset,
        format=format,
        name=f"images-{camera_id}",
        extra={"camera_id": camera_id, "start": first, "end": last},
    )


@router.get("/images/{key}")
def image(key: str, request: Request) -> Response:
    """Image bytes by object key (``<sha256>.png``); immutable, so cached for good."""
    images = images_of(request)
    row = images.owner(key)
    if row is None:
        raise HTTPException(404, f"no image {key!r}")
    data = images.read(key)
    return _image_response(data, row, "private, max-age=31536000, immutable")

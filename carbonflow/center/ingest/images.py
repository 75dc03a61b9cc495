"""Receiving camera images from collectors (HTTP and MQTT), see :mod:`carbonflow.messages.images`.

Checks, each refusing the image with an error naming what is wrong (nothing stored): the fields are
there and well formed (422) → the body is a PNG or JPEG (415 over HTTP / 422) whose SHA-256 equals the
claimed one (422) → the collector is known (401) → the signature is its HMAC (401) → fresh (stamp
within the window, nonce unseen: 401 naming stale/replayed, audited) → stored
(idempotent by camera and ts; other content at a stored (camera, ts) is 409).  The acknowledgement is
returned only after the file is on disk and the row committed.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime

from pydantic import ValidationError

from carbonflow.center.ingest.receive import authenticate_signed, check_fresh
from carbonflow.center.store import (
    BadSignatureError,
    ImageStore,
    InvalidBatchError,
    StaleMessageError,
    StoreError,
)
from carbonflow.messages.images import ImageAck, ImageEnvelope, sha256_hex, sniff_content_type, verify_image

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


class UnsupportedImageError(StoreError):
    status_code = 415


def _parse_ts(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidBatchError(f"image ts {text[:40]!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise InvalidBatchError(f"image ts {text!r} has no time zone")
    return ts.astimezone(UTC)


def receive_image(
    images: ImageStore,
    *,
    collector_id: str | None,
    camera: str | None,
    ts: str | None,
    sha256: str | None,
    signed_at: str | None,
    nonce: str | None,
    signature: str | None,
    data: bytes,
    received_at: datetime | None = None,
) -> ImageAck:
    missing = [
        name
        for name, value in (("collector", collector_id), ("camera", camera), ("ts", ts), ("sha256", sha256))
        if not value
    ]
    if missing:
        raise InvalidBatchError(f"image without {', '.join(missing)}", {"missing": missing})
    assert collector_id and camera and ts and sha256  # narrows types; the check is just above
    for name, value in (("collector", collector_id), ("camera", camera)):
        if not _ID.match(value):
            raise InvalidBatchError(f"image {name} id {value[:40]!r} is not a valid id")
    moment = _parse_ts(ts)
    content_type = sniff_content_type(data)
    if content_type is None:
        raise UnsupportedImageError(f"image of camera {camera!r} is neither PNG nor JPEG")
    digest = sha256_hex(data)
    if digest != sha256.lower():
        raise InvalidBatchError(
            f"image of camera {camera!r} at {ts}: SHA-256 of the body is {digest}, not {sha256}"
        )
    authenticate_signed(
        images.store,
        collector_id,
        f"image of camera {camera!r} at {ts}",
        lambda secret: verify_image(secret, collector_id, camera, ts, sha256, signed_at, nonce, signature),
        "bad or missing signature",
    )
    check_fresh(images.store, collector_id, "image", nonce, signed_at, ordered=False)
    saved = images.save(
        camera, moment, data, content_type, digest, collector_id=collector_id, received_at=received_at
    )
    return ImageAck(camera=camera, ts=ts, sha256=digest, key=saved.key, duplicate=saved.duplicate)


def receive_image_envelope(images: ImageStore, topic_collector: str, payload: bytes | str) -> ImageAck:
    """An :class:`ImageEnvelope` from ``carbonflow/{collector}/images``."""
    try:
        envelope = ImageEnvelope.model_validate_json(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "envelope"
        raise InvalidBatchError(f"invalid image envelope: {where}: {first['msg']}") from None
    if envelope.collector_id != topic_collector:
        raise InvalidBatchError(
            f"image of collector {envelope.collector_id!r} on the topic of {topic_collector!r}"
        )
    try:
        data = envelope.data()
    except ValueError as error:
        raise InvalidBatchError(str(error)) from None
    return receive_image(
        images,
        collector_id=envelope.collector_id,
        camera=envelope.camera,
        ts=envelope.ts,
        sha256=envelope.sha256,
        signed_at=envelope.signed_at,
        nonce=envelope.nonce,
        signature=envelope.signature,
        data=data,
    )


def answer_image_envelope(images: ImageStore, topic_collector: str, payload: bytes | str) -> str:
    """The JSON answer on ``.../image-acks``: the Ack, or a refusal (``error`` set) for an image that
    cannot be stored as sent.  Database failures raise (the MQTT worker retries the message); so does a
    refused authentication — a stale or replayed stamp, a bad signature: like the 401 over HTTP, the image
    gets no ImageAck (the refusal goes to ``rejects``), so the collector keeps it and sends it again,
    freshly signed — a refused stamp or a secret being fixed must never cost an image."""
    try:
        return receive_image_envelope(images, topic_collector, payload).model_dump_json()
    except (StaleMessageError, BadSignatureError):
        raise
    except StoreError as error:
        camera = ts = sha = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            document = json.loads(payload)
            camera, ts, sha = (str(document.get(k, "")) for k in ("camera", "ts", "sha256"))
        return ImageAck(camera=camera, ts=ts, sha256=sha, error=error.message).model_dump_json()

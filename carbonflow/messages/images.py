"""Contract C4, images: a collector forwards a site camera's snapshot to the center.

HTTP: ``POST /api/v1/images`` with the raw image as body (``Content-Type: image/png`` or ``image/jpeg``)
and the headers ``X-Carbonflow-Collector``, ``X-Carbonflow-Camera``, ``X-Carbonflow-Ts`` (ISO 8601 UTC,
milliseconds, ``Z``), ``X-Carbonflow-Sha256`` (hex of the body), ``X-Carbonflow-Signed-At``,
``X-Carbonflow-Nonce`` and ``X-Carbonflow-Signature``.

MQTT: topic ``carbonflow/{collector_id}/images``, QoS 1, an :class:`ImageEnvelope` JSON (image as
base64); the center answers with an :class:`ImageAck` on ``carbonflow/{collector_id}/image-acks``
after the commit.

Signature (both transports, :mod:`carbonflow.messages.signing`, purpose ``image``): the stamp
(``signed_at``, ``nonce``: the center refuses a stale or replayed image) and :func:`canonical`
``"{collector}\\n{camera}\\n{ts}\\n{sha256}"`` — it binds the image's content (via its hash, which the
center recomputes) to its camera, time and sender, so neither can be swapped.  The image outbox keeps
the image unsigned; every send stamps and signs it anew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from carbonflow.messages.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    signature_of,
    signature_ok,
    stamp,
    stamp_headers,
)

__all__ = ["NONCE_HEADER", "SIGNATURE_HEADER", "SIGNED_AT_HEADER"]
COLLECTOR_HEADER = "X-Carbonflow-Collector"
CAMERA_HEADER = "X-Carbonflow-Camera"
TS_HEADER = "X-Carbonflow-Ts"
SHA256_HEADER = "X-Carbonflow-Sha256"
CONTENT_TYPES = {"image/png": "png", "image/jpeg": "jpg"}


def ts_text(ts: datetime) -> str:
    """The wire form of an image time: UTC, milliseconds, ``Z``."""
    if ts.tzinfo is None:
        raise ValueError("image time must carry a time zone")
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def canonical(collector_id: str, camera: str, ts: str, sha256: str) -> bytes:
    return f"{collector_id}\n{camera}\n{ts}\n{sha256}".encode()


def sign_image(
    secret: bytes, collector_id: str, camera: str, ts: str, sha256: str, signed_at: str, nonce: str
) -> str:
    return signature_of(secret, "image", signed_at, nonce, canonical(collector_id, camera, ts, sha256))


def image_headers(secret: bytes, collector_id: str, camera: str, ts: str, sha256: str) -> dict[str, str]:
    """The HTTP headers that identify, stamp and sign one image."""
    return {
        COLLECTOR_HEADER: collector_id,
        CAMERA_HEADER: camera,
        TS_HEADER: ts,
        SHA256_HEADER: sha256,
        **stamp_headers(secret, "image", canonical(collector_id, camera, ts, sha256)),
    }


def verify_image(
    secret: bytes,
    collector_id: str,
    camera: str,
    ts: str,
    sha256: str,
    signed_at: str | None,
    nonce: str | None,
    signature: str | None,
) -> bool:
    body = canonical(collector_id, camera, ts, sha256)
    return signature_ok(secret, "image", signed_at, nonce, body, signature)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_content_type(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` from the magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


class ImageEnvelope(BaseModel):
    """One image over MQTT."""

    model_config = ConfigDict(extra="forbid")

    collector_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    camera: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    ts: str  # ts_text form
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str
    image: str  # base64
    signed_at: str | None = Field(default=None, max_length=64)
    nonce: str | None = Field(default=None, max_length=64)
    signature: str

    def data(self) -> bytes:
        try:
            return base64.b64decode(self.image, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"image is not base64: {error}") from None

    @classmethod
    def build(
        cls, secret: bytes, collector_id: str, camera: str, ts: str, data: bytes, content_type: str
    ) -> ImageEnvelope:
        digest = sha256_hex(data)
        signed_at, nonce = stamp()
        return cls(
            collector_id=collector_id,
            camera=camera,
            ts=ts,
            sha256=digest,
            content_type=content_type,
            image=base64.b64encode(data).decode("ascii"),
            signed_at=signed_at,
            nonce=nonce,
            signature=sign_image(secret, collector_id, camera, ts, digest, signed_at, nonce),
        )


class ImageAck(BaseModel):
    """The center's answer once the image is on disk and in the database."""

    camera: str
    ts: str
    sha256: str
    key: str = ""  # object key: GET /api/v1/images/{key}
    duplicate: bool = False  # (camera, ts) was stored before (a replay)
    error: str | None = None  # MQTT only: the center refused the image (nothing stored; do not resend)

"""Site-camera images: bytes on disk, content-addressed; one row per (camera, ts) in ``images``.

An image's object key is ``<sha256 hex>.<png|jpg>``; the file lives at ``<directory>/<key[:2]>/<key>``
and is written (atomically: temp file + rename) before the row is committed, so a row never points to
a missing file.  Identical pictures share one file.  Storing is idempotent by ``(camera, ts)``: a replay
of the same image is a duplicate; different content for an existing ``(camera, ts)`` is a conflict.

Retention: rows older than ``retention_days`` are deleted and every file no row refers to any more is
removed; :meth:`ImageStore.purge` does it, and storing an image runs it at most every
``purge_every_s`` (so a center receiving images keeps its disk bounded without a scheduler).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Index, Integer, String, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import BatchConflictError, InvalidBatchError, NotFoundError
from carbonflow.center.store.schema import ID, Base
from carbonflow.center.store.types import UtcDateTime

DEFAULT_IMAGE_RETENTION_DAYS = 90
KEY_PATTERN = re.compile(r"^[0-9a-f]{64}\.(png|jpg)$")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}
CONTENT_TYPES = {ext: ctype for ctype, ext in EXTENSIONS.items()}


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_ts", "ts"), Index("ix_images_object_key", "object_key"))

    camera_id: Mapped[str] = mapped_column(ID, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    object_key: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    collector_id: Mapped[str | None] = mapped_column(ID)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class SavedImage:
    camera_id: str
    ts: datetime
    key: str
    sha256: str
    duplicate: bool


@dataclass
class ImagePurgeReport:
    cutoff: datetime
    rows_deleted: int = 0
    files_deleted: int = 0


def default_image_dir(database_url: str) -> Path:
    """Next to an SQLite database file (``<db dir>/images``); else ``./carbonflow-images``."""
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        return Path(database_url.removeprefix("sqlite:///")).resolve().parent / "images"
    return Path("carbonflow-images").resolve()


def row_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data["key"] = data.pop("object_key")
    return data


class ImageStore:
    def __init__(
        self,
        store: Store,
        directory: str | Path,
        retention_days: int = DEFAULT_IMAGE_RETENTION_DAYS,
        purge_every_s: float = 3600.0,
    ) -> None:
        if retention_days < 1:
            raise ValueError(f"image retention must be at least 1 day, not {retention_days}")
        self.store = store
        self.directory = Path(directory)
        self.retention_days = retention_days
        self.purge_every_s = purge_every_s
        self._last_purge = time.monotonic()
        # called with (camera id, ts) after an image was stored, and with (None, None) after images were
        # purged (the latest image of a camera may be gone): the alarm engine keeps cameras' latest images
        self.listeners: list[Callable[[str | None, datetime | None], Any]] = []

    # -- files --------------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise NotFoundError(f"no image {key!r}")
        return self.directory / key[:2] / key

    def _write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists() and target.stat().st_size == len(data):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no image {key!r}") from None

    # -- storing ------------------------------------------------------------------------------------
    def save(
        self,
        camera_id: str,
        ts: datetime,
        data: bytes,
        content_type: str,
        sha256: str,
        *,
        collector_id: str | None = None,
        received_at: datetime | None = None,
    ) -> SavedImage:
        """Store one image (the caller has checked ``sha256`` against ``data``)."""
        if content_type not in EXTENSIONS:
            raise InvalidBatchError(f"image type {content_type!r} is not stored (PNG or JPEG only)")
        key = f"{sha256}.{EXTENSIONS[content_type]}"
        existing = self._find(camera_id, ts)
        if existing is None:
            self._write(key, data)
            row = {
                "camera_id": camera_id,
                "ts": ts,
                "object_key": key,
                "size_bytes": len(data),
                "sha256": sha256,
                "content_type": content_type,
                "collector_id": collector_id,
                "received_at": received_at or datetime.now(UTC),
            }
            try:
                with self.store.write() as connection:
                    connection.execute(Image.__table__.insert().values(**row))
            except IntegrityError:  # stored meanwhile by a concurrent replay
                existing = self._find(camera_id, ts)
                if existing is None:
                    raise
            else:
                for listener in self.listeners:
                    listener(camera_id, ts)
                self.maybe_purge()
                return SavedImage(camera_id, ts, key, sha256, duplicate=False)
        if existing["sha256"] != sha256:
            raise BatchConflictError(
                f"camera {camera_id!r} already has a different image at {ts.isoformat()}",
                {"camera": camera_id, "ts": ts.isoformat(), "stored_sha256": existing["sha256"]},
            )
        return SavedImage(camera_id, ts, existing["key"], sha256, duplicate=True)

    def _find(self, camera_id: str, ts: datetime) -> dict[str, Any] | None:
        with self.store.read() as connection:
            row = connection.execute(
                select(Image.__table__).where(Image.camera_id == camera_id, Image.ts == ts)
            ).first()
        return None if row is None else row_dict(row)

    # -- queries ------------------------------------------------------------------------------------
    def latest(self, camera_id: str) -> dict[str, Any] | None:
        with self.store.read() as connection:
            row = connection.execute(
                select(Image.__table__).where(Image.camera_id == camera_id).order_by(Image.ts.desc()).limit(1)
            ).first()
        return None if row is None else row_dict(row)

    def between(self, camera_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Images of a camera with ``start <= ts < end``, oldest first."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(Image.__table__)
                .where(Image.camera_id == camera_id, Image.ts >= start, Image.ts < end)
                .order_by(Image.ts)
            ).all()
        return [row_dict(r) for r in rows]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per camera: images stored, first and last image time."""
        query = select(Image.camera_id, func.count(), func.min(Image.ts), func.max(Image.ts)).group_by(
            Image.camera_id
        )
        with self.store.read() as connection:
            rows = connection.execute(query).all()
        return {
            camera: {"images": int(count), "first_ts": first, "latest_ts": last}
            for camera, count, first, last in rows
        }

    def owner(self, key: str) -> dict[str, Any] | None:
        with self.store.read() as connection:
            row = connection.execute(select(Image.__table__).where(Image.object_key == key).limit(1)).first()
        return None if row is None else row_dict(row)

    # -- retention ----------------------------------------------------------------------------------
    def maybe_purge(self) -> ImagePurgeReport | None:
        if time.monotonic() - self._last_purge < self.purge_every_s:
            return None
        return self.purge()

    def purge(self, days: int | None = None, *, now: datetime | None = None) -> ImagePurgeReport:
        """Delete the rows older than ``days`` (default: the configured retention) and the files no row
        refers to any more."""
        self._last_purge = time.monotonic()
        days = self.retention_days if days is None else days
        if days < 1:
            raise ValueError(f"image retention must be at least 1 day, not {days}")
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        report = ImagePurgeReport(cutoff)
        with self.store.write() as connection:
            keys = set(connection.execute(select(Image.object_key).where(Image.ts < cutoff)).scalars())
            report.rows_deleted = connection.execute(delete(Image).where(Image.ts < cutoff)).rowcount
            still = (
                set(connection.execute(select(Image.object_key).where(Image.object_key.in_(keys))).scalars())
                if keys
                else set()
            )
        for key in sorted(keys - still):
            with contextlib.suppress(FileNotFoundError):
                self.path(key).unlink()
                report.files_deleted += 1
        if report.rows_deleted:
            for listener in self.listeners:
                listener(None, None)
        return report

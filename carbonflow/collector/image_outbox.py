"""Store-and-forward for camera images: a separate table in the collector's outbox file, bounded by bytes.

Images matter less than readings, so the policy differs from the readings outbox (which refuses new
readings when full and never drops stored ones): when a new image would exceed ``max_bytes``, the
**oldest** images are dropped to make room and counted as ``dropped``; an image the center rejects
(4xx other than auth) is deleted and counted as ``rejected``.  An image leaves the table otherwise only
when the center acknowledges it.  Unique on ``(camera, ts)``: the same snapshot is never queued twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from carbonflow.delivery import SendResult, SqliteOutbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, ts TEXT NOT NULL,
    content_type TEXT NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL, added_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, UNIQUE (camera, ts));
CREATE TABLE IF NOT EXISTS image_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class QueuedImage:
    id: int
    camera: str
    ts: str  # wire form (messages.images.ts_text)
    content_type: str
    body: bytes
    attempts: int

    @property
    def key(self) -> int:
        return self.id

    @property
    def label(self) -> str:
        return f"image {self.camera} {self.ts}"


@dataclass(frozen=True)
class ImageOutboxStats:
    images: int
    bytes: int
    max_bytes: int
    dropped: int  # oldest images dropped to respect max_bytes
    rejected: int  # refused by the center (never resent)
    delivered: int


class ImageOutbox(SqliteOutbox):
    SCHEMA = SCHEMA
    META_TABLE = "image_meta"

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        super().__init__(path, any_thread=True)
        self.max_bytes = max_bytes

    def append(self, camera: str, ts: str, body: bytes, content_type: str) -> int:
        """Queue one image; returns how many old images were dropped to make room (an image larger
        than the whole bound is itself dropped).  A second image of the same (camera, ts) is ignored."""
        size = len(body)
        with self._transaction():
            if self._db.execute("SELECT 1 FROM images WHERE camera = ? AND ts = ?", (camera, ts)).fetchone():
                return 0
            if size > self.max_bytes:
                self._count("dropped", 1)
                return 1
            used = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM images").fetchone()[0]
            dropped = 0
            for image_id, image_size in self._db.execute(
                "SELECT id, size FROM images ORDER BY id"
            ).fetchall():
                if used + size <= self.max_bytes:
                    break
                self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
                used -= image_size
                dropped += 1
            if dropped:
                self._count("dropped", dropped)
            self._db.execute(
                "INSERT OR IGNORE INTO images (camera, ts, content_type, size, body, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (camera, ts, content_type, size, body, time.time()),
            )
        return dropped

    def oldest(self, limit: int = 1) -> list[QueuedImage]:
        return [
            QueuedImage(int(i), camera, ts, ctype, bytes(body), int(attempts))
            for i, camera, ts, ctype, body, attempts in self._db.execute(
                "SELECT id, camera, ts, content_type, body, attempts FROM images ORDER BY id LIMIT ?",
                (limit,),
            )
        ]

    def acknowledge(self, image_id: int) -> bool:
        deleted = self._db.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount
        if deleted:
            self._count("delivered", 1)
        return bool(deleted)

    def reject(self, image_id: int, result: SendResult | None = None) -> bool:
        deleted = self._db.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount
        if deleted:
            self._count("rejected", 1)
        return bool(deleted)

    def record_failure(self, image_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE images SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error[:500], image_id)
        )

    def stats(self) -> ImageOutboxStats:
        count, used = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM images").fetchone()
        return ImageOutboxStats(
            int(count),
            int(used),
            self.max_bytes,
            int(self._meta("dropped")),
            int(self._meta("rejected")),
            int(self._meta("delivered")),
        )

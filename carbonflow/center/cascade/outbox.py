"""Store-and-forward of cascade messages: one durable SQLite outbox per center, one queue per peer.

A signed envelope is appended before anything is sent and leaves the outbox only when the peer
acknowledged it (it committed the message) or refused it for good (set aside in ``refused``, with the
peer's answer).  An unreachable peer delays, never loses; the peer de-duplicates by ``message_id``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from carbonflow.delivery import SendResult, SqliteOutbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS cascade_out (
    id INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL, ts TEXT NOT NULL, body BLOB NOT NULL, added_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX IF NOT EXISTS ix_cascade_out_peer ON cascade_out (peer, id);
CREATE TABLE IF NOT EXISTS cascade_refused (
    id INTEGER PRIMARY KEY, peer TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL,
    ts TEXT NOT NULL, body BLOB NOT NULL, error TEXT, refused_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    peer: str
    message_id: str
    kind: str
    ts: str
    body: bytes

    @property
    def key(self) -> int:
        return self.id

    @property
    def label(self) -> str:
        return f"cascade {self.kind} {self.ts} to {self.peer}"


class CascadeOutbox(SqliteOutbox):
    SCHEMA = SCHEMA
    META_TABLE = "cascade_meta"

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        """``durable``: fsync every commit (a queued message survives a power cut, not only a crash)."""
        super().__init__(path, durable=durable, any_thread=True)
        self._lock = threading.RLock()  # one connection, used by the API's threads and the sender loops
        self._sync_lock = threading.Lock()
        self._sync_db: sqlite3.Connection | None = None  # sync(): its own connection, see there

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock, super()._transaction():
            yield

    def append(self, peer: str, message_id: str, kind: str, ts: str, body: bytes) -> None:
        self.append_many([(peer, message_id, kind, ts, body)])

    def append_many(self, items: list[tuple[str, str, str, str, bytes]]) -> None:
        """Queue (peer, message_id, kind, ts, body) items in one transaction: one fsync for all the
        messages one step of an interval sends (group commit)."""
        if not items:
            return
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO cascade_out (peer, message_id, kind, ts, body, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*item, now) for item in items],
            )

    def queue_many(self, items: list[tuple[str, str, str, str, bytes]]) -> None:
        """Queue items in one transaction committed **without** fsync: visible to the sender loops at
        once (they may send them while :meth:`sync` makes them durable); survives a crash of the
        process, not a power cut until :meth:`sync` returns."""
        if not items:
            return
        now = time.time()
        with self._lock, self._relaxed(), self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO cascade_out (peer, message_id, kind, ts, body, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*item, now) for item in items],
            )

    def sync(self) -> None:
        """Make everything committed so far durable (fsync of the write-ahead log, which holds every
        commit since the last checkpoint; a checkpoint syncs what it moves).  Runs on a connection of its
        own so that the sender loops keep reading and sending while the disk syncs."""
        if not self.durable:
            return
        with self._sync_lock:
            if self._sync_db is None:
                self._sync_db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._sync_db.execute("PRAGMA synchronous=FULL")
                self._sync_db.execute("PRAGMA busy_timeout=5000")
            # a one-row write whose FULL commit fsyncs the log (an empty transaction writes nothing)
            self._sync_db.execute(
                f"INSERT INTO {self.META_TABLE} (key, value) VALUES ('synced', 1) "  # nosec B608
                "ON CONFLICT (key) DO UPDATE SET value = value + 1"
            )

    def close(self) -> None:
        with self._sync_lock:
            if self._sync_db is not None:
                self._sync_db.close()
                self._sync_db = None
        super().close()

    def oldest_for(self, peer: str, limit: int) -> list[QueuedMessage]:
        with self._lock:
            return self._oldest_for(peer, limit)

    def _oldest_for(self, peer: str, limit: int) -> list[QueuedMessage]:
        return [
            QueuedMessage(int(i), p, m, k, ts, bytes(body))
            for i, p, m, k, ts, body in self._db.execute(
                "SELECT id, peer, message_id, kind, ts, body FROM cascade_out "
                "WHERE peer = ? ORDER BY id LIMIT ?",
                (peer, limit),
            )
        ]

    def acknowledge(self, key: int) -> bool:
        with self._lock, self._relaxed(), self._transaction():
            deleted = self._db.execute("DELETE FROM cascade_out WHERE id = ?", (key,)).rowcount
            if deleted:
                self._count("delivered", 1)
        return bool(deleted)

    def reject(self, key: int, result: SendResult | None = None) -> bool:
        with self._transaction():
            self._db.execute(
                "INSERT INTO cascade_refused (id, peer, message_id, kind, ts, body, error, refused_at) "
                "SELECT id, peer, message_id, kind, ts, body, ?, ? FROM cascade_out WHERE id = ?",
                (None if result is None else result.error[:500], time.time(), key),
            )
            deleted = self._db.execute("DELETE FROM cascade_out WHERE id = ?", (key,)).rowcount
            if deleted:
                self._count("refused", 1)
        return bool(deleted)

    def record_failure(self, key: int, error: str) -> None:
        with self._lock, self._relaxed(), self._transaction():
            self._db.execute(
                "UPDATE cascade_out SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error[:500], key),
            )

    def backlog(self, peer: str) -> int:
        with self._lock:
            return self._backlog(peer)

    def _backlog(self, peer: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cascade_out WHERE peer = ?", (peer,)).fetchone()[0])

    def refused(self, peer: str | None = None) -> list[dict]:
        with self._lock:
            return self._refused(peer)

    def _refused(self, peer: str | None) -> list[dict]:
        rows = self._db.execute(
            "SELECT peer, message_id, kind, ts, error FROM cascade_refused"
            " WHERE (? IS NULL OR peer = ?) ORDER BY id",
            (peer, peer),
        ).fetchall()
        return [dict(zip(("peer", "message_id", "kind", "ts", "error"), row)) for row in rows]

    def delivered(self) -> int:
        with self._lock:
            return int(self._meta("delivered"))


class PeerQueue:
    """The :class:`~carbonflow.delivery.DeliveryQueue` of one peer inside the shared outbox."""

    def __init__(self, outbox: CascadeOutbox, peer: str) -> None:
        self.outbox, self.peer = outbox, peer

    def oldest(self, limit: int) -> list[QueuedMessage]:
        return self.outbox.oldest_for(self.peer, limit)

    def acknowledge(self, key: int) -> bool:
        return self.outbox.acknowledge(key)

    def reject(self, key: int, result: SendResult) -> bool:
        return self.outbox.reject(key, result)

    def record_failure(self, key: int, error: str) -> None:
        self.outbox.record_failure(key, error)

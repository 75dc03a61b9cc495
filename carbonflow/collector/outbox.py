"""The durable outbox: a local SQLite file (WAL) between the pollers and the center.

Readings are appended at once (``pending``), together with the validator's per-point state, in one
transaction.  Batches are cut from them (at most ``max_readings`` each, or whatever is there once the
oldest has waited ``max_age_s``), given a ``batch_id`` (uuid4) and the collector's next ``seq``,
and stored unsigned (``batches``) in the same transaction that removes their readings from ``pending``
- before anything is sent.  A batch leaves the outbox only when the center's Ack for its ``batch_id``
arrives (:meth:`Outbox.acknowledge`) or when the center rejects it (4xx): it then moves to
``dead_letters``, kept for an operator, never retried by itself (:meth:`Outbox.requeue_dead_letters`
puts it back).  Every send signs the stored content anew (:meth:`StoredBatch.signed_body`: a fresh
``signed_at`` and ``nonce``), so a batch the center refused as stale or replayed — or one that waited
out an outage longer than the freshness window — is simply sent again; after a restart the stored
batches go with the same ``batch_id`` and content, so the center can tell a replay.

Retention is bounded by ``max_readings`` (pending + batched) and by ``max_bytes`` (the database file):
beyond either, :meth:`Outbox.append` refuses the whole append with :class:`OutboxFull` and counts the
refused readings - an explicit, reported loss instead of a silent one; nothing already stored is ever
dropped to make room.  ``max_bytes`` is SQLite's own ``max_page_count``, so the bound behaves exactly
like a full disk, and a really full disk (``SQLITE_FULL`` before the bound) is handled the same way.
Appends stop ``reserve_bytes`` short of the bound: cutting a batch writes its body before it deletes
its readings, so a full outbox can always still cut, send and (on the Ack) free - it never locks up.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from carbonflow.collector.validate import PointState
from carbonflow.delivery import SendResult, SqliteOutbox
from carbonflow.messages.c4 import Batch, DeviceStatus, Reading

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, point TEXT NOT NULL, ts TEXT NOT NULL,
    value TEXT, quality TEXT NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending_status (
    id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY, batch_id TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
    readings INTEGER NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    batch_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, readings INTEGER NOT NULL, body BLOB NOT NULL,
    status INTEGER, error TEXT NOT NULL, failed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS point_state (
    point TEXT PRIMARY KEY, last_ts TEXT, last_raw TEXT, wraps INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_nonces (nonce TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
"""


class OutboxFull(Exception):
    """The outbox holds its maximum of readings or bytes (or the disk is full); new readings are refused
    (and counted)."""


def disk_full(error: sqlite3.Error) -> bool:
    """SQLite's SQLITE_FULL: the disk, or the database's ``max_page_count``, is full."""
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(error)


@dataclass(frozen=True)
class StoredBatch:
    seq: int
    batch_id: str
    readings: int
    body: bytes  # the Batch JSON, unsigned (older outboxes: signed once; the stamp is replaced anyway)
    attempts: int

    def signed_body(self, secret: bytes) -> bytes:
        """The batch as it goes out now: stamped and signed at this send."""
        return Batch.model_validate_json(self.body).signed(secret).model_dump_json().encode()

    @property
    def key(self) -> str:
        return self.batch_id

    @property
    def label(self) -> str:
        return f"batch {self.batch_id}"


@dataclass(frozen=True)
class OutboxStats:
    pending_readings: int
    batches: int
    batched_readings: int
    dead_letters: int
    refused_readings: int
    max_readings: int
    used_bytes: int = 0
    max_bytes: int = 0  # 0: not bounded
    reserve_bytes: int = 0

    @property
    def full(self) -> bool:
        by_bytes = self.max_bytes > 0 and self.used_bytes >= self.max_bytes - self.reserve_bytes
        return by_bytes or self.pending_readings + self.batched_readings >= self.max_readings


class Outbox(SqliteOutbox):
    SCHEMA = SCHEMA

    MIN_RESERVE_BYTES = 64 * 1024

    def __init__(
        self,
        path: str | Path,
        max_readings: int = 2_000_000,
        max_bytes: int = 1 << 30,
        reserve_bytes: int | None = None,
    ) -> None:
        """``reserve_bytes``: room kept for cutting batches (default a quarter of ``max_bytes``, at
        most 1 MiB): appends are refused once the file's used pages come within it of ``max_bytes``."""
        super().__init__(path, durable=True)  # an appended reading survives a power cut
        self.max_readings = max_readings
        self.page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self.max_bytes = max(max_bytes, 4 * self.page_size)
        self._db.execute(f"PRAGMA max_page_count = {self.max_bytes // self.page_size:d}")
        self.reserve_bytes = min(
            self.max_bytes // 2,
            reserve_bytes if reserve_bytes is not None else min(self.max_bytes // 4, 1 << 20),
        )
        self._stored = self._count_stored()
        self._refused_unsaved = 0  # refusals counted while not even the counter could be written

    def used_bytes(self) -> int:
        """Bytes of the database file in use (its pages minus the free ones, which are reused)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (int(pages) - int(free)) * self.page_size

    def _count_stored(self) -> int:
        pending = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        batched = self._db.execute("SELECT COALESCE(SUM(readings), 0) FROM batches").fetchone()[0]
        return int(pending) + int(batched)

    # -- appending --------------------------------------------------------------------------------
    def append(
        self,
        readings: Iterable[Reading],
        statuses: Iterable[DeviceStatus] = (),
        states: dict[str, PointState] | None = None,
    ) -> int:
        """Store readings, statuses and point states in one transaction; returns readings stored."""
        rows = [(r.point, r.ts.isoformat(), r.value, r.quality) for r in readings]
        status_rows = [(s.model_dump_json(),) for s in statuses]
        now = time.time()
        try:
            return self._append(rows, status_rows, states, now)
        except sqlite3.OperationalError as error:
            if not disk_full(error):
                raise
            # the disk (or max_bytes) is full before the reserve was reached: refuse, as at the bound
            refused = self._count_refused(len(rows))
            raise OutboxFull(
                f"outbox {self.path}: disk full ({error}): {len(rows)} new readings refused, {refused} so far"
            ) from None

    def _count_refused(self, readings: int) -> int:
        """Count refused readings in a transaction of their own; if even that cannot be written (the
        disk is full), they are kept in memory and written with the next count that can."""
        self._refused_unsaved += readings
        try:
            with self._transaction():
                refused = int(self._meta("refused_readings", "0")) + self._refused_unsaved
                self._set_meta("refused_readings", str(refused))
        except sqlite3.OperationalError as error:
            if not disk_full(error):
                raise
            return int(self._meta("refused_readings", "0")) + self._refused_unsaved
        self._refused_unsaved = 0
        return refused

    def _full_because(self, rows: int) -> str | None:
        if self._stored + rows > self.max_readings:
            return f"{self._stored} of {self.max_readings} readings"
        used = self.used_bytes()
        if used >= self.max_bytes - self.reserve_bytes:
            return f"{used} of {self.max_bytes} bytes, {self.reserve_bytes} kept for batches"
        return None

    def _append(
        self,
        rows: list[tuple[str, str, str | None, str]],
        status_rows: list[tuple[str]],
        states: dict[str, PointState] | None,
        now: float,
    ) -> int:
        with self._transaction():
            if rows and (because := self._full_because(len(rows))) is not None:
                refused = int(self._meta("refused_readings", "0")) + len(rows) + self._refused_unsaved
                self._set_meta("refused_readings", str(refused))
                # statuses still get through: they are how the center learns the outbox is full
                self._insert_statuses(status_rows, now)
                full = OutboxFull(
                    f"outbox {self.path} full ({because}): {len(rows)} new readings refused, {refused} so far"
                )
            else:
                full = None
                self._db.executemany(
                    "INSERT INTO pending (point, ts, value, quality, added_at) VALUES (?, ?, ?, ?, ?)",
                    [(*row, now) for row in rows],
                )
                self._insert_statuses(status_rows, now)
            if states:
                self._db.executemany(
                    "INSERT OR REPLACE INTO point_state (point, last_ts, last_raw, wraps) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (
                            point,
                            None if s.last_ts is None else s.last_ts.isoformat(),
                            None if s.last_raw is None else str(s.last_raw),
                            s.wraps,
                        )
                        for point, s in states.items()
                    ],
                )
        if full is not None:
            self._refused_unsaved = 0
            raise full
        self._stored += len(rows)
        return len(rows)

    def _insert_statuses(self, status_rows: list[tuple[str]], now: float) -> None:
        """Statuses may use half the reserve; beyond, they are left out (each device's state is sent
        again every status period, so the latest one still reaches the center once there is room)."""
        if status_rows and self.used_bytes() < self.max_bytes - self.reserve_bytes // 2:
            self._db.executemany(
                "INSERT INTO pending_status (body, added_at) VALUES (?, ?)",
                [(*s, now) for s in status_rows],
            )

    def load_states(self) -> dict[str, PointState]:
        states = {}
        for point, last_ts, last_raw, wraps in self._db.execute(
            "SELECT point, last_ts, last_raw, wraps FROM point_state"
        ):
            states[point] = PointState(
                None if last_ts is None else datetime.fromisoformat(last_ts),
                None if last_raw is None else Decimal(last_raw),
                int(wraps),
            )
        return states

    def latest_reading_ts(self) -> datetime | None:
        """The time of the latest reading this collector has taken (sent or still queued)."""
        times = [state.last_ts for state in self.load_states().values() if state.last_ts is not None]
        return max(times, default=None)

    # -- batching ---------------------------------------------------------------------------------
    def form_batch(
        self,
        collector_id: str,
        secret: bytes,
        max_readings: int,
        max_age_s: float,
        config_version: str | None = None,
        force: bool = False,
    ) -> Batch | None:
        """Cut one batch when ``max_readings`` are waiting, the oldest waited ``max_age_s``, or
        ``force``; it is stored (unsigned) before this returns, and returned signed.  None: nothing to
        cut yet."""
        now = time.time()
        count, oldest = self._db.execute("SELECT COUNT(*), MIN(added_at) FROM pending").fetchone()
        status_count, status_oldest = self._db.execute(
            "SELECT COUNT(*), MIN(added_at) FROM pending_status"
        ).fetchone()
        oldest_any = min(t for t in (oldest, status_oldest, now) if t is not None)
        if not count and not status_count:
            return None
        if not (force or count >= max_readings or now - oldest_any >= max_age_s):
            return None
        try:
            return self._cut_batch(collector_id, secret, max_readings, config_version)
        except sqlite3.OperationalError as error:
            if not disk_full(error):
                raise
            # only a disk filled by something else gets here (the reserve is for this); once batches
            # are acknowledged, or the disk is freed, the next attempt goes through
            log.warning("outbox %s: no room to cut a batch (%s); retrying", self.path, error)
            return None

    def _cut_batch(
        self, collector_id: str, secret: bytes, max_readings: int, config_version: str | None
    ) -> Batch:
        with self._transaction():
            rows = self._db.execute(
                "SELECT id, point, ts, value, quality FROM pending ORDER BY id LIMIT ?", (max_readings,)
            ).fetchall()
            status_rows = self._db.execute("SELECT id, body FROM pending_status ORDER BY id").fetchall()
            seq = int(self._meta("next_seq", "0"))
            batch = Batch(
                collector_id=collector_id,
                batch_id=str(uuid.uuid4()),
                seq=seq,
                created_at=datetime.now(UTC),
                config_version=config_version,
                readings=[
                    Reading(point=point, ts=datetime.fromisoformat(ts), value=value, quality=quality)
                    for _, point, ts, value, quality in rows
                ],
                statuses=[DeviceStatus.model_validate_json(body) for _, body in status_rows],
            )
            self._db.execute(
                "INSERT INTO batches (seq, batch_id, created_at, readings, body) VALUES (?, ?, ?, ?, ?)",
                (
                    seq,
                    batch.batch_id,
                    batch.created_at.isoformat(),
                    len(rows),
                    batch.model_dump_json().encode(),
                ),
            )
            if rows:
                self._db.execute("DELETE FROM pending WHERE id <= ?", (rows[-1][0],))
            if status_rows:
                self._db.execute("DELETE FROM pending_status WHERE id <= ?", (status_rows[-1][0],))
            self._set_meta("next_seq", str(seq + 1))
        return batch.signed(secret)

    def unacked(self, limit: int = 1) -> list[StoredBatch]:
        """The oldest stored batches (by seq), to send or send again."""
        return [
            StoredBatch(int(seq), batch_id, int(n), bytes(body), int(attempts))
            for seq, batch_id, n, body, attempts in self._db.execute(
                "SELECT seq, batch_id, readings, body, attempts FROM batches ORDER BY seq LIMIT ?", (limit,)
            )
        ]

    oldest = unacked  # the DeliveryQueue protocol

    def acknowledge(self, batch_id: str) -> bool:
        """The center committed the batch: delete it.  False if it was not (or no longer) here."""
        with self._transaction():
            row = self._db.execute("SELECT readings FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        self._stored -= int(row[0])
        return True

    def record_failure(self, batch_id: str, error: str) -> None:
        try:
            with self._transaction():
                self._db.execute(
                    "UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE batch_id = ?",
                    (error[:500], batch_id),
                )
        except sqlite3.OperationalError as full:  # the count of attempts is not worth a stuck sender
            if not disk_full(full):
                raise

    def dead_letter(self, batch_id: str, status: int | None, error: str) -> bool:
        """The center rejected the batch: keep it aside for an operator, never resend it by itself."""
        with self._transaction():
            row = self._db.execute(
                "SELECT seq, readings, body FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letters "
                "(batch_id, seq, readings, body, status, error, failed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch_id, row[0], row[1], row[2], status, error[:2000], datetime.now(UTC).isoformat()),
            )
            self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        self._stored -= int(row[1])
        return True

    def reject(self, batch_id: str, result: SendResult) -> bool:
        return self.dead_letter(batch_id, result.status, result.error)

    def dead_letters(self) -> list[dict[str, object]]:
        return [
            {"batch_id": b, "seq": s, "readings": n, "status": st, "error": e, "failed_at": f}
            for b, s, n, st, e, f in self._db.execute(
                "SELECT batch_id, seq, readings, status, error, failed_at FROM dead_letters ORDER BY seq"
            )
        ]

    def requeue_dead_letters(self) -> int:
        """Put every dead letter back in the queue (same batch_id), e.g. after the center was fixed."""
        with self._transaction():
            rows = self._db.execute("SELECT batch_id, seq, readings, body FROM dead_letters").fetchall()
            for batch_id, seq, readings, body in rows:
                self._db.execute(
                    "INSERT OR IGNORE INTO batches (seq, batch_id, created_at, readings, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (seq, batch_id, datetime.now(UTC).isoformat(), readings, body),
                )
            self._db.execute("DELETE FROM dead_letters")
        self._stored = self._count_stored()
        return len(rows)

    def stats(self) -> OutboxStats:
        pending = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        batches, batched = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(readings), 0) FROM batches"
        ).fetchone()
        dead = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        return OutboxStats(
            int(pending),
            int(batches),
            int(batched),
            int(dead),
            int(self._meta("refused_readings", "0")) + self._refused_unsaved,
            self.max_readings,
            self.used_bytes(),
            self.max_bytes,
            self.reserve_bytes,
        )

    # -- nonces of the center's messages (messages.signing.NonceJournal) ---------------------------
    def nonces_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """The nonces of commands and configurations accepted since ``since``: still replayable."""
        rows = self._db.execute(
            "SELECT nonce, seen_at FROM seen_nonces WHERE seen_at >= ?", (since.isoformat(),)
        ).fetchall()
        return [(nonce, datetime.fromisoformat(seen_at)) for nonce, seen_at in rows]

    def record_nonce(self, nonce: str, seen_at: datetime, forget_before: datetime) -> None:
        """Remember an accepted nonce (durably, before the command runs) and forget expired ones.  A full
        outbox keeps it in memory only (logged): refusing the center's commands then would be worse."""
        try:
            with self._transaction():
                self._db.execute("DELETE FROM seen_nonces WHERE seen_at < ?", (forget_before.isoformat(),))
                self._db.execute(
                    "INSERT OR IGNORE INTO seen_nonces (nonce, seen_at) VALUES (?, ?)",
                    (nonce, seen_at.astimezone(UTC).isoformat()),
                )
        except sqlite3.OperationalError as error:
            if not disk_full(error):
                raise
            log.warning("outbox %s full: nonce of a center message kept in memory only", self.path)

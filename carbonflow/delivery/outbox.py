"""The durable outbox base: one SQLite file (WAL) that survives a crash, and the queue protocol a
:class:`~carbonflow.delivery.loop.DeliveryLoop` sends from.

A subclass gives its ``SCHEMA`` and ``META_TABLE`` (``key TEXT PRIMARY KEY, value``) and implements
:class:`DeliveryQueue`: the oldest queued items, and what to do when one is acknowledged, rejected or
failed.  Items name themselves by ``key`` (what the queue methods take) and ``label`` (for logs).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from carbonflow.delivery.outcome import SendResult


class Queued(Protocol):
    @property
    def key(self) -> Hashable: ...

    @property
    def label(self) -> str: ...


Item = TypeVar("Item", bound=Queued)


class DeliveryQueue(Protocol[Item]):
    def oldest(self, limit: int) -> list[Item]: ...

    def acknowledge(self, key, /) -> bool: ...  # the peer committed it: delete it

    def reject(self, key, result: SendResult, /) -> bool: ...  # refused for good: keep aside or drop

    def record_failure(self, key, error: str, /) -> None: ...  # stays queued; count the attempt


class SqliteOutbox:
    SCHEMA = ""
    META_TABLE = "meta"

    def __init__(self, path: str | Path, *, durable: bool = False, any_thread: bool = False) -> None:
        """``durable``: fsync every commit (an appended item survives a power cut)."""
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=not any_thread)
        self._db.execute("PRAGMA journal_mode=WAL")
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(self.SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite itself rolls back on some errors (SQLITE_FULL): the
                self._db.execute("ROLLBACK")  # error that did it must not be hidden by this one
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _relaxed(self) -> Iterator[None]:
        """Commits that need not reach the disk at once (an acknowledgement lost in a power cut only
        sends an item again, which the peer de-duplicates): no fsync, the next durable commit carries
        them to the disk (WAL)."""
        if not self.durable:
            yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def _meta(self, key: str, default: str = "0") -> str:
        # bandit B608: the table name is a class constant and every value is bound
        query = f"SELECT value FROM {self.META_TABLE} WHERE key = ?"  # nosec B608
        row = self._db.execute(query, (key,)).fetchone()
        return default if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        query = f"INSERT OR REPLACE INTO {self.META_TABLE} (key, value) VALUES (?, ?)"  # nosec B608
        self._db.execute(query, (key, value))

    def _count(self, key: str, add: int = 1) -> None:
        self._db.execute(
            f"INSERT INTO {self.META_TABLE} (key, value) VALUES (?, ?) "  # nosec B608 (constant table)
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (key, add),
        )

"""The steps of a cascade node and their group commit.

Everything a node does for one received message, one submitted part or one resumed interval is one
*step*: it runs under the node's lock (steps are serialised, the node's memory is exact), and collects
what it stores (store writes), what it sends (signed envelopes for the outbox) and work for later.
When the step ends it is queued for commit and the lock is released, so the next step can run while
this one's data goes to disk.  Commits are grouped: the thread that finds the queue not being committed
takes **every** step queued so far, in step order, and commits them together: their messages to the
outbox in one transaction, the peers woken at once (the messages travel while the rest is written),
everything they store in one store transaction, then one fsync of the outbox.  Each step's caller
returns (a received message is acknowledged, a submitted part handed in) only once its own step is
committed and the messages it sends are on disk.  When four lower centers' reports arrive at once, the
four judgements are made one after another but reach the disk in one or two commits instead of four.

A message may therefore reach its peer before it is on this center's disk, never before it is in the
outbox (a crash of the process keeps it; the 200 for the step that made it has not gone back yet, so
after a power cut that step is done again: its upper or lower resends, the metering meters again).
Outbox first: a crash between the outbox and store commits sends the messages again under new ids
after the restart, which the peers take as replays (same payload) — never counted twice.  A commit
that fails fails every step of its group (their callers get the error, their senders retry) and the
node's memory is reloaded from the store.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carbonflow.center.cascade.outbox import CascadeOutbox
from carbonflow.center.store import Store

Send = tuple[str, str, str, str, bytes]  # peer, message_id, kind, ts (ISO), signed body
log = logging.getLogger(__name__)


def _logged(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # work for later only saves work later (the judge solves again without it)
        log.exception("cascade: work after a step failed")


@dataclass
class _Batch:
    """What one step stores, sends and does afterwards."""

    writes: list[Callable[[Any], None]] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    touched: set[datetime] = field(default_factory=set)
    after: list[Callable[[], None]] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None


class Steps:
    def __init__(
        self,
        store: Store,
        outbox: CascadeOutbox,
        wake: Callable[[str], None],
        forget: Callable[[set[datetime] | None], None],
        commit: Callable[[list[Callable[[Any], None]]], None] | None = None,
    ) -> None:
        """``wake(peer)``: the peer has mail; ``forget(intervals)``: drop what memory holds of these
        intervals (None: of every interval), it is reloaded from the store; ``commit(writes)``: writes
        a group's writes, in their order, in one store transaction and commits it (default: each write
        called in turn with the connection of :meth:`Store.write`; the node batches its records,
        ``store.cascade.commit_group``)."""
        self.store, self.outbox, self.wake, self.forget = store, outbox, wake, forget
        self.commit = commit or self._commit_each
        self.lock = threading.RLock()  # the node's lock: one step at a time
        self.listeners: list[Callable[[list[datetime]], None]] = []  # intervals a committed step changed
        self._depth = 0
        self._batch = _Batch()
        self._queued: list[_Batch] = []  # stepped, not committed yet, in step order
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # held by the thread committing a group
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-later")

    def _commit_each(self, writes: list[Callable[[Any], None]]) -> None:
        with self.store.write() as connection:
            for write in writes:
                write(connection)

    # -- inside a step ------------------------------------------------------------------------------
    def write(self, ts: datetime, write: Callable[[Any], None]) -> None:
        assert self._depth > 0, "cascade store writes happen inside a step"
        self._batch.writes.append(write)
        self._batch.touched.add(ts)

    def send(self, item: Send) -> None:
        assert self._depth > 0, "cascade messages are sent inside a step"
        self._batch.sends.append(item)

    def later(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the step is committed, outside the lock, in the node's background thread:
        the step's caller does not wait for it (a peer's message is acknowledged without it)."""
        self._batch.after.append(work)

    def drain(self) -> None:
        """Wait until the work for later queued so far is done (tests, shutdown)."""
        self._background.submit(lambda: None).result()

    # -- the step -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One step (steps nest: only the outermost one commits).  Returns once it is committed; the
        step listeners run then, with the lock released, and the work for later is handed to the
        background thread."""
        batch = None
        with self.lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                yield
                if outer:
                    batch = self._batch
                    with self._queue_lock:
                        self._queued.append(batch)
            except BaseException:
                if outer:  # nothing of the step was stored: memory reloads its intervals from the store
                    self.forget(self._batch.touched)
                raise
            finally:
                self._depth -= 1
                if outer:
                    self._batch = _Batch()
        if batch is None:
            return
        self._commit(batch)
        touched = sorted(batch.touched)
        for listener in self.listeners:
            listener(touched)
        for work in batch.after:
            self._background.submit(_logged, work)

    def _commit(self, batch: _Batch) -> None:
        with self._commit_lock:
            if not batch.done:
                with self._queue_lock:
                    group, self._queued = self._queued, []
                self._commit_group(group)
        if batch.error is not None:
            raise batch.error

    def _commit_group(self, group: list[_Batch]) -> None:
        sends = [item for b in group for item in b.sends]
        writes = [write for b in group for write in b.writes]
        try:
            if sends:
                self.outbox.queue_many(sends)  # committed, not yet synced: the senders may go at once
                for peer in dict.fromkeys(item[0] for item in sends):
                    self.wake(peer)
            if writes:
                self.commit(writes)
            if sends:
                self.outbox.sync()  # on disk before any step of the group is acknowledged
        except BaseException as error:
            for b in group:
                b.error = error
            with self.lock:  # steps queued after this group may have read what it held: reload all
                self.forget(None)
        finally:
            for b in group:
                b.done = True

"""Batches that wait together are stored together (issue 17 §2).

Each receiving thread (an HTTP request in the thread pool, an MQTT batch worker) hands its decoded,
authenticated batch to :meth:`BatchGroups.store` and gets its own Ack — or its own refusal raised — once
the batch is committed.  Whoever finds no group being stored stores at once: the batch is alone, no
wait is added.  While a group is in the database, the batches that arrive queue; the thread whose
group finished (or, once its own batch is done, the next waiting thread) takes up to ``max_batches``
of them, at most ``max_readings`` readings (but always one), as the next group: one transaction, one
COPY, one lock and move of the chain heads for all of them (``store.readings.ingest_batches``), each
batch still refused or acknowledged on its own.  Storing groups one at a time costs no parallelism:
batches of the same points waited for each other's chain-head locks anyway.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from carbonflow.center.store import Store
from carbonflow.center.store.readings import canonical_digest, ingest_batches
from carbonflow.messages.c4 import Ack, Batch

MAX_BATCHES = 8
MAX_READINGS = 20_000


@dataclass(eq=False)
class _Waiting:
    batch: Batch
    received_at: datetime
    digest: str
    outcome: Ack | BaseException | None = None  # None until its group is stored


class BatchGroups:
    """Store batches of concurrent callers in groups; see the module docstring."""

    def __init__(self, store: Store, *, max_batches: int = MAX_BATCHES, max_readings: int = MAX_READINGS):
        if max_batches < 1:
            raise ValueError("a group holds at least one batch")
        self.store = store
        self.max_batches = max_batches
        self.max_readings = max_readings
        self._changed = threading.Condition()
        self._waiting: deque[_Waiting] = deque()
        self._storing = False  # a thread is storing groups
        self.groups = 0  # groups stored, and the batches in them (for benchmarks and tests)
        self.batches = 0

    def store_batch(
        self, batch: Batch, *, received_at: datetime | None = None, canonical: bytes | None = None
    ) -> Ack:
        """Store ``batch`` (with others waiting meanwhile); its Ack after the commit, or its refusal."""
        item = _Waiting(
            batch,
            received_at or datetime.now(UTC),
            canonical_digest(batch.canonical() if canonical is None else canonical),
        )
        with self._changed:
            self._waiting.append(item)
            while item.outcome is None and self._storing:
                self._changed.wait()
            if item.outcome is None:
                self._storing = True
        if item.outcome is None:
            self._store_until_done(item)
        if isinstance(item.outcome, BaseException):
            raise item.outcome
        assert item.outcome is not None
        return item.outcome

    def _store_until_done(self, item: _Waiting) -> None:
        try:
            while item.outcome is None:
                group = self._next_group()
                outcomes: list = [RuntimeError("the group was not stored")] * len(group)
                try:
                    outcomes = ingest_batches(
                        self.store, [(each.batch, each.received_at, each.digest) for each in group]
                    )
                except Exception as error:  # not a batch's refusal (ingest_batches answers those)
                    outcomes = [error] * len(group)
                finally:  # every batch taken gets an answer, even if this thread is interrupted
                    with self._changed:
                        for each, outcome in zip(group, outcomes, strict=True):
                            each.outcome = outcome
                        self.groups += 1
                        self.batches += len(group)
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._storing = False
                self._changed.notify_all()  # a waiting thread whose batch is not done stores next

    def _next_group(self) -> list[_Waiting]:
        with self._changed:
            group = [self._waiting.popleft()]
            readings = len(group[0].batch.readings)
            while self._waiting and len(group) < self.max_batches:
                readings += len(self._waiting[0].batch.readings)
                if readings > self.max_readings:
                    break
                group.append(self._waiting.popleft())
            return group

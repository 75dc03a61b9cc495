"""The sender with back-off: sends the oldest queued items of a durable queue, settles each by its
outcome (acked -> deleted, rejected -> set aside, retry / unauthorized -> kept, counted, back off)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic

from carbonflow.delivery.backoff import RoundFailed, forever_with_backoff
from carbonflow.delivery.outbox import DeliveryQueue, Item
from carbonflow.delivery.outcome import SendResult

log = logging.getLogger(__name__)


def _ignore(_text: str) -> None:
    pass


class DeliveryLoop(Generic[Item]):
    IDLE_S = 1.0  # an empty queue is looked at again this often even without a wake()

    def __init__(
        self,
        queue: DeliveryQueue[Item],
        send: Callable[[Item], Awaitable[SendResult]],
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        in_flight: int = 1,
        on_event: Callable[[str], None] = _ignore,
        rejected_note: str = "",
        idle_s: float = IDLE_S,
    ) -> None:
        """``idle_s``: how often an empty queue is looked at without a ``wake()`` (a queue whose every
        producer wakes the loop can afford a long one: each look is a query)."""
        self.queue, self.send = queue, send
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.in_flight = in_flight
        self.on_event = on_event
        self.rejected_note = rejected_note  # what became of a rejected item, for the event line
        self.idle_s = idle_s
        self.delivered = 0  # acknowledged in this run
        self.rejected = 0
        self.last_error: str | None = None
        self._ready = asyncio.Event()

    def wake(self) -> None:
        self._ready.set()

    async def run(self) -> None:
        await forever_with_backoff(self._round, self.backoff_min_s, self.backoff_max_s)

    async def _round(self) -> None:
        items = self.queue.oldest(self.in_flight)
        if not items:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.idle_s)
            return
        results = await asyncio.gather(*(self.send(item) for item in items))
        if [self.settle(item, result) for item, result in zip(items, results)].count(True):
            raise RoundFailed

    def settle(self, item: Item, result: SendResult) -> bool:
        """Apply the peer's verdict; True when the peer is away or refuses us (back off)."""
        if result.outcome == "acked":
            self.acknowledged(item.key)
            self.last_error = None
            return False
        if result.outcome == "rejected":
            self.queue.reject(item.key, result)
            self.rejected += 1
            self.on_event(f"{item.label} rejected by the center{self.rejected_note}: {result.error}")
            return False
        self.queue.record_failure(item.key, result.error)
        if result.error != self.last_error:
            log.warning("%s not delivered (%s): %s", item.label, result.outcome, result.error)
        self.last_error = result.error
        if result.outcome == "unauthorized":
            self.on_event(f"the center refuses our credentials: {result.error}")
        return True

    def acknowledged(self, key) -> None:
        """An acknowledgement, also one nobody waited for (sent before a restart)."""
        if self.queue.acknowledge(key):
            self.delivered += 1

"""The tie link running next to a center's API and metering: one delivery loop per neighbour with a URL
(signed documents pushed to its ``POST /api/v1/ties/intensities``), the metering's hook and observer,
and the re-metering of an interval when a neighbour's intensities for it arrive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from carbonflow.center.cascade.outbox import CascadeOutbox, PeerQueue, QueuedMessage
from carbonflow.center.crossregion.config import TiesConfig
from carbonflow.center.crossregion.link import TieLink
from carbonflow.center.store import Store
from carbonflow.delivery import DeliveryLoop, HttpSender, SendResult, cancel_and_wait
from carbonflow.delivery.tls import client_context

log = logging.getLogger(__name__)
DOCUMENTS_PATH = "/api/v1/ties/intensities"


def metering_observer(link: TieLink) -> Callable[[Any], None]:
    """The observer a ``MeteringLoop`` calls with each outcome (in a worker thread): publish it."""

    def observe(outcome) -> None:
        if outcome.stored:
            link.publish(outcome.end, outcome.intensities, not outcome.complete, outcome.version)

    return observe


class TieService:
    def __init__(self, link: TieLink) -> None:
        self.link = link
        self.loops: dict[str, DeliveryLoop[QueuedMessage]] = {}
        self._senders: list[HttpSender] = []
        self._tasks: list[asyncio.Task] = []
        self._remeters: set[asyncio.Future] = set()

    @classmethod
    def open(cls, store: Store, config: TiesConfig, topology: Mapping[str, Any], **kwargs) -> TieService:
        outbox = CascadeOutbox(Path(config.outbox_path), durable=config.outbox_durable)
        return cls(TieLink(store, config, topology, outbox, **kwargs))

    def attach(self, metering_loop) -> None:
        """Hook the link into a ``MeteringLoop``: its service uses the neighbours' intensities, each
        outcome is published, and an arrival re-meters the interval it concerns."""
        metering_loop.service.ties = self.link
        metering_loop.observers.append(metering_observer(self.link))
        event_loop = asyncio.get_running_loop()

        def arrived(ts, reason: str) -> None:  # called in the API's worker thread
            future = asyncio.run_coroutine_threadsafe(metering_loop.remeter(ts, reason), event_loop)
            self._remeters.add(future)
            future.add_done_callback(self._remeters.discard)

        self.link.on_arrival = arrived

    async def start(self) -> None:
        config = self.link.config
        loop = asyncio.get_running_loop()
        tls = client_context(config.ca_file) if config.ca_file else None
        for neighbour in config.neighbours:
            if not neighbour.url or self.link.outbox is None:
                continue
            sender = HttpSender(neighbour.url, config.timeout_s, tls)
            await sender.start()
            self._senders.append(sender)

            async def send(item: QueuedMessage, sender: HttpSender = sender) -> SendResult:
                return await sender.send(DOCUMENTS_PATH, item.body, {"content-type": "application/json"})

            self.loops[neighbour.id] = DeliveryLoop(
                PeerQueue(self.link.outbox, neighbour.id),
                send,
                backoff_min_s=config.backoff_min_s,
                backoff_max_s=config.backoff_max_s,
                rejected_note=" (kept aside in the ties outbox)",
            )
        self.link.wake = lambda neighbour: loop.call_soon_threadsafe(self._wake, neighbour)
        self._tasks = [asyncio.create_task(d.run(), name=f"ties-{n}") for n, d in self.loops.items()]

    def _wake(self, neighbour: str) -> None:
        if neighbour in self.loops:
            self.loops[neighbour].wake()

    async def stop(self) -> None:
        self.link.wake = lambda _neighbour: None
        self.link.on_arrival = lambda _ts, _why: None
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for sender in self._senders:
            await sender.stop()
        self._senders = []
        if self.link.outbox is not None:
            self.link.outbox.close()

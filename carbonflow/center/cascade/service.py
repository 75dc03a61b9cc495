"""The cascade running next to a center's API: one delivery loop per peer with a URL (HTTP, through
``carbonflow/delivery``), started and stopped with the app; unfinished intervals resumed at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from carbonflow.center.cascade.config import CascadeConfig
from carbonflow.center.cascade.node import CascadeNode
from carbonflow.center.cascade.outbox import CascadeOutbox, PeerQueue, QueuedMessage
from carbonflow.center.cascade.verify import Tolerances
from carbonflow.center.store import Store
from carbonflow.delivery import DeliveryLoop, SendResult, StreamSender, cancel_and_wait
from carbonflow.delivery.tls import client_context

MESSAGES_PATH = "/api/v1/cascade/messages"
# a peer's idle connection is reused this long: well below uvicorn's 5 s keep-alive timeout, so a
# message is not sent on a connection the peer is closing (it would wait for the back-off to go again)
KEEPALIVE_EXPIRY_S = 2.0
# every message is queued by a step, which wakes its peer's loop: the loops' look at an empty queue
# without a wake is only a safety net, and each look is a query (20 loops in the reference cascade)
IDLE_LOOK_S = 10.0


class _RefusalAware(PeerQueue):
    def __init__(self, outbox: CascadeOutbox, peer: str, node: CascadeNode) -> None:
        super().__init__(outbox, peer)
        self.node = node

    def reject(self, key: int, result: SendResult) -> bool:
        item = next((m for m in self.outbox.oldest_for(self.peer, 1_000) if m.id == key), None)
        done = super().reject(key, result)
        if item is not None:
            self.node.refused_by_peer(item, result)
        return done


class CascadeService:
    def __init__(self, node: CascadeNode) -> None:
        self.node = node
        self.loops: dict[str, DeliveryLoop[QueuedMessage]] = {}
        self._senders: list[StreamSender] = []
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def open(cls, store: Store, config: CascadeConfig, **node_kwargs) -> CascadeService:
        outbox = CascadeOutbox(Path(config.outbox_path), durable=config.outbox_durable)
        node_kwargs.setdefault("tolerances", Tolerances(energy_share=config.balance_share))
        return cls(CascadeNode(store, config, outbox, **node_kwargs))

    async def start(self) -> None:
        config = self.node.config
        loop = asyncio.get_running_loop()
        tls = client_context(config.ca_file) if config.ca_file else None  # None: the system's CAs
        for peer in config.peers:
            if not peer.url:
                continue
            # a lean HTTP/1.1 client (one keep-alive connection, one message at a time): httpx cost
            # ~1.2 ms of CPU per message, ~20 % of what the centers spent on an interval (docs/cascade.md)
            sender = StreamSender(peer.url, config.timeout_s, tls, KEEPALIVE_EXPIRY_S)
            await sender.start()
            self._senders.append(sender)

            async def send(item: QueuedMessage, sender: StreamSender = sender) -> SendResult:
                return await sender.send(MESSAGES_PATH, item.body, {"content-type": "application/json"})

            self.loops[peer.id] = DeliveryLoop(
                _RefusalAware(self.node.outbox, peer.id, self.node),
                send,
                backoff_min_s=config.backoff_min_s,
                backoff_max_s=config.backoff_max_s,
                rejected_note=" (kept aside in the cascade outbox)",
                idle_s=IDLE_LOOK_S,
            )
        self.node.wake = lambda peer: loop.call_soon_threadsafe(self._wake, peer)
        self._tasks = [asyncio.create_task(d.run(), name=f"cascade-{p}") for p, d in self.loops.items()]
        await run_in_threadpool(self.node.resume)

    def _wake(self, peer: str) -> None:
        if peer in self.loops:
            self.loops[peer].wake()

    async def stop(self) -> None:
        self.node.wake = lambda _peer: None
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await asyncio.to_thread(self.node.steps.drain)  # work for later still running reads the store
        for sender in self._senders:
            await sender.stop()
        self._senders = []
        self.node.outbox.close()

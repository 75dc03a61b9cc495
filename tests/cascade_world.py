"""A cascade of real centers on localhost for the tests: one store, one outbox, one uvicorn server and
port per center (province, cities, counties of the reference grid), exchanging over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import datetime
from pathlib import Path

import uvicorn

from carbonflow.center.api.app import create_app
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.cascade.feed import exchanged
from carbonflow.center.cascade.layout import cascade_configs, leaf_regions
from carbonflow.center.cascade.node import Mismatch
from carbonflow.center.cascade.service import CascadeService
from carbonflow.center.cascade.split import bus_regions, region_part
from carbonflow.center.store import Store
from carbonflow.center.store.cascade import result_at

TOKEN = "cascade-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bound_socket() -> socket.socket:
    """A listening socket on a free port, bound now and served at the first start: a port only looked up
    and bound later could meanwhile be taken by an outgoing connection (the same ephemeral range)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Center:
    def __init__(
        self, config, store: Store, port: int, sock: socket.socket | None = None, **node_kwargs
    ) -> None:
        self.config, self.store, self.port, self.sock = config, store, port, sock
        self.node_kwargs = node_kwargs
        self.mismatches: list[Mismatch] = []
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None
        self.service: CascadeService | None = None

    @property
    def id(self) -> str:
        return self.config.center_id

    @property
    def node(self):
        return self.service.node

    async def start(self) -> None:
        self.service = CascadeService.open(self.store, self.config, **self.node_kwargs)
        self.service.node.on_mismatch(self.mismatches.append)
        settings = CenterSettings(database_url="sqlite://", api_tokens={TOKEN: "tester"})
        app = create_app(settings, store=self.store, cascade=self.service)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        sockets, self.sock = ([self.sock] if self.sock is not None else None), None  # a restart binds again
        self.task = asyncio.create_task(self.server.serve(sockets=sockets))
        while not self.server.started:
            assert not self.task.done(), f"center {self.id} did not start"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.server = None


class World:
    def __init__(self, grid: dict, directory: Path, url_of_store, *, max_level="county", losses="receiving",
                 interval_s=3600, node_kwargs=None) -> None:  # fmt: skip
        regions = [
            r
            for r in grid["regions"]
            if len(r["path"].split("/")) <= ("province", "city", "county").index(max_level) + 1
        ]
        sockets = {region["path"].lower().replace("/", "-"): bound_socket() for region in regions}
        self.ports = {cid: sock.getsockname()[1] for cid, sock in sockets.items()}
        self.configs = cascade_configs(
            regions, lambda cid: f"http://127.0.0.1:{self.ports[cid]}", directory, interval_s=interval_s,
            losses=losses, backoff_min_s=0.05, backoff_max_s=0.5,
        )  # fmt: skip
        self.regions = bus_regions(grid)
        self.leaves = leaf_regions(self.configs)
        node_kwargs = node_kwargs or {}
        self.centers = {
            cid: Center(
                config,
                Store.open(url_of_store(cid)),
                self.ports[cid],
                sockets[cid],
                **node_kwargs.get(cid, {}),
            )
            for cid, config in self.configs.items()
        }

    @property
    def root(self) -> Center:
        return next(c for c in self.centers.values() if c.config.upper is None)

    async def start(self) -> None:
        for center in self.centers.values():
            await center.start()

    async def stop(self) -> None:
        for center in self.centers.values():
            await center.stop()
        for center in self.centers.values():
            if center.sock is not None:  # never started
                center.sock.close()
            center.store.close()

    def submit(self, ts: datetime, snapshot: dict, tamper=None) -> None:
        """Each metering center's own part of the interval (``tamper(center_id, part)`` may change it)."""
        for cid, region in self.leaves.items():
            part = region_part(snapshot, self.regions, region)
            if tamper is not None:
                part = tamper(cid, part) or part
            self.centers[cid].node.submit_part(ts, part)

    def done(self, ts: datetime) -> bool:
        """Every center has its result and every lower center's report is judged at both ends."""
        return all(exchanged(c.store, c.config, ts) for c in self.centers.values())

    async def wait(self, ts: datetime, timeout_s: float = 30.0) -> None:
        for _ in range(int(timeout_s / 0.02)):
            if self.done(ts):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"interval {ts.isoformat()} not exchanged and verified within {timeout_s} s")

    def intensities(self, ts: datetime) -> dict[str, float | None]:
        """Every bus's intensity as the center metering it stored it."""
        found = {}
        for cid in self.leaves:
            center = self.centers[cid]
            document = result_at(center.store, ts, center.config.region)["document"]
            found.update({b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]})
        return found

"""``carbonflow demo`` (default; ``--single``: without): the demo's metering handed to a cascade of centers.

The province center is the demo's center (its store, its web UI on ``--port``); every city and county
center runs in the same process with its own SQLite store (``<dir>/cascade/<id>.db``), its own outbox
and its own HTTP port, the centers exchanging over real HTTP with signed messages
(``docs/cascade.md``).  Each interval the demo's metering assembles from the collector's readings is
split by region: each county center gets its region's part (``split.region_part``), the cities and the
province merge, recompute and verify.  One line per interval says how each level verified it, and how
far the hierarchical intensities are from the single-center metering of the same readings.

Keys are made afresh at every start (``layout.cascade_configs``) and the cascade directory is cleared:
a message signed with an earlier run's key would be refused by the new peers for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn

from carbonflow.center.api.app import create_app
from carbonflow.center.api.serving import CenterServer
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.cascade.feed import exchanged, interval_status
from carbonflow.center.cascade.layout import cascade_configs, center_id, leaf_regions, regions_of
from carbonflow.center.cascade.service import CascadeService
from carbonflow.center.cascade.split import bus_regions, region_part
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store
from carbonflow.center.store.cascade import metered_snapshot, result_at
from carbonflow.center.store.users import create_user
from carbonflow.delivery.certs import IssuedCerts

# metered data: a region's balance keeps its meters' residual (the demo's devices: ~5e-5 of the
# region's energy); every other check keeps its exact tolerance (1e-6 g/kWh)
BALANCE_SHARE = 1e-3
SAME_G_PER_KWH = 1e-6  # the province's whole-grid result equals the single center's
WAIT_S = 60.0  # longest wait for one interval's exchange before the line says "pending"


@dataclass(frozen=True)
class CascadeCheck:
    """One interval through the cascade: each level's verification status, the exchange time, and the
    largest gap between the province's intensities and the single-center metering."""

    ts: datetime
    status: dict[str, list[str]]  # level -> status of each of its centers
    exchange_s: float
    max_abs_g_per_kwh: float
    version: int = 1

    @property
    def ok(self) -> bool:
        return all(s == "ok" for statuses in self.status.values() for s in statuses)


@dataclass
class _Center:
    id: str
    store: Store
    service: CascadeService
    url: str
    server: uvicorn.Server | None = None
    task: asyncio.Task | None = None


class _Server(CenterServer):
    @contextlib.contextmanager
    def capture_signals(self):  # the demo's own handlers stop everything
        yield


def _bound_socket(host: str) -> socket.socket:
    """A center's listening socket on a free port, bound now and served later: a port only looked up
    here and bound when the center starts could meanwhile be taken by an outgoing connection of the
    collector (they draw from the same ephemeral range)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


@dataclass
class CascadeDemo:
    directory: Path
    host: str
    port: int  # the province's: the demo's center
    interval_s: int
    grid: dict[str, Any]
    store: Store  # the demo center's store: the province's, and where the metering stores snapshots
    now: Callable[[], datetime]
    password: str
    say: Callable[[str], None] = print
    max_level: str = "county"
    checks: list[CascadeCheck] = field(default_factory=list)
    halted: threading.Event = field(default_factory=threading.Event)  # stopping: no more waiting
    tls: IssuedCerts | None = None  # every center serves HTTPS with the demo's center certificate

    def __post_init__(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        regions = regions_of(self.grid, self.max_level)
        top = center_id(regions[0]["path"])
        self._sockets = {center_id(r["path"]): _bound_socket(self.host) for r in regions[1:]}
        ports = {cid: sock.getsockname()[1] for cid, sock in self._sockets.items()}
        ports[top] = self.port
        scheme = "https" if self.tls else "http"
        trust = {"ca_file": str(self.tls.ca_file)} if self.tls else {}
        self.configs = cascade_configs(
            regions, lambda cid: f"{scheme}://{self.host}:{ports[cid]}", self.directory,
            interval_s=self.interval_s, backoff_min_s=0.1, backoff_max_s=5.0, outbox_durable=False,
            balance_share=BALANCE_SHARE, **trust,
        )  # fmt: skip
        self.leaves = leaf_regions(self.configs)
        self.regions = bus_regions(self.grid)
        self.centers: dict[str, _Center] = {}
        for cid, config in self.configs.items():
            store = self.store if cid == top else Store.open(f"sqlite:///{self.directory / (cid + '.db')}")
            if cid != top:
                create_user(store, "admin", self.password, "admin")
            service = CascadeService.open(store, config, now=self.now)
            self.centers[cid] = _Center(cid, store, service, f"{scheme}://{self.host}:{ports[cid]}")
        self.top = self.centers[top]

    @property
    def province(self) -> CascadeService:
        """The top center's cascade, served by the demo's own center app."""
        return self.top.service

    async def start(self) -> None:
        for center in self.centers.values():
            if center is self.top:
                continue
            tls: dict[str, str] = {}
            if self.tls is not None:  # the demo's center certificate names this host: every center uses it
                cert, key = self.tls.pair("center")
                tls = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
            settings = CenterSettings(
                database_url="sqlite://",
                metering_interval_s=0,
                image_dir=str(self.directory / "images"),
                audit_key_file=str(self.directory / f"{center.id}-audit.key"),
                **tls,
            )
            app = create_app(settings, store=center.store, cascade=center.service)
            app.state.clock = self.now  # the simulated time: the overview's age of the latest interval
            sock = self._sockets.pop(center.id)
            config = uvicorn.Config(
                app, host=self.host, port=sock.getsockname()[1], log_level="warning", **settings.uvicorn_ssl()
            )
            center.server = _Server(config)
            center.task = asyncio.create_task(center.server.serve(sockets=[sock]), name=f"center-{center.id}")
            while not center.server.started:
                if center.task.done():
                    center.task.result()  # raises: the port is taken, ...
                await asyncio.sleep(0.02)
        for center in self.centers.values():
            level = self.configs[center.id].level
            self.say(f"  {level:8} {self.configs[center.id].region:10} {center.url}")

    def halt(self) -> None:
        """The demo is stopping: an exchange being waited for is not waited for any more (safe from the
        signal handler while :meth:`feed` waits in its worker thread)."""
        self.halted.set()

    async def stop(self) -> None:
        self.halt()
        for sock in self._sockets.values():  # centers never started (the demo stopped while starting)
            sock.close()
        self._sockets.clear()
        running = [c for c in self.centers.values() if c.server is not None]
        for center in running:  # all at once: ten servers shut down in the time of one
            center.server.should_exit = True
        for center in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await center.task
            center.store.close()

    def feed(self, outcome: IntervalOutcome) -> CascadeCheck | None:
        """Each metering center's part of the metered interval, then wait for the exchange and say how
        every level verified it (a :class:`MeteringLoop` observer: runs in a worker thread)."""
        if not outcome.stored or self.halted.is_set():
            return None
        ts = outcome.end
        snapshot = metered_snapshot(self.store, ts, self.interval_s)
        if snapshot is None:
            return None
        # a new version of an interval already exchanged: its verdicts are stored from the first one, so
        # "exchanged" holds at once; the new parts are through when the province's result agrees again
        # (while only some have arrived it is neither the old result nor the new one)
        began = time.perf_counter()
        for cid, region in self.leaves.items():
            self.centers[cid].service.node.submit_part(ts, region_part(snapshot, self.regions, region))
        deadline = began + WAIT_S
        while True:
            if all(exchanged(c.store, self.configs[c.id], ts) for c in self.centers.values()):
                check = self._check(outcome, time.perf_counter() - began)
                if outcome.version == 1 or check.max_abs_g_per_kwh <= SAME_G_PER_KWH:
                    break
            if time.perf_counter() > deadline or self.halted.is_set():
                break
            time.sleep(0.01)
        check = self._check(outcome, time.perf_counter() - began)
        self.checks.append(check)
        counts = ", ".join(
            f"{level} " + ("ok" if set(s) == {"ok"} else "/".join(s)) + f" ({len(s)})"
            for level, s in check.status.items()
        )
        again = f" (v{outcome.version})" if outcome.version > 1 else ""
        self.say(
            f"{ts.isoformat()}{again}  cascade: {counts}; exchange {check.exchange_s * 1000:.0f} ms; "
            f"province vs single center max |Δ| {check.max_abs_g_per_kwh:.1e} g/kWh"
        )
        return check

    def _check(self, outcome: IntervalOutcome, seconds: float) -> CascadeCheck:
        ts = outcome.end
        status: dict[str, list[str]] = {}
        for center in self.centers.values():
            level = self.configs[center.id].level
            status.setdefault(level, []).append(interval_status(center.store, ts))
        result = result_at(self.top.store, ts, self.configs[self.top.id].region)
        found = (
            {} if result is None else {b["id"]: b["intensity_g_per_kwh"] for b in result["document"]["buses"]}
        )
        gaps = [
            abs(found[bus] - value) if found.get(bus) is not None else float("inf")
            for bus, value in outcome.intensities.items()
            if value is not None
        ]
        return CascadeCheck(ts, status, seconds, max(gaps, default=float("nan")), outcome.version)

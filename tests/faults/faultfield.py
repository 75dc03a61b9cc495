"""The fault-injection field: simulated devices in the test's event loop, the center and the collector as
real processes (so they can be killed with SIGKILL), and the ledgers that prove nothing was lost or
duplicated.

Exact counts come from two independent books:

* the collector's outbox (its own SQLite file): ``sqlite_sequence`` of ``pending`` is the number of
  readings ever appended (AUTOINCREMENT ids are never reused, a rolled-back append does not advance it),
  ``meta.next_seq`` the number of batches ever cut; at the end nothing may be pending, unacknowledged or
  dead-lettered;
* the center's store: the batches of the collector (their ``seq``, ``n_readings``, ``accepted`` and
  ``duplicates``) and the readings rows themselves (with ``(point, ts)`` distinct).

"Nothing lost, nothing duplicated" is then: batch seqs exactly ``0 .. formed-1``, each once; the sum of
their readings = the readings appended = the rows stored = the distinct ``(point, ts)``; no duplicate
reading inside any batch; an empty outbox.  "Recovery without manual steps": the test only injects the
fault and takes it away (restarting a killed process with the same command, as a supervisor would) —
never a requeue, never an edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faultchild
import httpx
from sqlalchemy import func, select

from carbonflow.center.store import Store, register_devices, upsert_collector, upsert_topology
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Reading
from carbonflow.center.topology import topology_rows
from carbonflow.collector.device_map_config import config_from_device_map, to_toml
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.serve import DeviceFarm, SimClock, TruthDriver
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig
from carbonflow.sim.truth import TruthFeed

COLLECTOR = "fault-1"
SECRET = "fault-secret-0123456789"
DEVICES = ["EM-U04", "ECM-G3-1", "MB-S057-1", "RTU-P03"]  # 645, 698, Modbus, IEC 104
PYTHON = [sys.executable, "-m", "carbonflow.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# -- the books ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxLedger:
    appended: int  # readings ever appended
    formed: int  # batches ever cut
    pending: int
    unacked: int
    dead: int
    refused: int


def outbox_ledger(path: Path) -> OutboxLedger:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:

        def one(query: str, default: int = 0) -> int:
            try:
                row = db.execute(query).fetchone()
            except sqlite3.OperationalError:  # a table not there yet (a new outbox)
                return default
            return default if row is None or row[0] is None else int(row[0])

        return OutboxLedger(
            appended=one("SELECT seq FROM sqlite_sequence WHERE name = 'pending'"),
            formed=one("SELECT value FROM meta WHERE key = 'next_seq'"),
            pending=one("SELECT COUNT(*) FROM pending"),
            unacked=one("SELECT COUNT(*) FROM batches"),
            dead=one("SELECT COUNT(*) FROM dead_letters"),
            refused=one("SELECT value FROM meta WHERE key = 'refused_readings'"),
        )


def outbox_unacked(path: Path) -> int:
    """Batches cut and not yet acknowledged, plus readings not yet cut (-1: no outbox yet)."""
    if not path.exists():
        return -1
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            batches = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            return int(batches) + int(pending)
    except sqlite3.OperationalError:  # the collector is creating its tables
        return -1


@dataclass(frozen=True)
class CenterLedger:
    seqs: list[int]
    batch_readings: int  # sum of n_readings of the collector's batches
    accepted: int
    duplicates: int
    rows: int  # readings rows stored
    distinct: int  # distinct (point, ts)


def center_ledger(store: Store, collector_id: str = COLLECTOR) -> CenterLedger:
    with store.read() as connection:
        batches = connection.execute(
            select(BatchRow.seq, BatchRow.n_readings, BatchRow.accepted, BatchRow.duplicates).where(
                BatchRow.collector_id == collector_id
            )
        ).all()
        rows = connection.execute(select(func.count()).select_from(Reading)).scalar_one()
        distinct = connection.execute(
            select(func.count()).select_from(select(Reading.point_id, Reading.ts).distinct().subquery())
        ).scalar_one()
    return CenterLedger(
        seqs=sorted(int(b.seq) for b in batches),
        batch_readings=sum(int(b.n_readings) for b in batches),
        accepted=sum(int(b.accepted) for b in batches),
        duplicates=sum(int(b.duplicates) for b in batches),
        rows=int(rows),
        distinct=int(distinct),
    )


def center_batches(store: Store) -> int:
    try:
        return len(center_ledger(store).seqs)
    except Exception:  # the database is being restarted
        return -1


def assert_nothing_lost(
    outbox: Path, store: Store, *, min_readings: int = 1
) -> tuple[OutboxLedger, CenterLedger]:
    """The exact books: every reading appended at the collector is stored once at the center."""
    book, center = outbox_ledger(outbox), center_ledger(store)
    assert (book.pending, book.unacked, book.dead) == (0, 0, 0), book
    assert center.seqs == list(range(book.formed)), (
        book.formed,
        center.seqs,
    )  # each batch once, none missing
    assert center.batch_readings == book.appended, (center, book)
    assert center.accepted == book.appended and center.duplicates == 0, (center, book)
    assert center.rows == center.distinct == book.appended, (center, book)
    assert book.appended >= min_readings, book
    return book, center


# -- the processes -----------------------------------------------------------------------------------
def _forkserver() -> multiprocessing.context.ForkServerContext:
    """Processes forked from a server that imported carbonflow once: a start takes a fraction of a
    second instead of the seconds of a fresh interpreter's imports (on a busy machine)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["carbonflow.cli", "carbonflow.center.api.app", "carbonflow.collector.service"]
    )
    return context


FORKSERVER = _forkserver()


class Process:
    """A carbonflow CLI process: started, killed (SIGKILL), stopped (SIGTERM), restarted the same way.
    Forked from :data:`FORKSERVER`, or (``env`` with ``LD_PRELOAD``, e.g. libfaketime) a new interpreter."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log, self.env = args, log, dict(env or {})
        self.process: multiprocessing.process.BaseProcess | asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, env: dict[str, str] | None = None) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
        environ = {**self.env, **(env or {})}
        if "LD_PRELOAD" in environ:  # only an exec loads a preloaded library
            with self.log.open("ab") as out:
                full = {k: v for k, v in {**os.environ, **environ}.items() if k != "CI"}
                self.process = await asyncio.create_subprocess_exec(
                    *PYTHON, *self.args, stdout=out, stderr=out, env=full
                )
            return
        self.process = FORKSERVER.Process(target=faultchild.run_cli, args=(self.args, str(self.log), environ))
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return int(self.process.pid)

    @property
    def running(self) -> bool:
        if self.process is None:
            return False
        if isinstance(self.process, asyncio.subprocess.Process):
            return self.process.returncode is None
        return self.process.is_alive()

    async def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.running:
            raise TimeoutError
        if isinstance(self.process, asyncio.subprocess.Process):
            return await self.process.wait()
        assert self.process is not None
        return self.process.exitcode

    async def kill(self) -> None:
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            await self.wait(30)

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        if not self.running:
            return None
        os.kill(self.pid, signal.SIGTERM)
        try:
            return await self.wait(timeout_s)
        except TimeoutError:
            with contextlib.suppress(OSError):  # forked children dump their stacks into the log
                os.kill(self.pid, signal.SIGUSR1)
            await asyncio.sleep(0.5)
            await self.kill()
            raise AssertionError(
                f"{self.args[:2]} did not stop within {timeout_s} s of SIGTERM; log tail:\n"
                + self.output()[-4000:]
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Center(Process):
    def __init__(self, database_url: str, tmp: Path, mqtt_url: str | None = None) -> None:
        self.port = free_port()
        args = ["center", "serve", "--port", str(self.port), "--database", database_url]
        if mqtt_url:
            args += ["--mqtt", mqtt_url]
        super().__init__(args, tmp / "center.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, env: dict[str, str] | None = None) -> None:
        await super().start(env)
        await wait_for(self.healthy, "the center to answer /healthz", 60)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class Collector(Process):
    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        """Runs ``tmp/collector.toml`` (written by :meth:`Field.collector_config`)."""
        super().__init__(["collector", "run", str(tmp / "collector.toml")], tmp / "collector.log", env)


# -- the field ---------------------------------------------------------------------------------------
@functools.cache
def _grid() -> tuple[Any, dict[str, Any], Any]:
    """The reference grid, its device map and topology rows: built once (seconds) per test session."""
    net = reference_grid()
    return net, build_device_map(net), topology_rows(grid_document(net))


class Field:
    """Simulated devices of the reference grid, driven by its truth in real time, in this event loop;
    a store (SQLite or PostgreSQL) with the grid, the collector and its devices loaded."""

    def __init__(
        self, tmp: Path, database_url: str, devices: list[str] | None = None, minutes: int = 30
    ) -> None:
        self.tmp, self.database_url = tmp, database_url
        self.devices = devices or DEVICES
        self.net, device_map, self.topology = _grid()
        self.net = copy.deepcopy(self.net)  # the simulation writes its results into the net
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        simulation = Simulation(self.net, SimConfig(start=start, interval_s=60, count=minutes, seed=3))
        self.feed, self.clock = TruthFeed(), SimClock(start, speed=1.0)
        self.driver = TruthDriver(simulation, self.feed, self.clock)
        self.driver.publish_until(start + timedelta(seconds=self.driver.lookahead_s))
        self.farm = DeviceFarm(copy.deepcopy(device_map), self.feed, self.clock.now, only=self.devices)
        self.served: dict[str, Any] = {}
        self.store: Store | None = None
        self.outbox = tmp / "outbox.sqlite"
        self._driver_task: asyncio.Task | None = None

    async def start(self) -> None:
        self.served = await self.farm.start("127.0.0.1", 0)
        self.store = Store.open(self.database_url)
        upsert_topology(self.store, self.topology)
        upsert_collector(self.store, COLLECTOR, SECRET)
        register_devices(self.store, self.served["devices"], collector_id=COLLECTOR)
        self.clock.begin()
        self._driver_task = asyncio.create_task(self.driver.run())

    async def close(self) -> None:
        if self._driver_task is not None:
            self._driver_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver_task
        await self.farm.stop()
        if self.store is not None:
            self.store.close()

    def collector_config(
        self, center_url: str, *, edit: Callable[[dict[str, Any]], None] | None = None, **outbox: Any
    ) -> Path:
        """The collector's TOML (short periods and back-off, so each fault takes seconds)."""
        (self.tmp / "collector.secret").write_text(SECRET + "\n")
        config = config_from_device_map(
            self.served,
            collector_id=COLLECTOR,
            center_url=center_url,
            secret_file=str(self.tmp / "collector.secret"),
            outbox_path=str(self.outbox),
            period_s=0.3,
        )
        config["center"].update({"backoff_min_s": 0.1, "backoff_max_s": 0.5, "ack_timeout_s": 2})
        config["defaults"].update({"timeout_s": 1.0, "retries": 1, "status_period_s": 2})
        config["outbox"].update({"batch_max_age_s": 0.3, "batch_max_readings": 40, **outbox})
        if edit is not None:
            edit(config)
        path = self.tmp / "collector.toml"
        path.write_text(to_toml(config))
        return path

    def batches_at_center(self) -> int:
        assert self.store is not None
        return center_batches(self.store)

    async def drain(self, collector: Collector, timeout_s: float = 60.0) -> None:
        """Stop the collector cleanly (SIGTERM: it flushes), start it again until its outbox is empty,
        stop it: after this, the books must balance."""
        await collector.stop()
        if outbox_unacked(self.outbox) != 0:
            await collector.start()
            await wait_for(lambda: outbox_unacked(self.outbox) == 0, "the outbox to drain", timeout_s)
            await collector.stop()
            await wait_for(lambda: outbox_unacked(self.outbox) == 0, "the last flush", timeout_s)


async def running(field: Field, body: Callable[[], Awaitable[None]], *processes: Process) -> None:
    """Run ``body`` with the field started; always stop every process and the field."""
    await field.start()
    try:
        await body()
    except BaseException:
        for process in processes:  # the logs say what went wrong
            print(f"==== {process.args[:2]} log\n{process.output()[-6000:]}")
        raise
    finally:
        for process in processes:
            await process.kill()
        await field.close()

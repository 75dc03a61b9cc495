"""The cascade of the reference grid (1 province, 2 cities, 8 counties), each center its own process.

Every center runs what ``carbonflow center serve`` runs for it — ``create_app`` with its own SQLite
store, its :class:`CascadeService` (durable outbox, one delivery loop per peer) and a uvicorn server on
its own port — in a process of its own (this script with ``--serve CONFIG``: the launcher skips the
metering service and takes the counties' parts from a file instead of metering devices). Messages
travel over real HTTP, signed with Ed25519.

Measured:

* **exchange**: per interval, from the moment the 8 counties' parts are ready (all submit at the same
  instant) to the moment the last of the 11 centers holds its result and every verdict of the interval
  (``feed.exchanged``); p50 / p95 / max over ``--intervals``. The baseline in the same run is the same
  exchange with the 11 centers in **one** process (one event loop, as ``tests/test_cascade_exchange.py``
  and the demo run them): ratio multi-process / one-process.
* **outage**: the province process is killed (SIGKILL), the counties go on with ``--outage-min``
  simulated minutes of intervals (spread over ``--outage-real-s`` seconds, long enough for the cities'
  back-off to reach its maximum), the province is started again: time from its start to every interval
  exchanged and verified everywhere; then every store is checked: each interval's messages stored
  exactly once per (direction, peer, kind), nothing left in an outbox, nothing refused.

``--compare DIR`` also runs the 11 centers with the carbonflow package found in DIR (e.g. the tree of
the commit before a change: ``git archive BASE carbonflow | tar -x -C DIR``), alternating intervals
with this tree's, and reports the ratio. Every center process reports its CPU time, so the CPU one
interval costs over the 11 processes is given too (independent of the machine's load).

    .venv/bin/python bench/cascade.py [--intervals 20] [--interval-s 300] [--outage-min 30]
                                      [--outage-real-s 60] [--no-outage] [--no-baseline]
                                      [--compare DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# run as a script from anywhere; a center process of --compare runs the carbonflow of another tree
sys.path.insert(
    0,
    sys.argv[sys.argv.index("--code") + 1]
    if "--code" in sys.argv
    else str(Path(__file__).resolve().parents[1]),
)

sys.path.append(str(Path(__file__).resolve().parent))  # this benchmark's own helpers, whichever tree runs

from thread_profiles import ThreadProfiles

from carbonflow.center.cascade.config import CascadeConfig
from carbonflow.center.cascade.feed import exchanged
from carbonflow.center.cascade.layout import cascade_configs, leaf_regions, regions_of
from carbonflow.center.cascade.split import bus_regions, region_part
from carbonflow.center.store import Store

TOKEN = "cascade-bench-token"
# the tree whose carbonflow runs here serves with uvloop and httptools when its pyproject declares them
# (as ``carbonflow center serve`` does: uvicorn picks them when installed); a --compare tree from before
# them runs on asyncio's loop and h11, as it did, although both are installed in this venv
FAST_SERVER = "uvloop" in (Path(sys.path[0]) / "pyproject.toml").read_text("utf-8")


def run_loop(main) -> object:
    if FAST_SERVER:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one center (in its own process, or one of 11 in the baseline's process) ---------------------------
class CenterRunner:
    """One center as ``carbonflow center serve`` runs it, reporting when an interval is done here."""

    def __init__(self, config: CascadeConfig, db_path: Path, port: int, on_done) -> None:
        self.config, self.db_path, self.port, self.on_done = config, db_path, port, on_done
        self.store: Store | None = None
        self.server = None
        self.task: asyncio.Task | None = None
        self.reported: set[datetime] = set()
        self.watch_cpu_s = 0.0  # CPU of the bench's look-ups whether an interval is done here

    async def start(self) -> None:
        import uvicorn

        from carbonflow.center.api.app import create_app
        from carbonflow.center.api.settings import CenterSettings
        from carbonflow.center.cascade.service import CascadeService

        self.store = Store.open(f"sqlite:///{self.db_path}")
        service = CascadeService.open(self.store, self.config)
        node = service.node

        changed: queue.Queue[datetime] = queue.Queue()

        def watch() -> None:  # off the node's threads: is an interval a step changed done here?
            while True:
                ts = changed.get()
                began = time.thread_time()
                if ts not in self.reported and exchanged(self.store, self.config, ts):
                    self.reported.add(ts)
                    self.on_done(self.config.center_id, ts, time.time())
                self.watch_cpu_s += time.thread_time() - began  # the bench's, not the center's

        def watched(intervals: list[datetime]) -> None:  # after each committed step
            for ts in intervals:
                changed.put(ts)

        threading.Thread(target=watch, daemon=True).start()
        if hasattr(node, "step_listeners"):
            node.step_listeners.append(watched)
        else:  # --compare with a tree from before steps: every write committed as it is made
            advance = node.advance

            def advanced(ts: datetime) -> None:
                advance(ts)
                watched([ts])

            node.advance = advanced
        self.node = node
        settings = CenterSettings(database_url="sqlite://", api_tokens={TOKEN: "bench"})
        app = create_app(settings, store=self.store, cascade=service)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            http="httptools" if FAST_SERVER else "h11",
        )
        try:  # a tree with the center's own server (a tick once a second) runs it, as `center serve` would
            from carbonflow.center.api.serving import CenterServer as ServerClass
        except ImportError:
            ServerClass = uvicorn.Server
        self.server = ServerClass(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                raise SystemExit(f"center {self.config.center_id} did not start")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self.task
            self.store.close()


async def _at(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


def serve(config_path: Path) -> None:
    """Child process: one center; stdin ``submit TS EPOCH`` / ``quit``; stdout ``ready`` / ``done``."""
    spec = json.loads(config_path.read_text("utf-8"))
    config = CascadeConfig.model_validate(spec["config"])
    parts = json.loads(Path(spec["parts"]).read_text("utf-8")) if spec.get("parts") else {}
    out = threading.Lock()

    def say(line: str) -> None:
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    profile_dir = os.environ.get("CASCADE_BENCH_PROFILE")  # a directory: cProfile each center
    profiles = ThreadProfiles() if profile_dir else None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner = CenterRunner(
            config,
            Path(spec["db"]),
            spec["port"],
            lambda cid, ts, at: say(f"done {cid} {ts.isoformat()} {at:.6f}"),
        )
        await runner.start()
        commands: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(
            target=lambda: [loop.call_soon_threadsafe(commands.put_nowait, line) for line in sys.stdin],
            daemon=True,
        ).start()
        say(f"ready {config.center_id}")
        while True:
            line = (await commands.get()).split()
            if not line or line[0] == "quit":
                break
            if line[0] == "cpu":
                if profiles is not None and line[1:] == ["mark"]:
                    profiles.mark()
                elif profiles is not None:
                    profiles.dump(Path(profile_dir) / f"{config.center_id}.prof")
                say(f"cpu {config.center_id} {time.process_time():.6f} {runner.watch_cpu_s:.6f}")
                continue
            ts, epoch = line[1], float(line[2])
            await _at(epoch)
            await asyncio.to_thread(runner.node.submit_part, datetime.fromisoformat(ts), parts[ts])
        await runner.stop()

    run_loop(main())


# -- the parent: 11 processes ----------------------------------------------------------------------------
class Process:
    def __init__(self, cid: str, spec_path: Path, events: queue.Queue, code: str | None) -> None:
        self.cid, self.spec_path, self.events = cid, spec_path, events
        self.command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(spec_path)]
        if code is not None:
            self.command += ["--code", code]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.events.put(line.split())

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def quit(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Cluster:
    def __init__(self, layout: Layout, code: str | None = None) -> None:
        self.layout = layout
        self.events: queue.Queue = queue.Queue()
        self.procs = {cid: Process(cid, path, self.events, code) for cid, path in layout.specs.items()}
        self.cpu_s: dict[str, float] = {}
        self.watch_cpu_s: dict[str, float] = {}
        self.done: dict[datetime, dict[str, float]] = {}
        self.ready: set[str] = set()

    def start(self, only: list[str] | None = None) -> float:
        began = time.time()
        waiting = set(only or self.procs)
        for cid in waiting:
            self.procs[cid].start()
        while waiting:
            self._event(timeout=600)
            waiting -= self.ready
        return time.time() - began

    def _event(self, timeout: float) -> None:
        event = self.events.get(timeout=timeout)
        if event[0] == "ready":
            self.ready = self.ready | {event[1]}
        elif event[0] == "cpu":
            self.cpu_s[event[1]] = float(event[2])
            self.watch_cpu_s[event[1]] = float(event[3]) if len(event) > 3 else 0.0
        elif event[0] == "done":
            self.done.setdefault(datetime.fromisoformat(event[2]), {})[event[1]] = float(event[3])

    def submit(self, ts: datetime, at: float) -> None:
        for cid in self.layout.leaves:
            self.procs[cid].send(f"submit {ts.isoformat()} {at:.6f}")

    def wait(self, intervals: list[datetime], timeout: float) -> float:
        deadline = time.time() + timeout
        while not all(len(self.done.get(ts, {})) == len(self.procs) for ts in intervals):
            left = deadline - time.time()
            if left <= 0:
                missing = {
                    ts.isoformat(): sorted(set(self.procs) - set(self.done.get(ts, {}))) for ts in intervals
                }
                raise SystemExit(f"not exchanged within {timeout} s: {missing}")
            with contextlib.suppress(queue.Empty):
                self._event(timeout=left)
        return max(max(self.done[ts].values()) for ts in intervals)

    def cpu(self, mark: bool = False) -> float:
        """CPU seconds the 11 processes used so far, the bench's own look-ups left out (``mark``: the
        profiles count from here on; at the end they are written to $CASCADE_BENCH_PROFILE)."""
        self.cpu_s = {}
        for proc in self.procs.values():
            proc.send("cpu mark" if mark else "cpu")
        while len(self.cpu_s) < len(self.procs):
            self._event(timeout=60)
        return sum(self.cpu_s.values()) - sum(self.watch_cpu_s.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.quit()


class Layout:
    """The 11 configurations, the counties' parts per interval, one spec file per center."""

    def __init__(self, grid, truths, directory: Path, interval_s: int, durable: bool = True) -> None:
        self.directory = directory
        ports = {}
        regions = regions_of(grid)
        for region in regions:
            ports[region["path"].lower().replace("/", "-")] = free_port()
        self.configs = cascade_configs(
            regions,
            lambda cid: f"http://127.0.0.1:{ports[cid]}",
            directory,
            interval_s=interval_s,
            outbox_durable=durable,
        )
        self.leaves = leaf_regions(self.configs)
        self.ports = ports
        buses = bus_regions(grid)
        self.parts = {
            cid: {ts.isoformat(): region_part(snapshot, buses, region) for ts, snapshot in truths}
            for cid, region in self.leaves.items()
        }
        self.specs = {}
        for cid, config in self.configs.items():
            parts_path = None
            if cid in self.leaves:
                parts_path = directory / f"{cid}-parts.json"
                parts_path.write_text(json.dumps(self.parts[cid]), "utf-8")
            spec = {
                "config": config.model_dump(mode="json"),
                "db": str(directory / f"{cid}.db"),
                "port": ports[cid],
                "parts": None if parts_path is None else str(parts_path),
            }
            self.specs[cid] = directory / f"{cid}.json"
            self.specs[cid].write_text(json.dumps(spec), "utf-8")


# -- the baseline: the same 11 centers in one process ----------------------------------------------------
def one_process(layout: Layout, intervals: list[datetime], lead_s: float) -> list[float]:
    async def run() -> list[float]:
        done: dict[datetime, dict[str, float]] = {}
        runners = {
            cid: CenterRunner(
                config,
                layout.directory / f"{cid}.db",
                layout.ports[cid],
                lambda c, ts, at: done.setdefault(ts, {}).__setitem__(c, at),
            )
            for cid, config in layout.configs.items()
        }
        for runner in runners.values():
            await runner.start()
        latencies = []
        try:
            for ts in intervals:
                at = time.time() + lead_s
                await _at(at)
                await asyncio.gather(
                    *(
                        asyncio.to_thread(
                            runners[cid].node.submit_part, ts, layout.parts[cid][ts.isoformat()]
                        )
                        for cid in layout.leaves
                    )
                )
                while len(done.get(ts, {})) < len(runners):
                    await asyncio.sleep(0.002)
                latencies.append(max(done[ts].values()) - at)
        finally:
            for runner in runners.values():
                await runner.stop()
        return latencies

    return run_loop(run())


# -- checks after the outage --------------------------------------------------------------------------
def store_counts(layout: Layout) -> dict[str, int]:
    """Over every center's store: messages stored twice for one (direction, peer, kind, interval),
    intervals missing a result, queued or refused outbox entries, de-duplicated deliveries (audited)."""
    import sqlite3

    counts = {
        "duplicates": 0,
        "missing_results": 0,
        "backlog": 0,
        "refused": 0,
        "deduplicated": 0,
        "messages": 0,
    }
    for cid, config in layout.configs.items():
        db = sqlite3.connect(layout.directory / f"{cid}.db")
        counts["messages"] += db.execute("SELECT COUNT(*) FROM cascade_messages").fetchone()[0]
        counts["duplicates"] += db.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM cascade_messages"
            " GROUP BY direction, peer, kind, ts)"
        ).fetchone()[0]
        seen = {r[0] for r in db.execute("SELECT DISTINCT ts FROM cascade_messages")}
        results = {r[0] for r in db.execute("SELECT ts FROM cascade_results")}
        counts["missing_results"] += len(seen - results)
        counts["deduplicated"] += db.execute(
            "SELECT COUNT(*) FROM audit WHERE action = 'cascade message duplicate'"
        ).fetchone()[0]
        db.close()
        outbox = sqlite3.connect(config.outbox_path)
        counts["backlog"] += outbox.execute("SELECT COUNT(*) FROM cascade_out").fetchone()[0]
        counts["refused"] += outbox.execute("SELECT COUNT(*) FROM cascade_refused").fetchone()[0]
        outbox.close()
    return counts


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--intervals", type=int, default=20)
    parser.add_argument("--interval-s", type=int, default=300)
    parser.add_argument("--outage-min", type=float, default=30.0)
    parser.add_argument("--outage-real-s", type=float, default=60.0)
    parser.add_argument("--lead-s", type=float, default=0.3, help="submit this long after the command")
    parser.add_argument("--gap-s", type=float, default=0.5, help="pause between intervals")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle time measured for the background")
    parser.add_argument("--no-outage", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--compare", type=Path, help="a tree with another carbonflow package, run alongside")
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    from carbonflow.sim.device_map import grid_document
    from carbonflow.sim.reference_grid import reference_grid
    from carbonflow.sim.simulation import Simulation
    from carbonflow.sim.timeseries import SimConfig

    outage_n = 0 if args.no_outage else max(1, round(args.outage_min * 60 / args.interval_s))
    count = args.intervals + outage_n + 1
    start = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    net = reference_grid()
    sim = Simulation(net, SimConfig(start=start, interval_s=args.interval_s, count=count, seed=3))
    truths = [(t.ts, t.snapshot_document()) for t in sim.intervals()]
    grid = grid_document(net)
    timed = [ts for ts, _ in truths[: args.intervals]]
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp:
        directory = Path(tmp)
        trees = {
            "this tree": None,
            **({f"--compare {args.compare}": str(args.compare)} if args.compare else {}),
        }
        clusters = {}
        for n, (name, code) in enumerate(trees.items()):
            (directory / f"multi{n}").mkdir()
            clusters[name] = Cluster(Layout(grid, truths, directory / f"multi{n}", args.interval_s), code)
        latencies: dict[str, list[float]] = {name: [] for name in clusters}
        cpu: dict[str, float] = {}
        try:
            for name, cluster in clusters.items():
                print(f"{name}: 11 center processes ready in {cluster.start():.1f} s")
            warm = truths[-1][0]  # first HTTP connections, first solve of each part: not timed
            for cluster in clusters.values():
                cluster.submit(warm, time.time() + args.lead_s)
                cluster.wait([warm], 120)
            idle = {name: -cluster.cpu() for name, cluster in clusters.items()}
            time.sleep(args.idle_s)  # every cluster idle: the CPU of the centers' background
            idle = {name: (idle[name] + cluster.cpu()) / args.idle_s for name, cluster in clusters.items()}
            began = time.time()
            cpu = {name: -cluster.cpu(mark=True) for name, cluster in clusters.items()}
            for n, ts in enumerate(timed):
                order = list(clusters) if n % 2 == 0 else list(reversed(clusters))  # alternate who goes first
                for name in order:
                    at = time.time() + args.lead_s
                    clusters[name].submit(ts, at)
                    latencies[name].append(clusters[name].wait([ts], 300) - at)
                    time.sleep(args.gap_s)
            elapsed = time.time() - began
            for name, cluster in clusters.items():
                cpu[name] += cluster.cpu()
                print(
                    f"multi-process exchange ({name}), {len(timed)} intervals: {percentiles(latencies[name])}"
                )
                print(f"  per interval (ms): {[round(x * 1000) for x in latencies[name]]}")
                print(
                    f"  CPU over the 11 processes: {cpu[name] / len(timed) * 1000:.0f} ms per interval;"
                    f" idle background {idle[name] * 1000:.0f} ms per s, so the exchange itself"
                    f" {(cpu[name] - idle[name] * elapsed) / len(timed) * 1000:.0f} ms per interval"
                )
            print(f"  load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            if args.compare:
                this, base = (latencies[name] for name in clusters)
                this_cpu, base_cpu = (cpu[name] for name in clusters)
                print(
                    "ratio this tree / --compare:"
                    f" p50 {statistics.median(this) / statistics.median(base):.2f},"
                    f" max {max(this) / max(base):.2f}, CPU {this_cpu / base_cpu:.2f}"
                )
            for name in list(clusters)[1:]:
                clusters.pop(name).stop()
            if outage_n:
                this = clusters["this tree"]
                outage(
                    this,
                    this.layout,
                    [ts for ts, _ in truths[args.intervals : args.intervals + outage_n]],
                    args,
                )
        finally:
            for cluster in clusters.values():
                cluster.stop()

        if not args.no_baseline:
            (directory / "one").mkdir()
            base_layout = Layout(
                grid, [*truths[: args.intervals], truths[-1]], directory / "one", args.interval_s
            )
            base = one_process(base_layout, [truths[-1][0], *timed], args.lead_s)[1:]
            multi = latencies["this tree"]
            print(f"one-process baseline (this tree), {len(timed)} intervals: {percentiles(base)}")
            print(f"  per interval (ms): {[round(x * 1000) for x in base]}")
            print(
                "ratio multi-process / one-process:"
                f" p50 {statistics.median(multi) / statistics.median(base):.2f}"
                f", max {max(multi) / max(base):.2f}"
            )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def outage(cluster: Cluster, layout: Layout, intervals: list[datetime], args) -> None:
    province = next(cid for cid, c in layout.configs.items() if c.upper is None)
    cluster.procs[province].kill()
    cluster.ready = cluster.ready - {province}
    print(f"province {province} killed; {len(intervals)} intervals of {args.interval_s} s while it is down")
    pause = args.outage_real_s / len(intervals)
    for ts in intervals:
        cluster.submit(ts, time.time() + args.lead_s)
        time.sleep(pause)
    restarted = time.time()
    ready_s = cluster.start([province])
    finished = cluster.wait(intervals, 600)
    counts = store_counts(layout)
    for _ in range(300):  # the last acknowledgements may still be on their way back
        if counts["backlog"] == 0:
            break
        time.sleep(0.1)
        counts = store_counts(layout)
    print(
        f"province back: process ready {ready_s:.1f} s after its start; all {len(intervals)} intervals"
        f" exchanged and verified everywhere {finished - restarted:.1f} s after its start"
    )
    print(f"  stores: {counts}")


if __name__ == "__main__":
    main()

"""The cascade's own CPU, without HTTP: the 11 centers of the reference grid in one process, messages
handed from outbox to ``receive`` directly (durable outboxes, one SQLite store per center).

What it measures is what ``bench/cascade.py`` cannot separate from uvicorn, the HTTP client and 11
interpreters' background on a shared machine: the CPU (``time.process_time``, so waiting for a core or
the disk is not counted) one interval costs the nodes themselves — receive, solve, verify, sign, the
store and outbox writes.  ``--code DIR`` runs the carbonflow of another tree; ``--dump FILE`` makes
the run deterministic (message ids from a counter, a fixed clock) and writes every store's cascade
tables and every outbox's queue, so that two trees' stored data can be compared byte for byte.

    .venv/bin/python bench/cascade_store.py [--intervals 12] [--code DIR] [--dump FILE] [--profile F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(
    0,
    sys.argv[sys.argv.index("--code") + 1]
    if "--code" in sys.argv
    else str(Path(__file__).resolve().parents[1]),
)

import cProfile
import itertools
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=int, default=12)
    parser.add_argument("--interval-s", type=int, default=300)
    parser.add_argument("--code", help="a tree with another carbonflow package")
    parser.add_argument("--dump", type=Path, help="deterministic run; the stored data written here")
    parser.add_argument("--profile", type=Path, help="cProfile of the timed intervals, written here")
    args = parser.parse_args()

    ids = [itertools.count()]
    if args.dump:  # the only randomness the stores see: message ids and the clock
        uuid.uuid4 = lambda: uuid.UUID(int=next(ids[0]))

    from carbonflow.center.cascade.layout import cascade_configs, leaf_regions, regions_of
    from carbonflow.center.cascade.node import CascadeNode
    from carbonflow.center.cascade.outbox import CascadeOutbox
    from carbonflow.center.cascade.split import bus_regions, region_part
    from carbonflow.center.store import Store
    from carbonflow.sim.device_map import grid_document
    from carbonflow.sim.reference_grid import reference_grid
    from carbonflow.sim.simulation import Simulation
    from carbonflow.sim.timeseries import SimConfig

    start = datetime(2026, 12, 1, tzinfo=UTC)
    net = reference_grid()
    config = SimConfig(start=start, interval_s=args.interval_s, count=args.intervals + 1, seed=3)
    sim = Simulation(net, config)
    truths = [(t.ts, t.snapshot_document()) for t in sim.intervals()]
    grid = grid_document(net)
    clock = itertools.count()

    def now() -> datetime:  # after every interval's end (no clock-skew verdicts), one second a call
        return start + timedelta(days=1, seconds=next(clock))

    with tempfile.TemporaryDirectory(prefix="bench-cascade-store-") as tmp:
        directory = Path(tmp)
        configs = cascade_configs(regions_of(grid), lambda cid: "", directory, interval_s=args.interval_s)
        leaves = leaf_regions(configs)
        buses = bus_regions(grid)
        nodes = {}
        for cid, config in configs.items():
            store = Store.open(f"sqlite:///{directory / cid}.db")
            outbox = CascadeOutbox(Path(config.outbox_path), durable=config.outbox_durable)
            nodes[cid] = CascadeNode(store, config, outbox, **({"now": now} if args.dump else {}))

        def pump() -> int:
            moved = 0
            while True:
                sent = 0
                for node in nodes.values():
                    for peer in node.config.peers:
                        for item in node.outbox.oldest_for(peer.id, 100):
                            nodes[peer.id].receive(item.body)
                            node.outbox.acknowledge(item.id)
                            sent += 1
                for node in nodes.values():
                    node.steps.drain()
                moved += sent
                if not sent:
                    return moved

        def interval(ts, snapshot) -> int:
            for cid, region in leaves.items():
                nodes[cid].submit_part(ts, region_part(snapshot, buses, region))
            return pump()

        ids[0] = itertools.count()  # from here on: the set-up may draw a different number of ids
        interval(*truths[0])  # warm-up: imports, numba, first solves
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        cpu = []
        messages = 0
        for ts, snapshot in truths[1:]:
            if profiler:
                profiler.enable()
            began = time.process_time()
            messages += interval(ts, snapshot)
            cpu.append(time.process_time() - began)
            if profiler:
                profiler.disable()
        if profiler:
            profiler.dump_stats(str(args.profile))
        print(
            f"{args.code or 'this tree'}: {len(cpu)} intervals, {messages / len(cpu):.0f} messages each;"
            f" CPU per interval median {statistics.median(cpu) * 1000:.0f} ms,"
            f" min {min(cpu) * 1000:.0f} ms, max {max(cpu) * 1000:.0f} ms;"
            f" load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        for node in nodes.values():
            node.steps.drain()
            node.outbox.close()
            node.store.close()
        if args.dump:
            dump(directory, configs, args.dump)


def dump(directory: Path, configs, path: Path) -> None:
    """Every row of the cascade tables of every store, as stored (SQLite's own text), and the outboxes'
    queues without their bodies (signatures are random) and times."""
    lines = []
    for cid, config in sorted(configs.items()):
        db = sqlite3.connect(directory / f"{cid}.db")
        for table in ("cascade_messages", "cascade_results", "cascade_verifications"):
            for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid"):  # nosec B608
                lines.append(json.dumps([cid, table, *row], ensure_ascii=False))
        for row in db.execute("SELECT actor, action, object, detail FROM audit ORDER BY id"):
            lines.append(json.dumps([cid, "audit", *row], ensure_ascii=False))
        db.close()
        out = sqlite3.connect(config.outbox_path)
        for row in out.execute("SELECT peer, message_id, kind, ts FROM cascade_out ORDER BY id"):
            lines.append(json.dumps([cid, "outbox", *row]))
        out.close()
    path.write_text("\n".join(lines) + "\n", "utf-8")
    print(f"{len(lines)} stored rows written to {path}")


if __name__ == "__main__":
    main()

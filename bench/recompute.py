"""Recompute a year of 15-minute interval results of the 104-node reference grid as a new version.

Fills a store with ``--days`` days of metered intervals (engine results with their snapshots, as the
center stores them; ``--distinct-days`` simulated days cycled over the span), records a corrected
emission factor of a coal unit for the whole span, then recomputes the span with each runner asked for
(``--runners``: ``local1`` one process, ``local2`` a 2-process pool, ``dask2`` a 2-worker Dask
LocalCluster), each after one more correction so that every run is a new version over every interval.
Reports intervals/s, the summed compute and write time of the chunks (for ``local1`` also the CPU time
of the process: on a shared machine the figure to compare), and, on ``--check-days`` days
copied to fresh stores, whether the local pool and the Dask cluster wrote byte-identical results.

    .venv/bin/python bench/recompute.py [--days 365] [--runners local1,local2,dask2] [--pg URL]

Target (issue 17 §3): 35,040 intervals in < 60 s on this machine.  Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from carbonflow.center.metering.recompute import recompute
from carbonflow.center.store import Store, add_correction, interval_from_document, upsert_topology
from carbonflow.center.store.result_rows import insert_results
from carbonflow.center.store.schema import RESULT_MODELS, Interval
from carbonflow.center.topology import topology_rows
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Shanghai
INTERVAL_S = 900
PER_DAY = 86400 // INTERVAL_S


def simulated_days(distinct: int):
    net = reference_grid()
    simulation = Simulation(
        net, SimConfig(start=START, interval_s=INTERVAL_S, count=distinct * PER_DAY, seed=11)
    )
    records = []
    for truth in simulation.intervals():
        document = truth.result_document()
        records.append(
            interval_from_document(
                truth.ts, INTERVAL_S, document, snapshot=truth.snapshot_document(),
                estimation={"completeness": 1.0, "complete": True, "estimates": [], "derived": []},
            )
        )  # fmt: skip
    return net, records


def fill(store: Store, net, records, days: int) -> None:
    upsert_topology(store, topology_rows(grid_document(net)))
    distinct = len(records) // PER_DAY
    for day in range(days):
        base = records[(day % distinct) * PER_DAY : (day % distinct + 1) * PER_DAY]
        shift = timedelta(days=day - day % distinct)
        shifted = [replace(r, ts=r.ts + shift, rows=r.rows, estimation=dict(r.estimation)) for r in base]
        with store.write() as connection:
            insert_results(connection, shifted)


def coal_unit(net) -> str:
    topology = grid_document(net)
    return max(topology["generators"], key=lambda g: g.get("intensity_g_per_kwh") or 0.0)["id"]


def result_rows(url: str) -> list[list[tuple]]:
    store = Store.open(url)
    out = []
    with store.read() as connection:
        for model in (Interval, *RESULT_MODELS.values()):
            table = model.__table__
            columns = [c for c in table.c if c.name not in ("created_at", "chain_hash")]
            out.append(
                [tuple(r) for r in connection.execute(select(*columns).order_by(*table.primary_key.columns))]
            )
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--distinct-days", type=int, default=7)
    parser.add_argument("--runners", default="local1,local2,dask2")
    parser.add_argument("--chunk", type=int, default=480)
    parser.add_argument(
        "--check-days", type=int, default=3, help="days copied for the identity check (0: none)"
    )
    parser.add_argument("--pg", help="PostgreSQL URL (an empty database) instead of a temporary SQLite file")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    directory = Path(tempfile.mkdtemp(prefix="cf-bench-recompute-"))
    url = args.pg or f"sqlite:///{directory / 'center.db'}"
    began = time.perf_counter()
    net, records = simulated_days(args.distinct_days)
    store = Store.open(url)
    fill(store, net, records, args.days)
    first, last = START, START + timedelta(days=args.days)
    n = args.days * PER_DAY
    print(f"filled {n} intervals ({args.days} days, {args.distinct_days} simulated) in "
          f"{time.perf_counter() - began:.1f} s; {os.getloadavg()[0]:.1f} load average")  # fmt: skip
    unit = coal_unit(net)
    cluster = None
    try:
        for k, runner in enumerate(args.runners.split(",")):
            add_correction(
                store, "emission_factor", unit, first, last, str(1000 + 10 * k), reason=f"bench {k}"
            )
            options: dict = {"chunk_intervals": args.chunk}
            if runner.startswith("dask"):
                from distributed import LocalCluster

                if cluster is None:
                    cluster = LocalCluster(
                        n_workers=int(runner[4:]),
                        threads_per_worker=1,
                        dashboard_address=None,
                        silence_logs=40,
                    )
                options["dask_address"] = cluster.scheduler_address
            else:
                options["workers"] = int(runner[5:])
            load, cpu = os.getloadavg()[0], time.process_time()
            report = recompute(store, url, first, last, reason=f"bench {runner}", **options)
            cpu = time.process_time() - cpu  # this process only: the whole job for local1
            rate = (report.intervals + report.unchanged) / report.seconds
            print(f"{runner}: version {report.version.version}, {report.intervals} intervals in "
                  f"{report.seconds:.1f} s = {rate:.0f} intervals/s (year: {35040 / rate:.0f} s); chunks "
                  f"summed: compute {report.compute_s:.1f} s, write {report.write_s:.1f} s; "
                  + (f"CPU {cpu:.1f} s = {cpu / n * 1e3:.2f} ms/interval; " if runner == "local1" else "")
                  + f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
        store.close()
        if args.check_days and not args.pg:
            check = Store.open(f"sqlite:///{directory / 'check.db'}")
            fill(check, net, records, args.check_days)
            add_correction(check, "emission_factor", unit, first, last, "1234.5")
            check.close()
            shutil.copy(directory / "check.db", directory / "check-dask.db")
            end = first + timedelta(days=args.check_days)
            urls = [f"sqlite:///{directory / name}" for name in ("check.db", "check-dask.db")]
            recompute(Store.open(urls[0]), urls[0], first, end, workers=2, chunk_intervals=args.chunk // 4)
            if cluster is None:
                from distributed import LocalCluster

                cluster = LocalCluster(
                    n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
                )
            recompute(
                Store.open(urls[1]), urls[1], first, end, dask_address=cluster.scheduler_address,
                chunk_intervals=args.chunk // 4,
            )  # fmt: skip
            same = result_rows(urls[0]) == result_rows(urls[1])
            print(f"local 2-process pool vs 2-worker Dask, {args.check_days} days: "
                  f"{'byte-identical' if same else 'DIFFERENT'} results")  # fmt: skip
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Metering time per interval in the center for grids of 104, 2,000 and 10,000 buses (issue 17 §4).

For each size: the grid (the 104-node reference grid, or ``bench/synthetic.py``'s grid with
carbonflow's metadata defaulted as for any imported grid, ``sim.grid_import.with_defaults``), its
device map (``sim.device_map.build_device_map``: a meter per generator, load and branch end, the
same generator as for the reference grid), ``--intervals`` intervals simulated with AC power flow,
every point's reading stored as the field devices show it at every boundary (``bench/metering.py``),
then each interval metered by ``MeteringService.meter_interval`` (readings → measurements → assembly →
engine → uncertainty bands → versioned store).  The baseline, in the same run, is the engine alone
on the same interval's snapshot (``solve``): the ratio says what the center adds around the maths.

Reported per size (median over the intervals): metering ms, engine ms, their ratio, points read,
and the ratio to the 104-bus grid.  Target: one interval of the 10,000-bus grid < 1 s.

    .venv/bin/python bench/center_scale.py [--sizes 104 2000 10000] [--intervals 4] [--samples 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.metering import fill_store
from bench.synthetic import synthetic_grid
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import Store
from carbonflow.center.store.cascade import metered_snapshot
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.grid_import import with_defaults
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig


def grid_of_size(n_bus: int):
    if n_bus == 104:
        return reference_grid()
    return with_defaults(synthetic_grid(n_bus, seed=0), province="SY")


def measure(n_bus: int, intervals: int, interval_s: int, samples: int) -> dict:
    built = time.perf_counter()
    net = grid_of_size(n_bus)
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    config = SimConfig(start=start, interval_s=interval_s, count=intervals + 1, seed=3)
    truths = list(Simulation(net, config).intervals())
    grid, device_map = grid_document(net), build_device_map(net)
    directory = Path(tempfile.mkdtemp(prefix=f"cf-bench-scale-{n_bus}-"))
    store = Store.open(f"sqlite:///{directory / 'center.db'}")
    fill_store(store, grid, device_map, truths)
    prepared_s = time.perf_counter() - built
    service = MeteringService(store, grid, interval_s, uncertainty_samples=samples)
    metering_ms, engine_ms, errors = [], [], []
    for truth in truths[1:]:
        t0 = time.perf_counter()
        outcome = service.meter_interval(truth.ts, download_factors=False)
        metering_ms.append((time.perf_counter() - t0) * 1000)
        if not outcome.stored:
            errors.append(f"{truth.ts.isoformat()}: {outcome.error}")
            continue
        snapshot = snapshot_from_dict(metered_snapshot(store, truth.ts, interval_s))
        t0 = time.perf_counter()
        solve(snapshot)
        engine_ms.append((time.perf_counter() - t0) * 1000)
    store.close()
    points = sum(len(device["points"]) for device in device_map["devices"])
    return {
        "buses": len(grid["buses"]),
        "points": points,
        "prepared_s": prepared_s,
        "metering_ms": statistics.median(metering_ms),
        "engine_ms": statistics.median(engine_ms) if engine_ms else float("nan"),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[104, 2000, 10000])
    parser.add_argument("--intervals", type=int, default=4)
    parser.add_argument("--interval-s", type=int, default=900)
    parser.add_argument("--samples", type=int, default=32, help="Monte-Carlo draws per interval")
    args = parser.parse_args()
    rows = []
    for n_bus in args.sizes:
        row = measure(n_bus, args.intervals, args.interval_s, args.samples)
        rows.append(row)
        print(
            f"{row['buses']:>6} buses, {row['points']:>6} points: metering {row['metering_ms']:9.1f} ms per "
            f"interval, engine {row['engine_ms']:7.2f} ms (x{row['metering_ms'] / row['engine_ms']:.0f}); "
            f"prepared in {row['prepared_s']:.0f} s",
            flush=True,
        )
        for error in row["errors"]:
            print(f"    not metered: {error}")
    base = rows[0]["metering_ms"]
    print("metering time relative to the first size: " + ", ".join(
        f"{row['buses']} buses {row['metering_ms'] / base:.1f}x" for row in rows
    ))  # fmt: skip


if __name__ == "__main__":
    main()

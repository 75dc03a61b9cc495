"""Benchmark: one simulated day of the 104-node reference grid at 1-minute resolution.

Run from the repository root::

    .venv/bin/python bench/sim.py                 # 1,440 intervals, baseline on 120 of them
    .venv/bin/python bench/sim.py --write         # also time writing truth.jsonl (to a temp dir)
    .venv/bin/python bench/sim.py --sample 60     # fewer baseline intervals

Reported: wall seconds for the day (set-points, 1,440 AC power flows and the engine on every interval),
power flows per second, speed-up over real time, and — in the same run — the baseline: plain
``pp.runpp`` per interval (default options, tables set per interval) on a sample of the same intervals,
as milliseconds per power flow and as the ratio baseline / fast.  The fast path is checked against the
baseline on the sample (max |ΔVm| reported).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from carbonflow.sim.output import write_run
from carbonflow.sim.powerflow import flow_result_from_net, runpp
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=120, help="baseline intervals (default 120)")
    parser.add_argument("--write", action="store_true", help="also time writing the truth files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    net = reference_grid()
    config = SimConfig(interval_s=60.0, count=1440, seed=args.seed)
    started = time.perf_counter()
    simulation = Simulation(net, config)
    setup_s = time.perf_counter() - started
    pf_s = 0.0
    run_started = time.perf_counter()
    chunks = []
    for chunk in simulation.chunks():
        chunks.append(chunk)
    run_s = time.perf_counter() - run_started
    total_s = setup_s + run_s
    # power flow alone, again (warm start as in the run)
    inputs = simulation.inputs
    flow = simulation.flow
    flow.reset()
    pf_started = time.perf_counter()
    for k in range(inputs.count):
        flow.solve(
            inputs.load_p_mw[k],
            inputs.load_q_mvar[k],
            inputs.sgen_p_mw[k],
            None,
            inputs.gen_p_mw[k],
            inputs.storage_p_mw[k],
        )
    pf_s = time.perf_counter() - pf_started

    sample = np.linspace(0, inputs.count - 1, min(args.sample, inputs.count)).astype(int)
    baseline_net = copy.deepcopy(net)
    runpp(baseline_net)
    fast_vm, deviation = [], 0.0
    for k in sample:
        fast_vm.append(
            flow.solve(
                inputs.load_p_mw[k],
                inputs.load_q_mvar[k],
                inputs.sgen_p_mw[k],
                None,
                inputs.gen_p_mw[k],
                inputs.storage_p_mw[k],
            ).vm_pu
        )
    base_started = time.perf_counter()
    for position, k in enumerate(sample):
        baseline_net.load["p_mw"], baseline_net.load["q_mvar"] = inputs.load_p_mw[k], inputs.load_q_mvar[k]
        baseline_net.sgen["p_mw"] = inputs.sgen_p_mw[k]
        baseline_net.gen["p_mw"] = inputs.gen_p_mw[k]
        baseline_net.storage["p_mw"] = inputs.storage_p_mw[k]
        runpp(baseline_net)
        deviation = max(
            deviation, float(np.max(np.abs(flow_result_from_net(baseline_net).vm_pu - fast_vm[position])))
        )
    base_s = time.perf_counter() - base_started
    base_ms = base_s / len(sample) * 1e3
    fast_ms = pf_s / inputs.count * 1e3

    day_s = config.count * config.interval_s
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"grid: {len(net.bus)} buses, {len(net.line)} lines, {len(net.trafo)} transformers")
    print(
        f"one day at 1 min ({config.count} intervals): {total_s:.2f} s "
        f"(setup {setup_s:.2f} s, power flow + engine {run_s:.2f} s)"
    )
    print(f"  speed-up over real time: {day_s / total_s:,.0f}x (target >= 1,000x)")
    print(
        f"  AC power flows: {fast_ms:.3f} ms each, {1e3 / fast_ms:,.0f} PF/s "
        f"(mean Newton iterations {np.mean(np.concatenate([c.iterations for c in chunks])):.2f})"
    )
    print(f"  engine + truth assembly: {(run_s - pf_s) / config.count * 1e3:.3f} ms per interval")
    print(
        f"baseline plain pp.runpp on {len(sample)} of the same intervals: {base_ms:.2f} ms each "
        f"-> fast path is {base_ms / fast_ms:.1f}x faster; max |dVm| {deviation:.1e} pu"
    )
    print(f"  a day with plain pp.runpp would take ~{base_ms * config.count / 1e3:.1f} s of power flow alone")
    if args.write:
        with tempfile.TemporaryDirectory() as out:
            write_started = time.perf_counter()
            write_run(Simulation(net, config), out)
            write_s = time.perf_counter() - write_started
            size = sum(f.stat().st_size for f in Path(out).iterdir()) / 1e6
        print(
            f"writing truth.jsonl + totals.csv for the day: {write_s:.2f} s in all, {size:.0f} MB "
            f"({day_s / write_s:,.0f}x real time)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

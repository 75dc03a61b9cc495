"""Benchmark: importing a CGMES set of a pandapower test case, against loading the same net from
pandapower JSON in the same run.

Run from the repository root::

    .venv/bin/python bench/cgmes.py                          # case1354pegase, best of 3
    .venv/bin/python bench/cgmes.py --case case2869pegase    # a larger one
    .venv/bin/python bench/cgmes.py --repeat 1

The case is solved (AC), exported with carbonflow's writer (timed: export) to a zip, and saved with
``pandapower.to_json``.  Timed per repeat: ``load_cgmes(zip)`` (parse four profiles, build the net) and
``pandapower.from_json`` (the baseline); reported as seconds and as the ratio CGMES / JSON.  The
imported net is solved once and compared with the original (max |ΔVm|, max |ΔP| of lines), so a fast
but wrong import cannot pass.  Target (issue 19): a ≥1,000-bus set imported in < 30 s.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from carbonflow.sim.cgmes_export import write_cgmes
from carbonflow.sim.cgmes_import import load_cgmes
from carbonflow.sim.powerflow import runpp

warnings.filterwarnings("ignore")
TARGET_S = 30.0


def best_of(repeat: int, action) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case", default="case1354pegase", help="pandapower.networks case (default case1354pegase)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats, best kept (default 3)")
    args = parser.parse_args(argv)

    net = getattr(pn, args.case)()
    runpp(net)
    with tempfile.TemporaryDirectory() as folder:
        cgmes_path, json_path = Path(folder) / f"{args.case}.zip", Path(folder) / f"{args.case}.json"
        export_s, _ = best_of(1, lambda: write_cgmes(net, cgmes_path, model_name=args.case))
        pp.to_json(net, str(json_path))
        json_s, _ = best_of(args.repeat, lambda: pp.from_json(str(json_path)))
        cgmes_s, imported = best_of(args.repeat, lambda: load_cgmes(cgmes_path))
        size_kb = cgmes_path.stat().st_size / 1024
    back = imported.net
    runpp(back)
    dvm = float(np.max(np.abs(back.res_bus.vm_pu.values - net.res_bus.vm_pu.values)))
    dp = float(np.max(np.abs(back.res_line.p_from_mw.values - net.res_line.p_from_mw.values)))

    print(f"python {platform.python_version()}, pandapower {pp.__version__}, {os.cpu_count()} cpu(s)")
    print(
        f"{args.case}: {len(net.bus)} buses, {len(net.line)} lines, {len(net.trafo)} transformers, "
        f"{len(net.gen) + len(net.sgen) + len(net.ext_grid)} generators, {len(net.load)} loads, "
        f"{len(net.shunt)} shunts; zip {size_kb:.0f} kB"
    )
    print(f"  export to CGMES (solve included if needed): {export_s:8.3f} s")
    print(f"  import CGMES set (best of {args.repeat}):       {cgmes_s:8.3f} s")
    print(f"  pandapower.from_json (baseline):           {json_s:8.3f} s")
    print(f"  ratio CGMES / JSON:                        {cgmes_s / json_s:8.2f}")
    print(f"  round trip: max |dVm| {dvm:.2e} p.u., max |dP line| {dp:.2e} MW")
    ok = cgmes_s < TARGET_S and dvm < 1e-4 and dp < 0.1
    print(f"  target import < {TARGET_S:g} s and exact round trip: {'met' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

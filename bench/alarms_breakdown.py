"""Where the alarm evaluation's time goes: CPU per check kind and per rule, and the gather's parts.

The 104-node reference grid with the 50 rules of ``bench/alarms.py``: the intervals are metered once,
then ``--repeats`` fresh engines evaluate them all (``AlarmEngine.on_interval``).  Each check is timed
on its own (thread CPU time, around the ``CHECKS`` entry the engine calls); the gather is split into
picking the interval's last reading per point (``_last_per_point``) and the rest (the readings turned
into §3 floats, the device state).  Medians over intervals, then over repeats; per interval.  What to
attack first when the evaluation has to get faster (docs/alarms.md#figures).

    .venv/bin/python bench/alarms_breakdown.py [--intervals 30] [--repeats 5] [--top 12]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.alarms import fifty_rules
from bench.metering import fill_store
from carbonflow.center.alarms import AlarmEngine
from carbonflow.center.alarms import engine as engine_module
from carbonflow.center.alarms.kinds import CHECKS
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import Store
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

spent: dict[str, float] = defaultdict(float)  # rule id (or gather part) -> CPU seconds this interval


def timed(name_of, function):
    def measured(*args, **kwargs):
        started = time.thread_time()
        result = function(*args, **kwargs)
        if inspect.isgenerator(result):  # a check's findings are made as they are taken: take them here
            result = list(result)
        spent[name_of(*args)] += time.thread_time() - started
        return result

    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    net = reference_grid()
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    config = SimConfig(start=start, interval_s=60, count=args.intervals + 1, seed=3)
    truths = list(Simulation(net, config).intervals())
    store = Store.open(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cf-bench-alarms-')) / 'center.db'}")
    fill_store(store, grid_document(net), build_device_map(net), truths)
    service = MeteringService(store, grid_document(net), 60, uncertainty_samples=8)
    outcomes = [service.meter_interval(truth.ts, download_factors=False) for truth in truths[1:]]
    rules = fifty_rules()
    kind_of = {rule.id: rule.kind for rule in rules}
    for kind, check in list(CHECKS.items()):
        CHECKS[kind] = timed(lambda rule, *_: rule.id, check)
    engine_module._last_per_point = timed(
        lambda *_: "gather: last reading per point", engine_module._last_per_point
    )
    per_repeat: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        engine = AlarmEngine(store, rules=rules, interval_s=60, clock=lambda: truths[-1].ts)
        per_interval: dict[str, list[float]] = defaultdict(list)
        for outcome in outcomes:
            spent.clear()
            cpu = time.thread_time()
            evaluation = engine.on_interval(outcome)
            total = time.thread_time() - cpu
            assert evaluation.error is None, evaluation.error
            checks = sum(seconds for name, seconds in spent.items() if name in kind_of)
            by_kind: dict[str, float] = defaultdict(float)
            for name, seconds in spent.items():
                by_kind[f"kind {kind_of[name]}" if name in kind_of else name] += seconds
            for name, seconds in [*spent.items(), *by_kind.items()]:
                per_interval[name].append(seconds * 1000)
            per_interval["whole evaluation"].append(total * 1000)
            per_interval["checks"].append(checks * 1000)
            per_interval["gather and the rest"].append((total - checks) * 1000)
        for name, values in per_interval.items():
            per_repeat[name].append(statistics.median(values))
    store.close()
    med = {name: statistics.median(values) for name, values in per_repeat.items()}
    print(f"{len(rules)} rules, {len(outcomes)} intervals of the 104-node grid, {args.repeats} repeats; "
          f"CPU ms per interval (median), timing each check adds a little")  # fmt: skip
    for name in ("whole evaluation", "checks", "gather and the rest", "gather: last reading per point"):
        print(f"  {name:34s} {med.get(name, 0.0):6.3f}")
    kinds = sorted((name for name in med if name.startswith("kind ")), key=lambda n: -med[n])
    for name in kinds:
        print(f"  {name:34s} {med[name]:6.3f}")
    print(f"the {args.top} costliest rules:")
    for name in sorted(kind_of, key=lambda n: -med.get(n, 0.0))[: args.top]:
        print(f"  {name:24s} {kind_of[name]:16s} {med.get(name, 0.0):6.3f}")


if __name__ == "__main__":
    main()

"""Alarm rule evaluation per metered interval on the 104-node reference grid with 50 rules.

Builds the reference grid, stores every device-map point's reading for ``--intervals`` intervals (as
bench/metering.py does), meters each interval, and then evaluates the alarm engine on that interval's
outcome (``AlarmEngine.on_interval``) with 50 rules: the 13 shipped rules plus 37 more (bus intensity
thresholds per region and per bus group, rate of change of totals, point thresholds per element kind,
stuck values and register jumps per device kind).  The baseline, in the same run, is the metering of
the same interval (``MeteringService.meter_interval``): the ratio says what alarms add to it.

Reported per interval (median): ``gather`` (what the checks are given: the interval's point values from
the metered outcome, and the device, collector and camera state — kept in memory by the engine since
issue 14, read from the store before; new meter checks and conflicts only when stored), ``rules`` (the
checks themselves, pure Python over what was gathered), ``apply`` (raise/clear/touch writes), their
total, and the metering time.

    .venv/bin/python bench/alarms.py [--intervals 30] [--interval-s 60] [--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.metering import fill_store
from carbonflow.center.alarms import AlarmEngine, default_rules, parse_rules
from carbonflow.center.alarms.rules import rules_document
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import (
    Store,
    list_alarms,
)
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

REGIONS = ("AH", "AH/HF", "AH/WH")
POWER_ELEMENTS = ["branch", "load"]  # generators may run flat for hours: not a stuck transducer
DEVICE_KINDS = ("substation_meter", "substation_rtu", "carbon_meter", "plant_rtu", "energy_meter")


def fifty_rules() -> list:
    rules = rules_document(default_rules())
    for k in range(12):  # bus intensity thresholds, per region and per group of buses
        scope = {"region": REGIONS[k % 3]} if k < 6 else {"buses": [f"S{n:03d}" for n in range(k, 80, 6)]}
        rules.append({"id": f"bus-high-{k}", "kind": "threshold", "quantity": "bus.intensity_g_per_kwh",
                      "above": 1100.0 + 10 * k, "count": 2, "window": 3, "scope": scope})  # fmt: skip
    for k, name in enumerate(("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h")):
        rules.append({"id": f"total-step-{k}", "kind": "rate_of_change", "quantity": f"totals.{name}",
                      "max_change_percent": 40.0})  # fmt: skip
        rules.append({"id": f"total-high-{k}", "kind": "threshold", "quantity": f"totals.{name}",
                      "above": 1e6})  # fmt: skip
    for k, element in enumerate(("branch", "load", "generator", "storage", "bus")):
        quantity = "u_kv" if element == "bus" else "p_mw"
        rules.append({"id": f"point-high-{k}", "kind": "threshold", "quantity": f"point.{quantity}",
                      "absolute": True, "above": 5000.0, "scope": {"element_kinds": [element]}})  # fmt: skip
        rules.append({"id": f"point-step-{k}", "kind": "rate_of_change", "quantity": f"point.{quantity}",
                      "max_change": 1000.0, "scope": {"element_kinds": [element]}})  # fmt: skip
    for k, kind in enumerate(DEVICE_KINDS):
        scope = {"device_kind": kind, "element_kinds": POWER_ELEMENTS}
        rules.append({"id": f"stuck-{k}", "kind": "stuck_value", "quantities": ["p_mw", "q_mvar"],
                      "intervals": 4, "scope": scope})  # fmt: skip
    rules.append({"id": "loss-region", "kind": "comm_loss", "after_s": 600, "scope": {"region": "AH/HF"}})
    rules.append({"id": "gap-estimates", "kind": "data_gap", "max_estimates": 50})
    rules.append({"id": "band-wide", "kind": "threshold", "quantity": "bus.band_g_per_kwh", "above": 500.0})
    rules.append(
        {"id": "completeness", "kind": "threshold", "quantity": "interval.completeness", "below": 0.5}
    )
    return parse_rules(rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=30)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument(
        "--postgres", help="postgresql+psycopg://... of a server where we may create (and drop) a database"
    )
    args = parser.parse_args()
    url = args.postgres or f"sqlite:///{Path(tempfile.mkdtemp(prefix='cf-bench-alarms-')) / 'center.db'}"
    if args.postgres:  # a database of its own, dropped at the end
        url = scratch_database(args.postgres)
    try:
        run(args, url)
    finally:
        if args.postgres:
            drop_database(args.postgres, url)


def scratch_database(admin_url: str) -> str:
    name = f"cf_bench_alarms_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def run(args: argparse.Namespace, url: str) -> None:
    net = reference_grid()
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    config = SimConfig(start=start, interval_s=args.interval_s, count=args.intervals + 1, seed=3)
    truths = list(Simulation(net, config).intervals())
    grid, device_map = grid_document(net), build_device_map(net)
    store = Store.open(url)
    fill_store(store, grid, device_map, truths)
    service = MeteringService(store, grid, args.interval_s, uncertainty_samples=32)
    rules = fifty_rules()
    t0 = time.perf_counter()
    engine = AlarmEngine(store, rules=rules, interval_s=args.interval_s, clock=lambda: truths[-1].ts)
    start_ms = (time.perf_counter() - t0) * 1000
    metering_ms, gather_ms, rules_ms, apply_ms, total_ms, raised = [], [], [], [], [], 0
    rules_cpu_ms, metering_cpu_ms, total_cpu_ms = [], [], []
    for truth in truths[1:]:
        t0, cpu = time.perf_counter(), time.thread_time()
        outcome = service.meter_interval(truth.ts, download_factors=False)
        metering_ms.append((time.perf_counter() - t0) * 1000)
        metering_cpu_ms.append((time.thread_time() - cpu) * 1000)
        t0, cpu = time.perf_counter(), time.thread_time()
        evaluation = engine.on_interval(outcome)
        total_ms.append((time.perf_counter() - t0) * 1000)
        total_cpu_ms.append((time.thread_time() - cpu) * 1000)
        assert evaluation.error is None, evaluation.error
        gather_ms.append(evaluation.gather_ms)
        rules_ms.append(evaluation.rules_ms)
        rules_cpu_ms.append(evaluation.rules_cpu_ms)
        apply_ms.append(evaluation.apply_ms)
        raised += len(evaluation.raised)
    raised_rules = sorted({(a["rule"], a["subject"]["id"]) for a in list_alarms(store, state="all")})
    store.close()
    med = statistics.median
    print(
        f"{len(rules)} rules, {len(total_ms)} intervals of the 104-node grid ({args.interval_s} s) "
        f"on {url.split(':')[0]}"
    )
    print(f"alarm evaluation per interval (median): gather {med(gather_ms):.2f} ms, "
          f"rules {med(rules_ms):.2f} ms, apply {med(apply_ms):.2f} ms, "
          f"total {med(total_ms):.2f} ms (max {max(total_ms):.2f}); "
          f"engine start (rules, active alarms, state) {start_ms:.1f} ms once")  # fmt: skip
    print(
        f"baseline, metering the same interval: {med(metering_ms):.1f} ms; "
        f"alarms / metering = {med(total_ms) / med(metering_ms):.3f}; alarms raised on clean data: {raised}"
    )
    print(
        f"checks alone: {med(rules_ms):.2f} ms = {med(rules_ms) / med(metering_ms):.3f} of metering; "
        f"CPU time {med(rules_cpu_ms):.2f} ms = {med(rules_cpu_ms) / med(metering_cpu_ms):.3f} of metering's "
        f"{med(metering_cpu_ms):.1f} ms (CPU time does not grow with the machine's load)"
    )
    print(
        f"whole evaluation, CPU time: {med(total_cpu_ms):.2f} ms (max {max(total_cpu_ms):.2f}); "
        f"wall minus CPU = time this thread waited (for the CPU on a loaded machine, or for the store)"
    )
    for rule, subject in raised_rules:
        print(f"  raised: {rule} at {subject}")


if __name__ == "__main__":
    main()

"""The metering figures of issue 13, measured on the running demo: clean data, demo defaults.

Runs ``carbonflow demo`` (the whole chain: simulated devices on localhost → collector → center) for
``--intervals`` intervals on a fresh directory, then — unless ``--no-restart`` — stops it and starts it
again on the same directory for ``--restart-intervals`` more. For every interval it takes the *latest
version* of the stored result (late data metered again) and the simulator's truth of the same interval,
and reports:

* max over buses and intervals of |intensity − truth| (g/kWh);
* max |generation/load/loss carbon − truth| as a share of the truth's;
* max |residual| as a share of generation carbon;
* estimated inputs (sum) and intervals with any;
* share of (bus, interval) pairs whose truth lies inside value ± band, and the widest band / intensity;
* intervals not metered, intervals metered again (more than one version).

Run it with other work keeping both cores busy (e.g. ``stress`` or a test suite) for the "busy machine"
figures. Results go to stdout as one JSON document per run and a table.

    .venv/bin/python bench/demo_figures.py [--intervals 60] [--speed 10] [--restart-intervals 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from carbonflow.center.store import Store, interval_results, interval_versions, list_conflicts
from carbonflow.demo import DemoOptions, run_demo
from carbonflow.sim.truth import TruthFeed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def figures(directory: Path, truths: dict, lines: list[str]) -> dict[str, Any]:
    store = Store.open(f"sqlite:///{directory / 'center.db'}")
    worst = total_share = residual_share = 0.0
    estimates = intervals_with_estimates = inside = pairs = remetered = 0
    widest = 0.0
    compared = 0
    worst_total = ""
    try:
        for end, truth in sorted(truths.items()):
            versions = interval_versions(store, end)
            if not versions:
                continue
            current = versions[-1]
            remetered += len(versions) > 1
            compared += 1
            estimation = current.estimation
            bands = (estimation.get("uncertainty") or {}).get("intensity_g_per_kwh", {})
            rows = interval_results(store, "bus", end - timedelta(microseconds=1), end)
            metered = {row["element_id"]: row["intensity_g_per_kwh"] for row in rows}
            true_document = truth.result_document()
            for bus in true_document["buses"]:
                value, true_value = metered.get(bus["id"]), bus["intensity_g_per_kwh"]
                if value is None or true_value is None:
                    continue
                gap, band = abs(value - true_value), bands.get(bus["id"]) or 0.0
                worst = max(worst, gap)
                pairs += 1
                inside += gap <= band + 1e-9
                widest = max(widest, band / value if value else 0.0)
            true_totals = truth.totals()
            for name in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
                if true_totals[name]:
                    total_share = max(
                        total_share, abs(current.totals[name] - true_totals[name]) / true_totals[name]
                    )
            generation = current.totals["generation_carbon_t_per_h"]
            residual_share = max(residual_share, abs(current.totals["residual_t_per_h"]) / generation)
            n_estimates = len(estimation.get("estimates", []))
            estimates += n_estimates
            intervals_with_estimates += n_estimates > 0
        conflicts = len(list_conflicts(store))
    finally:
        store.close()
    return {
        "intervals_compared": compared,
        "not_metered": sum("not metered" in line for line in lines),
        "intervals_metered_again": remetered,
        "max_abs_intensity_error_g_per_kwh": round(worst, 4),
        "max_totals_error_share": round(total_share, 6),
        "worst_total": worst_total,
        "max_residual_share": round(residual_share, 6),
        "estimated_inputs": estimates,
        "intervals_with_estimates": intervals_with_estimates,
        "truth_inside_band_share": round(inside / pairs, 4) if pairs else None,
        "widest_band_share": round(widest, 4),
        "reading_conflicts": conflicts,
    }


async def run(directory: Path, intervals: int, speed: float, truths: dict, lines: list[str]) -> None:
    options = DemoOptions(
        directory=directory, port=free_port(), speed=speed, hours=24.0, max_intervals=intervals, password="pw"
    )

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    feed_holder: list[TruthFeed] = []
    report = await run_demo(options, say=say, keep_feed=feed_holder.append)
    for feed in feed_holder:
        for truth in feed.published():
            truths[truth.ts] = truth
    del report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=60)
    parser.add_argument("--restart-intervals", type=int, default=20)
    parser.add_argument("--no-restart", action="store_true")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--dir", help="data directory (default: a fresh temporary one)")
    args = parser.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="cf-demo-figures-"))
    truths: dict = {}
    lines: list[str] = []
    asyncio.run(run(directory, args.intervals, args.speed, truths, lines))
    first = figures(directory, truths, lines)
    print(json.dumps({"run": "first", **first}))
    if not args.no_restart:
        lines_again: list[str] = []
        after: dict = {}  # the second run's own truth: its timeline starts after the first run's data
        asyncio.run(run(directory, args.restart_intervals, args.speed, after, lines_again))
        print(json.dumps({"run": "after restart", **figures(directory, after, lines_again)}))


if __name__ == "__main__":
    main()

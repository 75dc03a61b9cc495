"""Files of a simulation run (``carbonflow sim run --out DIR``).

* ``truth.jsonl`` (``truth.jsonl.gz`` with ``gzip=True``): one JSON object per interval,
  ``{"ts", "interval_s", "interval", "snapshot": <C1 input>, "result": <C1 output>}``;
* ``totals.csv``: one row per interval — generation, load, loss (MW and % of load), generation / load /
  loss carbon (tCO2/h), residual, average intensity of the load (g/kWh), Newton-Raphson iterations;
* ``run.json``: settings, grid summary, counts and the wall-clock time.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carbonflow.sim.simulation import Simulation

TOTALS_COLUMNS = (
    "ts",
    "interval_s",
    "generation_mw",
    "load_mw",
    "storage_charge_mw",
    "loss_mw",
    "loss_percent",
    "generation_carbon_t_per_h",
    "load_carbon_t_per_h",
    "loss_carbon_t_per_h",
    "residual_t_per_h",
    "load_intensity_g_per_kwh",
    "pf_iterations",
)


def write_run(
    simulation: Simulation,
    out_dir: str | Path,
    *,
    gzip_truth: bool = False,
    progress: Callable[[int, int], None] | None = None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``simulation`` and write its files; returns what ``run.json`` holds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth_path = out / ("truth.jsonl.gz" if gzip_truth else "truth.jsonl")
    opener = gzip.open if gzip_truth else open
    started = time.perf_counter()
    intervals = 0
    with (
        opener(truth_path, "wt", encoding="utf-8") as truth_file,
        open(out / "totals.csv", "w", newline="", encoding="utf-8") as totals_file,
    ):
        writer = csv.writer(totals_file)
        writer.writerow(TOTALS_COLUMNS)
        for chunk in simulation.chunks(progress):
            for truth in chunk:
                record = {
                    "ts": truth.ts.isoformat().replace("+00:00", "Z"),
                    "interval_s": truth.interval_s,
                    "interval": truth.number,
                    "snapshot": truth.snapshot_document(),
                    "result": truth.result_document(),
                }
                truth_file.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
                totals = truth.totals()
                load = totals["load_mw"]
                intensity = totals["load_carbon_t_per_h"] / load * 1000.0 if load > 0 else 0.0
                writer.writerow(
                    [
                        record["ts"],
                        truth.interval_s,
                        *(
                            f"{totals[k]:.6f}"
                            for k in ("generation_mw", "load_mw", "storage_charge_mw", "loss_mw")
                        ),
                        f"{totals['loss_mw'] / load * 100 if load > 0 else 0.0:.4f}",
                        *(
                            f"{totals[k]:.6f}"
                            for k in (
                                "generation_carbon_t_per_h",
                                "load_carbon_t_per_h",
                                "loss_carbon_t_per_h",
                                "residual_t_per_h",
                            )
                        ),
                        f"{intensity:.3f}",
                        int(chunk.iterations[truth.t]),
                    ]
                )
                intervals += 1
    config = simulation.config
    meta = {
        "start": config.start.isoformat(),
        "interval_s": config.interval_s,
        "intervals": intervals,
        "seed": config.seed,
        "zone": config.zone,
        "dispatch": config.dispatch,
        "losses": simulation.losses,
        "power_flow": type(simulation.flow).__name__,
        "wall_s": round(time.perf_counter() - started, 3),
        "files": {"truth": truth_path.name, "totals": "totals.csv"},
        "grid": summary or {},
    }
    (out / "run.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta

"""Per-interval metering time in the center, and what the metering reaches against the simulator's truth.

Builds the 104-node reference grid, simulates ``--intervals`` intervals, stores every device-map point's
reading as the field devices show it at every boundary (exactly as a frozen register would deliver it),
then meters each interval with ``MeteringService.meter_interval`` (readings → measurements → assembly →
solve → uncertainty bands → store). The baseline, in the same run, is the bare pipeline the center ran
before the uncertainty and versioning steps: measurements → assembly → solve, nothing stored.

Reports ms per interval for both, their ratio, and the metering figures over all intervals: max |Δ| of
bus intensities against the truth, |residual| share, estimated inputs, share of (bus, interval) pairs
whose truth lies inside the band, widest band share.

    .venv/bin/python bench/metering.py [--intervals 60] [--interval-s 60] [--samples 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from carbonflow.center.metering.assemble import assemble_snapshot
from carbonflow.center.metering.measurements import measurements_for_interval
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import Store, ingest_batch, register_devices, upsert_collector, upsert_topology
from carbonflow.center.topology import topology_rows
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.messages.c4 import MAX_READINGS_PER_BATCH, Batch, Reading
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

COUNTERS = (
    "export_energy_kwh",
    "import_energy_kwh",
    "carbon_kg",
    "charge_energy_kwh",
    "discharge_energy_kwh",
)


def readings_at(device_map, truth, ts) -> list[Reading]:
    readings = []
    for device in device_map["devices"]:
        for point in device["points"]:
            key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
            shown = Decimal(repr(truth.value(*key))) * Decimal(repr(point["scale_to_device"] or 1.0))
            readings.append(Reading(point=point["id"], ts=ts, value=str(shown)))
    return readings


def fill_store(store: Store, grid, device_map, truths) -> None:
    """Topology, one collector with every device, and every point's reading at every interval end."""
    upsert_topology(store, topology_rows(grid))
    upsert_collector(store, "bench", "secret")
    register_devices(store, device_map["devices"], collector_id="bench")
    seq = 0
    for truth in truths:
        readings = readings_at(device_map, truth, truth.ts)
        for first in range(0, len(readings), MAX_READINGS_PER_BATCH):  # a 10,000-bus grid: 118,000 a time
            batch = Batch(
                collector_id="bench", batch_id=uuid.uuid4().hex, seq=seq, created_at=truth.ts,
                readings=readings[first : first + MAX_READINGS_PER_BATCH],
            )  # fmt: skip
            ingest_batch(store, batch)
            seq += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=60)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument("--samples", type=int, default=128, help="Monte-Carlo draws per interval")
    args = parser.parse_args()

    net = reference_grid()
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    config = SimConfig(start=start, interval_s=args.interval_s, count=args.intervals + 1, seed=3)
    truths = list(Simulation(net, config).intervals())
    grid, device_map = grid_document(net), build_device_map(net)
    directory = Path(tempfile.mkdtemp(prefix="cf-bench-metering-"))
    store = Store.open(f"sqlite:///{directory / 'center.db'}")
    fill_store(store, grid, device_map, truths)
    service = MeteringService(store, grid, args.interval_s, uncertainty_samples=args.samples)

    baseline_s, full_s, worst, residual, estimates, inside, pairs, widest = [], [], 0.0, 0.0, 0, 0, 0, 0.0
    for truth in truths[1:]:
        end = truth.ts
        t0 = time.perf_counter()
        readings = service.readings_for(end)
        data = measurements_for_interval(
            service.points, readings, end - timedelta(seconds=args.interval_s), end, max_age_s=args.interval_s
        )
        # the storage carbon the service carries (a discharging battery needs it: a 15-min interval has some)
        discharge = {sid: state.discharge_intensity_g_per_kwh for sid, state in service.storage.items()}
        solve(snapshot_from_dict(assemble_snapshot(grid, data, None, discharge).snapshot))
        baseline_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        outcome = service.meter_interval(end, download_factors=False)
        full_s.append(time.perf_counter() - t0)
        true_e = {b["id"]: b["intensity_g_per_kwh"] for b in truth.result_document()["buses"]}
        generation = outcome.totals["generation_carbon_t_per_h"]
        residual = max(residual, abs(outcome.totals["residual_t_per_h"]) / generation)
        estimates += outcome.estimates
        for bus, value in outcome.intensities.items():
            if value is None or true_e.get(bus) is None:
                continue
            gap, band = abs(value - true_e[bus]), outcome.bands.get(bus) or 0.0
            worst = max(worst, gap)
            pairs += 1
            inside += gap <= band + 1e-9
            widest = max(widest, band / value if value else 0.0)
    store.close()
    base, full = statistics.median(baseline_s) * 1000, statistics.median(full_s) * 1000
    print(f"intervals metered: {len(full_s)} of the 104-node grid, {args.interval_s} s each")
    print(f"baseline (measurements + assembly + solve): {base:.1f} ms per interval (median)")
    print(f"full metering (+ {args.samples}-draw uncertainty, versioned store): {full:.1f} ms per interval")
    print(f"ratio full / baseline: {full / base:.2f}")
    print(f"max |intensity - truth|: {worst:.4f} g/kWh; max |residual| {residual:.5%} of generation carbon")
    print(f"estimated inputs: {estimates}; truth inside the band: {inside}/{pairs} ({inside / pairs:.1%}); "
          f"widest band {widest:.2%} of its intensity")  # fmt: skip


if __name__ == "__main__":
    main()

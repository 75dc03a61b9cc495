"""Cross-region tie intensities: how soon a neighbour's document is used after it arrives.

The reference grid's two cities, Hefei and Wuhu (12 tie lines, power both ways), each get a center of
their own: its store with its region's topology (the ties and the neighbour's tie buses included), its
devices and their readings, its metering service and tie link. Per interval, Hefei meters first while
Wuhu's document is not there (named estimate), Wuhu meters and publishes, and its document arrives at
Hefei through ``TieLink.receive`` with Hefei's ``MeteringLoop`` wired as a running center wires it
(``TieService.attach``): the arrival meters the interval again at once. Measured per arrival:

* arrival -> used: from the document's arrival to the metering taking it into the snapshot it solves;
* arrival -> stored: to the new version stored (the interval's result with the neighbour's values).

The baseline, in the same run, is one metering of the same interval (``meter_interval``: readings ->
measurements -> assembly -> solve -> bands -> store), the time any re-metering needs at least.

    .venv/bin/python bench/crossregion.py [--intervals 12] [--interval-s 900] [--samples 128]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.metering import readings_at
from carbonflow.center.cascade.config import new_key
from carbonflow.center.crossregion.config import TiesConfig
from carbonflow.center.crossregion.layout import region_devices, region_topology, ties_configs
from carbonflow.center.crossregion.link import TieLink
from carbonflow.center.crossregion.service import TieService
from carbonflow.center.metering.loop import MeteringLoop
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import Store, ingest_batch, register_devices, upsert_collector, upsert_topology
from carbonflow.center.topology import topology_rows
from carbonflow.messages.c4 import Batch
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

CITIES = {"hf": "AH/HF", "wh": "AH/WH"}


def region_center(name, grid, device_map, truths, config: TiesConfig, directory, args):
    region = CITIES[name]
    topology = region_topology(grid, region)
    store = Store.open(f"sqlite:///{directory / f'{name}.db'}")
    upsert_topology(store, topology_rows(topology))
    upsert_collector(store, "col-1", "secret")
    devices = region_devices(device_map, topology, region)
    register_devices(store, devices, collector_id="col-1")
    for seq, truth in enumerate(truths):
        readings = readings_at({"devices": devices}, truth, truth.ts)
        batch = Batch(collector_id="col-1", batch_id=f"batch-{seq:04d}", seq=seq, created_at=truth.ts,
                      readings=readings)  # fmt: skip
        ingest_batch(store, batch)
    service = MeteringService(store, topology, args.interval_s, uncertainty_samples=args.samples)
    link = TieLink(store, config, topology)
    service.ties = link
    return service, link


async def measure(hf, wh, ends) -> tuple[list[float], list[float], list[float]]:
    (hf_service, hf_link), (wh_service, wh_link) = hf, wh
    loop = MeteringLoop(hf_service)
    TieService(hf_link).attach(loop)
    baseline_s, stored_s = [], []
    for end in ends:
        started = time.perf_counter()
        await loop.remeter(end, "first metering")  # Wuhu late: estimated
        baseline_s.append(time.perf_counter() - started)
        outcome = wh_service.meter_interval(end)
        documents = wh_link.publish(end, outcome.intensities, not outcome.complete, outcome.version)
        body = documents[0].model_dump_json().encode()
        before = loop.remetered
        arrived = time.perf_counter()
        answer = await asyncio.to_thread(hf_link.receive, body)
        assert answer["remeter"], answer
        while loop.remetered == before:
            await asyncio.sleep(0.0005)
        stored_s.append(time.perf_counter() - arrived)
    return list(hf_link.latencies_s), stored_s, baseline_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=12)
    parser.add_argument("--interval-s", type=int, default=900)
    parser.add_argument("--samples", type=int, default=128)
    args = parser.parse_args()
    net = reference_grid()
    start = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    config = SimConfig(start=start, interval_s=args.interval_s, count=args.intervals + 1, seed=3)
    truths = list(Simulation(net, config).intervals())
    grid, device_map = grid_document(net), build_device_map(net)
    keys = {name: new_key() for name in CITIES}
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        configs = ties_configs(
            grid, CITIES, keys, directory, interval_s=args.interval_s, outbox_durable=False
        )
        centers = [region_center(n, grid, device_map, truths, configs[n], directory, args) for n in CITIES]
        used, stored, baseline = asyncio.run(measure(*centers, [t.ts for t in truths[1:]]))
        ties = len(configs["hf"].ties)

    def ms(values: list[float]) -> str:
        return f"median {1000 * statistics.median(values):.1f} ms, max {1000 * max(values):.1f} ms"

    print(f"{ties} ties, {args.intervals} intervals of {args.interval_s} s, {args.samples} band samples")
    print(f"arrival -> used    {ms(used)}")
    print(f"arrival -> stored  {ms(stored)}")
    print(f"baseline: one metering of the interval  {ms(baseline)}")
    ratio = statistics.median(stored) / statistics.median(baseline)
    print(
        f"arrival -> stored / one metering: {ratio:.2f}; within one interval: {max(stored) < args.interval_s}"
    )


if __name__ == "__main__":
    main()

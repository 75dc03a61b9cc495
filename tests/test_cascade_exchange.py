"""The cascade of the reference grid over real HTTP: a province, 2 cities and 8 counties, each with its
own store and port; parts metered by the counties, everything else exchanged, recomputed and verified."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from cascade_world import World

from carbonflow.center.store.cascade import verifications
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def grid_and_truths():
    net = reference_grid()
    truths = list(Simulation(net, SimConfig(start=START, interval_s=3600, count=4, seed=2)).intervals())
    return grid_document(net), [(t.ts, t.snapshot_document()) for t in truths]


def sqlite_urls(tmp_path):
    return lambda cid: f"sqlite:///{tmp_path / (cid + '.db')}"


def mismatches(world):
    return {
        cid: [(m.verdict["check"], m.judge) for m in c.mismatches]
        for cid, c in world.centers.items()
        if c.mismatches
    }


def test_eleven_centers_meter_the_monolithic_intensities_and_verify_each_other(grid_and_truths, tmp_path):
    grid, truths = grid_and_truths

    async def run():
        world = World(grid, tmp_path, sqlite_urls(tmp_path))
        assert len(world.centers) == 11
        await world.start()
        try:
            latencies = []
            for ts, snapshot in truths:
                began = time.perf_counter()
                world.submit(ts, snapshot)
                await world.wait(ts)
                latencies.append(time.perf_counter() - began)
            return world, latencies, {ts: world.intensities(ts) for ts, _ in truths}
        finally:
            await world.stop()

    world, latencies, found = asyncio.run(run())
    worst = 0.0
    for ts, snapshot in truths:
        mono = result_document(solve(snapshot_from_dict(snapshot), "receiving"))
        for bus in mono["buses"]:
            if bus["intensity_g_per_kwh"] is not None:
                worst = max(worst, abs(found[ts][bus["id"]] - bus["intensity_g_per_kwh"]))
    assert worst <= 1e-6
    assert mismatches(world) == {}
    statuses = {v["status"] for c in world.centers.values() for v in verifications(c.store)}
    assert statuses == {"ok"}
    print(
        "\nper-interval exchange + verification, 11 centers:",
        [round(x * 1000) for x in latencies],
        f"ms; max |Δ| {worst:.2e}",
    )

"""A re-metered interval travels the cascade as a new version: the counties' new parts are accepted
(not refused as conflicting), every level recomputes and judges again, and the interval ends verified
on the new numbers only, equal to the monolithic solution of the new snapshot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cascade_world import World

from carbonflow.center.store.cascade import result_hash_at, verifications
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 6, 1, tzinfo=UTC)


def test_remetered_interval_is_a_new_version_verified_at_every_level(tmp_path):
    net = reference_grid()
    truths = list(Simulation(net, SimConfig(start=START, interval_s=3600, count=2, seed=3)).intervals())
    grid = grid_document(net)
    ts = truths[0].ts
    first, second = truths[0].snapshot_document(), truths[1].snapshot_document()  # "late readings"

    async def run():
        world = World(grid, tmp_path, lambda cid: f"sqlite:///{tmp_path / (cid + '.db')}")
        await world.start()
        try:
            world.submit(ts, first)
            await world.wait(ts)
            old = {cid: result_hash_at(c.store, ts, c.config.region) for cid, c in world.centers.items()}
            world.submit(ts, second)  # metered again: every county's part changed
            for _ in range(3000):
                new = {cid: result_hash_at(c.store, ts, c.config.region) for cid, c in world.centers.items()}
                judged = all(
                    {v["report_hash"] for v in verifications(c.store, ts) if v["judge"] != c.id}
                    <= set(new.values())
                    for c in world.centers.values()
                )
                if all(new[cid] != old[cid] for cid in new) and judged and world.done(ts):
                    break
                await asyncio.sleep(0.02)
            return world, old, new, world.intensities(ts)
        finally:
            await world.stop()

    world, old, new, found = asyncio.run(run())
    assert all(new[cid] != old[cid] for cid in new)  # every level published a new version
    mono = result_document(solve(snapshot_from_dict(second), "receiving"))
    worst = max(
        abs(found[b["id"]] - b["intensity_g_per_kwh"])
        for b in mono["buses"]
        if b["intensity_g_per_kwh"] is not None
    )
    assert worst <= 1e-6
    for center in world.centers.values():
        rows = [v for v in verifications(center.store, ts)]
        assert rows and {v["status"] for v in rows} == {"ok"}, (center.id, rows)
        # one set of verdicts per (pair, judge): the first version's were replaced, not kept beside
        keys = [(v["peer"], v["judge"], v["check"], v["subject"]) for v in rows]
        assert len(keys) == len(set(keys)), center.id

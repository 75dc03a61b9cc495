"""``carbonflow demo`` (its default cascade): the demo's metering (from the collector's readings) fed to
a province, 2 cities and 8 counties, each its own center, store and port, exchanging over real HTTP;
every level verifies every interval and the hierarchical intensities equal the single-center metering."""

from __future__ import annotations

import asyncio

import httpx
from cascade_world import free_port

from carbonflow.demo import DemoOptions, run_demo

INTERVALS = 3


def test_demo_cascade_verifies_every_interval_at_every_level_and_equals_the_single_center(tmp_path):
    options = DemoOptions(
        directory=tmp_path / "demo", port=free_port(), speed=10.0, hours=1.0, max_intervals=INTERVALS,
        password="pw", cascade=True,
    )  # fmt: skip
    lines: list[str] = []
    views: dict[str, dict] = {}

    async def run():
        stop = asyncio.Event()
        task = asyncio.create_task(run_demo(options, say=lines.append, stop=stop))
        while len([line for line in lines if "cascade:" in line]) < 1 and not task.done():
            await asyncio.sleep(0.1)
        # while it runs: the province's view lists its two cities, exchanged with and verified
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{options.port}") as client:
            login = await client.post("/api/v1/login", json={"name": "admin", "password": "pw"})
            token = login.json()["token"]
            answer = await client.get("/api/v1/cascade", headers={"Authorization": f"Bearer {token}"})
            views["province"] = answer.json()
        return await task

    report = asyncio.run(run())
    cascade_lines = [line for line in lines if "cascade:" in line]
    assert report.intervals_metered == INTERVALS, lines
    assert len(report.cascade_checks) >= INTERVALS, lines
    for check in report.cascade_checks:
        assert check.status.keys() == {"province", "city", "county"}, cascade_lines
        assert [len(check.status[level]) for level in ("province", "city", "county")] == [1, 2, 8]
        assert check.ok, cascade_lines  # every center of every level verified the interval ok
        assert check.max_abs_g_per_kwh <= 1e-6, cascade_lines  # hierarchical == single center
    assert sum(1 for line in lines if line.lstrip().startswith(("province", "city", "county"))) == 11, lines
    print("\n" + "\n".join(cascade_lines))
    view = views["province"]
    assert view["center"]["level"] == "province", view
    assert {p["direction"] for p in view["peers"]} == {"lower"} and len(view["peers"]) == 2, view
    assert all(p["last_exchange_ts"] is not None for p in view["peers"]), view

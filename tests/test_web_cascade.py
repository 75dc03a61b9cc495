"""The cascade page in real headless Chromium: the province center lists its two cities (level, last
exchange, backlog, verification status) and the verifications with both sides' numbers; the operator
drills down to a city center's own UI, sees there its upper center and the mismatch from a drifted tie
meter, and steps up again.  Three real centers (province + 2 cities) on localhost."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from cascade_world import World
from test_web_ui import browser  # noqa: F401 - the module's Chromium

from carbonflow.center.store import create_user, upsert_topology
from carbonflow.center.topology import topology_rows
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


def _drift(cid: str, part: dict) -> dict | None:
    if cid != "ah-wh":
        return None
    for tie in part["ties"]:  # every tie meter of one city reads 8 % high: a tie_flow mismatch
        tie["p_mw"] *= 1.08
    return part


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    """Province and cities serving their UIs from a background event loop, two intervals exchanged (the
    second with a drifted tie meter in AH/WH)."""
    folder = tmp_path_factory.mktemp("cascade-ui")
    net = reference_grid()
    grid = grid_document(net)
    truths = [
        (t.ts, t.snapshot_document())
        for t in Simulation(net, SimConfig(start=START, interval_s=3600, count=2)).intervals()
    ]
    world = World(grid, folder, lambda cid: f"sqlite:///{folder / (cid + '.db')}", max_level="city")
    for center in world.centers.values():
        create_user(center.store, "admin", "pw", "admin")
    upsert_topology(world.root.store, topology_rows(grid))  # the province names its regions; the cities not
    ready, done = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def serve():
        await world.start()
        try:
            for k, (ts, snapshot) in enumerate(truths):
                world.submit(ts, snapshot, tamper=_drift if k == 1 else None)
                await world.wait(ts)
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
        finally:
            await world.stop()

    def thread_main():
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the test
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert ready.wait(120) and not failure, failure
    yield world
    done.set()
    thread.join(30)


def _login_at(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#login-user")
    page.fill("#login-user", "admin")
    page.fill("#login-password", "pw")
    page.click("#login-submit")
    page.wait_for_function("document.body.dataset.ready === 'cascade'")


def test_drill_down_from_the_province_to_a_city_and_step_up_again(cascade, browser, tmp_path):  # noqa: F811
    province = cascade.root
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    context.add_init_script("localStorage.setItem('cf-lang', 'en')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _login_at(page, f"http://127.0.0.1:{province.port}/#cascade")
    assert "Anhui (ah)" in page.inner_text("#cas-center") and "province" in page.inner_text("#cas-center")
    assert page.locator("#cas-up").count() == 0  # the top of the cascade
    # centers by their regions' names where the topology names them
    peers = {
        row.split("\t")[0].strip("↓ "): row for row in page.locator("#cas-peers tbody tr").all_inner_texts()
    }
    assert set(peers) == {"Hefei (ah-hf)", "Wuhu (ah-wh)"}
    peers = {name.split("(")[1].rstrip(")"): row for name, row in peers.items()}
    # the drifted tie meters are AH/WH's; a tie it shares with AH/HF mismatches there too
    assert "mismatch" in peers["ah-wh"]
    checks = page.locator("#cas-checks tbody tr").all_inner_texts()
    drifted = [row for row in checks if "tie_flow" in row and "mismatch" in row]
    assert any("Wuhu (ah-wh)" in row for row in drifted)  # both sides' numbers shown next to each other
    page.screenshot(path=str(tmp_path / "cascade-province.png"))

    page.click("#cas-down-ah-wh")  # drill down: the city's own center
    city_url = cascade.centers["ah-wh"].port
    _login_at(page, f"http://127.0.0.1:{city_url}/#cascade")
    assert "ah-wh" in page.inner_text("#cas-center") and "city" in page.inner_text("#cas-center")
    assert "Wuhu (" not in page.inner_text("#cas-center")  # no topology at the city: its id
    assert "mismatch" in page.inner_text("#cas-peers")  # the province's verdict reached the city
    page.click("#cas-up")  # step up again
    _login_at(page, f"http://127.0.0.1:{province.port}/#cascade")
    assert page.locator("#cas-down-ah-hf").count() == 1
    assert errors == []
    context.close()

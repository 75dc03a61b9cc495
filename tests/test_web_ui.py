"""The web UI in real headless Chromium (Debian ``/usr/bin/chromium``, driven by Playwright) against a real
uvicorn server on a free port, serving a store filled from the simulator (``webdata.populate``).

Skips when Playwright or Chromium is missing — except under ``CI=true``, where that is a failure.
Screenshots go to the test's tmp_path; with ``CARBONFLOW_SCREENSHOTS=1`` they are also copied to
``docs/screenshots/`` (overview.png, topology.png, consumption.png) for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from webdata import PASSWORD, USER, populate, served

CHROMIUM = os.environ.get("CARBONFLOW_CHROMIUM", "/usr/bin/chromium")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def _require_browser():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; browsers are not downloaded)"
        sync_playwright = None
    if reason is None and not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (Debian package chromium)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from carbonflow.center.api import CenterSettings, create_app

    path = tmp_path_factory.mktemp("center") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=24)
    app = create_app(CenterSettings(database_url=f"sqlite:///{path}", live_poll_s=0.5), store=store)
    with served(app) as base:
        yield base, store
    store.close()


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=False)
    if os.environ.get("CARBONFLOW_SCREENSHOTS") == "1" and name in ("overview", "topology", "consumption"):
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, DOCS_SCREENSHOTS / target.name)


def _open(page, name: str) -> None:
    page.click(f'#nav button[data-page="{name}"]')
    page.wait_for_function(f"document.body.dataset.ready === '{name}'")
    page.wait_for_timeout(300)  # let ECharts finish its animation frame before screenshots


def test_the_operator_logs_in_and_reads_every_page(server, browser, tmp_path):
    base, _store = server
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the center's CSP forbids
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, accept_downloads=True, bypass_csp=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.wait_for_selector("#login-form")
    _shot(page, tmp_path, "login")

    page.fill("#login-user", USER)
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.wait_for_function("document.getElementById('login-error').textContent.length > 0")

    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function("document.body.dataset.ready === 'overview'")
    page.wait_for_timeout(300)
    assert "tCO₂/h" in page.inner_text("#ov-cards")
    _shot(page, tmp_path, "overview-zh")

    # switch language (screenshots in English: CI machines often lack CJK fonts)
    assert page.inner_text('#nav button[data-page="topology"]') == "拓扑"
    page.click("#lang")
    # the cards are rendered again after the switch (a fetch): wait for them, not for the old page
    page.wait_for_function("document.getElementById('ov-cards').innerText.includes('System average')")
    assert page.inner_text('#nav button[data-page="topology"]') == "Topology"
    assert "System average intensity" in page.inner_text("#ov-cards")
    assert "gCO₂/kWh" in page.inner_text("#ov-cards")
    page.wait_for_timeout(300)
    _shot(page, tmp_path, "overview")

    # topology: all 104 buses drawn and coloured by their intensity
    _open(page, "topology")
    nodes = page.evaluate("window.cf.nodes")
    assert len(nodes) == 104
    coloured = [n for n in nodes if n["intensity"] is not None]
    assert len(coloured) >= 100 and all(
        n["color"].startswith("#") and n["color"] != "#b0b7bf" for n in coloured
    )
    assert len({n["color"] for n in coloured}) > 5  # a real spread of colours, not one
    _shot(page, tmp_path, "topology")

    # click a node on the canvas: the panel shows the API's intensity for the shown interval
    x, y = page.evaluate("window.cf.busPixel('U01')")
    box = page.locator("#topo-chart").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("document.getElementById('info-id')?.textContent === 'U01'")
    shown_ts = page.evaluate("window.cf.result.ts")
    api = page.evaluate(
        "async (ts) => (await (await fetch('/api/v1/results/bus?element=U01&ts=' + ts)).json()).items[0]",
        shown_ts,
    )
    shown = float(page.get_attribute("#info-intensity", "data-value"))
    assert shown == pytest.approx(api["intensity_g_per_kwh"], rel=1e-12)

    # the time slider replays an earlier interval
    latest = shown_ts
    page.eval_on_selector("#slider", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function(f"window.cf.result.ts !== '{latest}'")
    first = page.evaluate("window.cf.intervals[0].ts")
    assert page.evaluate("window.cf.result.ts") == first
    assert page.inner_text("#info-id") == "U01"  # the selection follows the slider

    for name in ("generation", "grid", "consumption", "history", "devices", "cameras"):
        _open(page, name)
        _shot(page, tmp_path, name)
    assert page.locator("#cam-list table").count() == 1  # the cameras page (tests/test_web_cameras.py)

    # export a CSV (devices list)
    _open(page, "devices")
    with page.expect_download() as download:
        page.click("#dev-csv")
    saved = tmp_path / "devices.csv"
    download.value.save_as(saved)
    lines = saved.read_text("utf-8").splitlines()
    assert lines[0].startswith("id,") and len(lines) == 1 + 177

    page.click("#lang")
    assert page.inner_text('#nav button[data-page="topology"]') == "拓扑"
    assert errors == []
    context.close()

"""Stored XSS (issue 15 §4): server data with an HTML payload — a device id, a bus name, the name of the
user who queued a command — renders as text in real Chromium, and the Content-Security-Policy would
block an inline script even if one slipped through."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from test_web_ui import _require_browser
from webdata import PASSWORD, USER, populate, served

from carbonflow.center.store import create_user, queue_command, register_devices
from carbonflow.center.store.schema import Bus

PAYLOAD = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from carbonflow.center.api import CenterSettings, create_app

    path = tmp_path_factory.mktemp("xss") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=1)
    register_devices(
        store,
        [{"id": PAYLOAD, "protocol": "dlt645", "endpoint": {"host": "x", "port": 1}}],
        collector_id="C1",
    )
    with store.write() as connection:
        connection.execute(update(Bus).where(Bus.id == "S003").values(name=PAYLOAD))
    create_user(store, PAYLOAD, "long-password", "operator")
    queue_command(store, "C1", "read_now", device_id=PAYLOAD, actor=PAYLOAD)
    app = create_app(CenterSettings(database_url=f"sqlite:///{path}", live_poll_s=0.5), store=store)
    with served(app) as url:
        yield url
    store.close()


def _wait_ready(page, name: str) -> None:
    """Poll with ``evaluate`` (not ``wait_for_function``, whose string eval the CSP refuses)."""
    for _ in range(200):
        if page.evaluate("document.body.dataset.ready") == name:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"page {name} never became ready")


def test_an_html_payload_in_server_data_renders_as_text(server):
    sync_playwright = _require_browser()
    from test_web_ui import CHROMIUM

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "/")
        page.fill("#login-user", USER)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        _wait_ready(page, "overview")
        page.click('#nav button[data-page="devices"]')
        _wait_ready(page, "devices")
        assert PAYLOAD in page.inner_text("#dev-table")  # the device id, shown as the characters it is
        assert PAYLOAD in page.inner_text("#dev-commands")  # the device and the user who queued it
        assert page.locator("#dev-table img, #dev-commands img").count() == 0
        page.click('#nav button[data-page="topology"]')
        _wait_ready(page, "topology")
        page.evaluate("showBus(window.cf.topo.buses.find((b) => b.id === 'S003'))")
        assert PAYLOAD in page.inner_text("#topo-info")
        assert page.locator("#topo-info img").count() == 0
        page.click("#lang")  # renders the pages again
        page.wait_for_timeout(500)
        # an inline handler that did reach the DOM would still be refused by the CSP
        page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', '<img id=probe src=x onerror=\"window.__csp=1\">')"
        )
        page.wait_for_timeout(300)
        assert page.evaluate("window.__xss") is None
        assert page.evaluate("window.__csp") is None
        assert errors == []
        browser.close()

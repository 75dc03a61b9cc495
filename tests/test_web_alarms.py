"""The alarm page in real headless Chromium: the header badge counts active alarms, the page lists them
(server text shown as text, never as HTML), an operator acknowledges one with a note, and a new alarm
arrives over the live socket without a reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import served

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store, create_user, list_alarms

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
RULES = [
    {"id": "gap", "kind": "data_gap", "min_completeness": 0.9, "severity": "minor"},
    {"id": "balance", "kind": "balance_residual", "tolerance": 0.001, "severity": "critical"},
    {"id": "cascade", "kind": "cascade_mismatch", "severity": "major"},
]


def outcome(k: int, completeness: float = 1.0, residual: float = 0.0, error: str | None = None):
    totals = {"generation_carbon_t_per_h": 100.0, "residual_t_per_h": residual}
    return IntervalOutcome(T0 + timedelta(minutes=k), True, totals, completeness=completeness, error=error)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("alarm-ui") / "center.db"
    store = Store.open(f"sqlite:///{path}")
    create_user(store, "op", "pw", "admin")
    settings = CenterSettings(
        database_url=f"sqlite:///{path}", live_poll_s=0.2, alarm_tick_s=0, maintenance_period_s=0
    )
    app = create_app(settings, store=store)
    app.state.alarms.set_rules(RULES)
    with served(app) as base:
        yield base, app
    store.close()


def test_the_operator_sees_acknowledges_and_receives_alarms_live(server, browser, tmp_path):  # noqa: F811
    base, app = server
    app.state.alarms.on_interval(outcome(1, completeness=0.4))
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the center's CSP forbids
    page = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/#alarms")
    page.fill("#login-user", "op")
    page.fill("#login-password", "pw")
    page.click("#login-submit")
    page.wait_for_function("document.body.dataset.ready === 'alarms'")
    page.wait_for_selector("#alarm-list tr[data-alarm]")
    assert page.inner_text("#alarm-badge").endswith("1")
    row = page.inner_text("#alarm-list tbody tr")
    assert "gap" in row and "center metering" in row

    page.once("dialog", lambda dialog: dialog.accept("<b>on it</b>"))
    page.click("#alarm-list tbody tr button")
    page.wait_for_selector("#alarm-list .acked")
    [alarm] = list_alarms(app.state.store)
    assert alarm["acknowledged"] and alarm["ack"]["by"] == "op" and alarm["ack"]["note"] == "<b>on it</b>"

    # a critical alarm raised now arrives over the live socket: badge and list update, no reload
    app.state.alarms.on_interval(outcome(2, completeness=0.4, residual=5.0))
    page.wait_for_function("document.getElementById('alarm-badge').textContent.endsWith('2')", timeout=10_000)
    page.wait_for_selector("#alarm-list tr.sev-critical")
    assert "critical" in page.get_attribute("#alarm-badge", "class")
    app.state.alarms.cascade_verdict("<i>AH-HF</i>", "mismatch", "<img src=x onerror=alert(1)>", at=T0)
    page.wait_for_function("document.getElementById('alarm-badge').textContent.endsWith('3')", timeout=10_000)
    page.wait_for_selector("#alarm-list tr.sev-major")
    assert page.locator("#alarm-list i, #alarm-list img").count() == 0  # server text is text, never markup
    assert "<i>AH-HF</i>" in page.inner_text("#alarm-list")
    page.screenshot(path=str(tmp_path / "alarms.png"))
    assert errors == []

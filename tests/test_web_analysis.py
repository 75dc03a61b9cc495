"""The analysis page in real headless Chromium, in both languages: a month's carbon by region with its
month-on-month change, ranked by intensity, two users side by side, a bad group named; no script errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import PASSWORD, USER, populate, save_simulated, served

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.sim.reference_grid import reference_grid


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis-ui") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=1)  # June 2025
    save_simulated(store, reference_grid(), datetime(2025, 5, 10, 4, 0, tzinfo=UTC), 1)  # May
    app = create_app(CenterSettings(database_url=f"sqlite:///{path}", maintenance_period_s=0), store=store)
    with served(app) as base:
        yield base
    store.close()


def _show(page) -> None:
    page.evaluate("document.body.dataset.ready = ''")
    page.click("#ana-form button[type=submit]")
    page.wait_for_function("document.body.dataset.ready === 'analysis'")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_analyst_ranks_compares_and_sees_month_on_month(server, browser, lang, tmp_path):  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    context.add_init_script(f"localStorage.setItem('cf-lang', '{lang}')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/#analysis")
    page.fill("#login-user", USER)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function("document.body.dataset.ready === 'analysis'")
    page.wait_for_selector("#ana-table tbody tr")
    assert page.input_value("#ana-start") == "2025-06"  # the month of the latest interval
    rows = page.locator("#ana-table tbody tr")
    regions = {rows.nth(k).locator("td").nth(1).inner_text() for k in range(rows.count())}
    assert regions == ({"Hefei", "Wuhu"} if lang == "en" else {"合肥市", "芜湖市"})  # names, not AH/HF
    first = [c.strip() for c in rows.nth(0).locator("td").all_inner_texts()]
    assert first[0] == "1" and first[6].endswith("%") and first[6] != "—"  # May exists: a change is shown
    assert first[8] == "—"  # June 2024 has no data: no year-on-year change

    page.select_option("#ana-dimension", "user")
    page.select_option("#ana-order", "intensity")
    _show(page)
    intensities = [
        float(c.replace(",", ""))
        for c in page.locator("#ana-table tbody tr td:nth-child(5)").all_inner_texts()
    ]
    assert len(intensities) > 14 and intensities == sorted(intensities, reverse=True)  # every load

    page.fill("#ana-keys", "U02,U01")
    _show(page)
    assert page.locator("#ana-table tbody tr td:nth-child(2)").all_inner_texts() == ["U02", "U01"]
    page.fill("#ana-keys", "U01,<b>NOPE</b>")
    _show(page)
    assert "<b>NOPE</b>" in page.inner_text("#ana-error") and page.locator("#ana-error b").count() == 0
    page.screenshot(path=str(tmp_path / f"analysis-{lang}.png"))
    assert errors == []
    context.close()

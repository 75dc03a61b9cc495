"""The overview in real headless Chromium, both languages: the latest complete interval with its age on
the center's clock (the demo's simulated clock is injected the same way: ``app.state.clock``), a clear
"data is late" state once no complete interval arrived within the expected time, and a trend chart that
is drawn (not empty: data in its series and ink on its canvas)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import START, chart_ink, empty_twin_ink, logged_in, served_center

from carbonflow.sim.serve import ManualClock

HOURS = 1
LAST = START + timedelta(hours=HOURS)  # the end of the latest stored interval
CLOCK = ManualClock(LAST)
LATE = {"en": ("ago", "Data is late"), "zh": ("前", "数据延迟")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("overview-ui"), hours=HOURS, clock=CLOCK.now) as (base, _s):
        yield base


def _show_overview(page) -> None:
    page.evaluate("document.body.dataset.ready = ''")
    page.click('#nav button[data-page="overview"]')
    page.wait_for_function("document.body.dataset.ready === 'overview'")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_overview_shows_the_age_of_the_latest_interval_and_says_when_data_is_late(server, browser, lang):  # noqa: F811
    ago, late = LATE[lang]
    CLOCK.set(LAST + timedelta(minutes=10))  # on time: the next interval is not due yet
    context, page, errors = logged_in(browser, server, "overview", lang, console=True)
    fresh = page.request.get(f"{server}/api/v1/overview").json()
    assert fresh["late"] is False and fresh["age_s"] == 600.0 and fresh["now_ts"] == "2025-06-01T17:10:00Z"
    assert page.is_hidden("#ov-late")
    age = page.inner_text("#ov-age")
    assert "10" in age and ago in age and "late" not in (page.get_attribute("#ov-age", "class") or "")

    # the trend chart is drawn: bars and a line with data, and ink on the canvas (not an empty frame)
    option = page.evaluate("window.cf.charts['ov-chart'].getOption()")
    assert len([v for v in option["series"][0]["data"] if v is not None]) == HOURS * 4
    drawn, empty = chart_ink(page, "ov-chart"), empty_twin_ink(page, "ov-chart")
    assert drawn["share"] > 2 * empty["share"] and drawn["colours"] > 20, (drawn, empty)

    CLOCK.set(LAST + timedelta(hours=3, minutes=5))  # no complete interval since: late
    stale = page.request.get(f"{server}/api/v1/overview").json()
    assert stale["late"] is True and stale["age_s"] == 3 * 3600 + 300 and stale["ts"] == fresh["ts"]
    _show_overview(page)
    banner = page.inner_text("#ov-late")
    assert late in banner and "3" in banner and "15" in banner, banner  # how long, and the usual interval
    assert "late" in page.get_attribute("#ov-age", "class")

    CLOCK.set(LAST + timedelta(minutes=20))  # data on time again: the page says so without a reload
    page.evaluate("PAGES.overview()")
    page.wait_for_function("document.getElementById('ov-late').hidden")
    assert errors == []
    context.close()

"""The history page in real headless Chromium: a series of one point is drawn (its symbol shown), a
missing bucket breaks the line instead of being bridged, times in the table are local times (not ISO
strings), the whole grid with a grouping says the grouping does not apply, and buckets metered from
estimated inputs are drawn differently.  No script errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import START, logged_in, served_center

from carbonflow.center.store.schema import Interval


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("history-ui")) as (base, store):
        yield base, store


@pytest.fixture(scope="module")
def server(served):
    return served[0]


def _show(page) -> None:
    page.evaluate("document.body.dataset.ready = ''")
    page.click('#nav button[data-page="history"]')
    page.wait_for_function("document.body.dataset.ready === 'history'")


def test_one_point_gaps_local_times_and_an_honest_whole_grid(server, browser):  # noqa: F811
    context, page, errors = logged_in(browser, server, "history", "en")

    # the hour of data in day buckets: one point, drawn with its symbol
    page.select_option("#hist-kind", "total")
    page.select_option("#hist-group", "element")
    page.select_option("#hist-bucket", "day")
    _show(page)
    series = page.evaluate("window.cf.historySeries")
    assert len(series) == 1 and len([p for p in series[0]["points"] if p[1] is not None]) == 1
    option = page.evaluate("window.cf.charts['hist-chart'].getOption().series[0]")
    assert option["showSymbol"] is True and option["connectNulls"] is False
    times = page.locator("#hist-table tbody tr td:nth-child(1)").all_inner_texts()
    assert times and all("T" not in t and "+08" not in t for t in times), times  # local, not ISO

    # a missing bucket breaks the line
    gapped = page.evaluate("withGaps([[0, 1], [900000, 2], [2700000, 3]])")
    assert gapped == [[0, 1], [900000, 2], [1800000, None], [2700000, 3]]

    # the whole grid grouped by region: said, not silently ignored
    page.select_option("#hist-group", "region")
    _show(page)
    assert "does not apply" in page.inner_text("#hist-error")
    assert errors == []
    context.close()


ESTIMATED = {"en": "with estimated data", "zh": "含估计数据"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_buckets_metered_from_estimated_inputs_are_marked_in_the_chart_and_the_table(served, browser, lang):  # noqa: F811
    base, store = served
    marked = START + timedelta(minutes=30)  # the interval ending 00:30 local: bucket 00:15
    with store.write() as connection:
        connection.execute(
            update(Interval)
            .where(Interval.ts == marked)
            .values(estimation={"complete": False, "estimates": ["x"]})
        )
    context, page, errors = logged_in(browser, base, "history", lang)
    page.select_option("#hist-kind", "total")
    page.select_option("#hist-bucket", "15min")
    _show(page)
    series = page.evaluate("window.cf.charts['hist-chart'].getOption().series")
    [marks] = [s for s in series if s["name"] == ESTIMATED[lang]]
    shown = [point for point in marks["data"] if point[1] is not None]
    assert len(shown) == 1 and marks["symbol"] == "emptyCircle"
    rows = page.locator("#hist-table tbody tr.estimated")
    assert rows.count() == 1 and "00:15" in rows.first.inner_text()
    assert rows.first.get_attribute("title") == ESTIMATED[lang]
    # the API says which buckets: the per-bucket count of intervals metered from estimated inputs
    history = page.request.get(f"{base}/api/v1/history?kind=total&bucket=15min").json()["items"]
    assert [r["incomplete_intervals"] for r in history].count(1) == 1 and sum(
        r["incomplete_intervals"] for r in history
    ) == 1
    assert errors == []
    context.close()

"""The history page in real headless Chromium: a series of one point is drawn (its symbol shown), a
missing bucket breaks the line instead of being bridged, times in the table are local times (not ISO
strings), and the whole grid with a grouping says the grouping does not apply.  No script errors."""

from __future__ import annotations

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import logged_in, served_center


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("history-ui")) as (base, _store):
        yield base


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

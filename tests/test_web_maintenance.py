"""The maintenance page in real headless Chromium: the collector with its status and configuration
versions; a version read with its secret masked, compared with the one before (the added line shown),
rolled back to (a new version, queued); device clocks by offset with one-click sync; meter checks and
image storage listed.  No script errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import COLLECTOR, USER, logged_in, served_center

from carbonflow.center.store import list_commands, list_devices, record_status, upsert_collector
from carbonflow.center.store.collector_admin import collector_configs
from carbonflow.messages.c4 import DeviceStatus

SECRET = "maintenance-ui-secret-42"
CONFIG = (
    f'id = "{COLLECTOR}"\nsecret = "{SECRET}"\n[center]\nurl = "http://127.0.0.1:8000"\n'
    '[[devices]]\nid = "ECM"\nprotocol = "dlt698"\nendpoint = "127.0.0.1:7000"\naddress = "220100000001"\n'
    'points = [{ name = "e", oad = "00100200" }]\n'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("maintenance-ui")) as (base, store):
        upsert_collector(store, COLLECTOR, SECRET)  # a secret long enough for a collector configuration
        yield base, store


def test_the_operator_reads_compares_and_rolls_back_a_configuration_and_syncs_a_clock(server, browser):  # noqa: F811
    base, store = server
    context, page, errors = logged_in(browser, base, "maintenance", "en", console=True)
    for text in (CONFIG, CONFIG + "\n# poll faster\n"):  # two versions, pushed as an operator would
        pushed = page.request.post(
            f"{base}/api/v1/collectors/{COLLECTOR}/config", data=text, headers={"Origin": base}
        )
        assert pushed.status == 201, pushed.text()
    page.evaluate("document.body.dataset.ready = ''")
    page.click('#nav button[data-page="maintenance"]')
    page.wait_for_function("document.body.dataset.ready === 'maintenance'")
    assert COLLECTOR in page.inner_text("#mt-collectors")
    versions = page.locator("#mt-versions tbody tr").all_inner_texts()
    assert len(versions) == 2, errors
    newest, oldest = (row.split("\t")[0] for row in versions)

    page.click(f'#mt-versions button[data-show="{oldest}"]')  # read: the secret masked
    page.wait_for_function("document.getElementById('mt-config').textContent.includes('[center]')")
    shown = page.inner_text("#mt-config")
    assert 'secret = "***"' in shown and SECRET not in shown

    page.click(f'#mt-versions button[data-compare="{newest}"]')  # compare with the one before
    page.wait_for_selector("#mt-config .diff-added")
    added = page.locator("#mt-config .diff-added").all_inner_texts()
    removed = page.locator("#mt-config .diff-removed").all_inner_texts()
    assert "+ # poll faster" in added and '+ config_version = "2"  # set by the center' in added, added
    assert removed == ['- config_version = "1"  # set by the center'], removed

    page.click(f'#mt-versions button[data-rollback="{oldest}"]')  # roll back: a new version, queued
    page.wait_for_function("document.querySelectorAll('#mt-versions tbody tr').length === 3")
    assert "Rolled back to" in page.inner_text("#mt-config-title")
    assert len(collector_configs(store, COLLECTOR)) == 3
    assert [c for c in list_commands(store) if c["kind"] == "reload_config"][-1]["actor"] == USER

    clocks = page.locator("#mt-clocks tbody tr").all_inner_texts()
    offsets = [abs(float(row.split("\t")[2])) for row in clocks]
    assert offsets and offsets == sorted(offsets, reverse=True)  # the worst clock first
    first = page.locator("#mt-clocks tbody tr").first.inner_text().split("\t")[0]
    page.click(f'#mt-clocks button[data-sync="{first}"]')
    page.wait_for_function("document.getElementById('mt-clocks-note').textContent.length > 0")
    assert any(c["kind"] == "time_sync" and c["device_id"] == first for c in list_commands(store))
    assert "images stored" in page.inner_text("#mt-images").lower()
    assert errors == []
    context.close()


CLOCK_TITLES = {
    "en": ("Worst clocks", "Clock offset over time"),
    "zh": ("时钟偏差最大的设备", "时钟偏差历史"),
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_worst_clocks_are_charted_and_a_click_shows_a_devices_offsets_over_time(server, browser, lang):  # noqa: F811
    base, store = server
    devices = list_devices(store)
    drifting, stepped = devices[5]["id"], devices[6]["id"]
    last = max(d["last_seen"] for d in devices if d["last_seen"])
    for k, (a, b) in enumerate(((1.0, -0.5), (2.5, -0.6), (4.0 + (lang == "zh"), -3.0)), start=1):
        at = last + timedelta(minutes=15 * k + (60 if lang == "zh" else 0))
        record_status(store, COLLECTOR, [_status(drifting, at, a), _status(stepped, at, b)], received_at=at)
    context, page, errors = logged_in(browser, base, "maintenance", lang, console=True)
    worst = page.evaluate("window.cf.charts['mt-clock-worst'].getOption()")
    order = list(reversed(worst["yAxis"][0]["data"]))  # drawn bottom-up: the worst at the top
    assert order[:2] == [drifting, stepped], order
    assert CLOCK_TITLES[lang][0] in worst["title"][0]["text"]
    # the worst device's offsets are shown first, every sample with its time
    page.wait_for_function(f"document.getElementById('mt-clock-series').dataset.device === '{drifting}'")
    series = page.evaluate("window.cf.charts['mt-clock-series'].getOption()")
    assert CLOCK_TITLES[lang][1] in series["title"][0]["text"]
    assert [p[1] for p in series["series"][0]["data"]][-3:] == [1.0, 2.5, 4.0 + (lang == "zh")]

    # one click on the second bar (a real mouse click at its pixels) shows that device's series
    x, y = page.evaluate(
        "(() => { const c = window.cf.charts['mt-clock-worst']; const cats = c.getOption().yAxis[0].data;"
        " return c.convertToPixel({ gridIndex: 0 }, [-1.5, cats.length - 2]); })()"
    )
    box = page.locator("#mt-clock-worst").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function(f"document.getElementById('mt-clock-series').dataset.device === '{stepped}'")
    values = [p[1] for p in page.evaluate("window.cf.charts['mt-clock-series'].getOption().series[0].data")]
    assert values[-3:] == [-0.5, -0.6, -3.0]
    # a click on a row of the clocks table does the same
    page.locator("#mt-clocks tbody tr", has_text=drifting).first.locator("td").first.click()
    page.wait_for_function(f"document.getElementById('mt-clock-series').dataset.device === '{drifting}'")
    assert errors == []
    context.close()


def _status(device, at, offset):
    return DeviceStatus(device=device, online=True, last_seen=at, clock_offset_s=offset)

"""The maintenance page in real headless Chromium: the collector with its status and configuration
versions; a version read with its secret masked, compared with the one before (the added line shown),
rolled back to (a new version, queued); device clocks by offset with one-click sync; meter checks and
image storage listed.  No script errors."""

from __future__ import annotations

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import COLLECTOR, USER, logged_in, served_center

from carbonflow.center.store import list_commands, upsert_collector
from carbonflow.center.store.collector_admin import collector_configs

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

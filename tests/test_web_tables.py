"""Tables that scale, in real headless Chromium: the devices table (177 devices) shows pages of 50 rows,
a search narrows it, a filter on an enumeration keeps only its value, a click on a header sorts (again:
reversed), the CSV export holds every row the search left (all pages), a command button on the second
page still works, and the table keeps its search when the page re-renders."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import logged_in, served_center

from carbonflow.center.store import list_commands


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("tables-ui")) as (base, store):
        yield base, store


def _rows(page) -> list[list[str]]:
    return [row.split("\t") for row in page.locator("#dev-table tbody tr").all_inner_texts()]


def test_the_operator_searches_filters_sorts_pages_and_exports_the_devices(server, browser):  # noqa: F811
    base, store = server
    context, page, errors = logged_in(browser, base, "devices", "en")
    total = len(page.request.get(base + "/api/v1/devices?limit=100000").json()["items"])
    assert total > 100
    assert len(_rows(page)) == 50  # a page, not 7,600 px of rows
    assert f"1–50 / {total}" in page.inner_text("#dev-table .table-info")

    page.click("#dev-table .table-next")  # the second page
    second = _rows(page)
    assert len(second) == 50 and "51–100" in page.inner_text("#dev-table .table-info")

    # a command button on the second page: queued for that device (one listener for every page)
    device = second[0][0]
    page.click(f'#dev-table button[data-device="{device}"][data-command="read_now"]')
    page.wait_for_function("document.body.dataset.ready === 'devices'")
    page.wait_for_timeout(300)
    assert any(c["device_id"] == device and c["kind"] == "read_now" for c in list_commands(store))

    # search: every row shown holds the text; the count says how many of all
    page.fill("#dev-table .table-search", "EM-U0")
    rows = _rows(page)
    assert rows and all("EM-U0" in row[0] for row in rows)
    assert f"/ {len(rows)} ({total} in all)" in page.inner_text("#dev-table .table-info")

    # the CSV: every row the search left, with the column labels
    with page.expect_download() as download:
        page.click("#dev-table .table-csv")
    text = download.value.path().read_text(encoding="utf-8-sig")
    exported = list(csv.reader(io.StringIO(text)))
    assert exported[0][0] == "Device" and len(exported) == len(rows) + 1
    assert {r[0] for r in exported[1:]} == {row[0] for row in rows}
    # the same rows as XLSX, made by the center from the page's texts
    with page.expect_download() as download:
        page.click("#dev-table .table-xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(download.value.path().read_bytes())).active
    cells = [[c.value for c in r] for r in sheet.iter_rows()]
    assert cells[0][0] == "Device" and [r[0] for r in cells[1:]] == [r[0] for r in exported[1:]]

    # a filter on an enumeration (protocol), then sorting by the device column, both ways
    page.fill("#dev-table .table-search", "")
    page.select_option("#dev-table select.table-filter[title='Protocol']", "modbus-tcp")
    protocols = {row[2] for row in _rows(page)}
    assert protocols == {"modbus-tcp"}
    page.click("#dev-table th[data-column='0']")
    ascending = [row[0] for row in _rows(page)]
    assert ascending == sorted(ascending, key=str.lower) or ascending == sorted(ascending)
    page.click("#dev-table th[data-column='0']")
    descending = [row[0] for row in _rows(page)]
    assert descending[0] >= descending[-1] and descending != ascending
    assert page.get_attribute("#dev-table th[data-column='0']", "data-sorted") == "desc"

    # the page re-rendered (as after a command): search, filter and sort are kept
    page.evaluate("document.body.dataset.ready = ''")
    page.click('#nav button[data-page="devices"]')
    page.wait_for_function("document.body.dataset.ready === 'devices'")
    assert [row[0] for row in _rows(page)] == descending
    assert errors == []
    context.close()


def test_the_xlsx_export_in_chinese_holds_the_rows_shown_with_numbers_as_numbers(server, browser):  # noqa: F811
    base, _store = server
    context, page, errors = logged_in(browser, base, "devices", "zh")
    page.fill("#dev-table .table-search", "EM-U0")
    rows = _rows(page)
    assert rows
    with page.expect_download() as download:
        page.click("#dev-table .table-xlsx")
    assert download.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(download.value.path().read_bytes())).active
    cells = [[c.value for c in r] for r in sheet.iter_rows()]
    assert cells[0][0] == "设备" and cells[0][1] == "类型"  # the labels in the user's language
    assert [r[0] for r in cells[1:]] == [row[0] for row in rows]
    kinds = {r[1] for r in cells[1:]}
    assert kinds and not any("_" in k for k in kinds)  # 电能表, not energy_meter
    offsets = [r[6] for r in cells[1:]]  # the clock offset (s): numbers, to the digits shown
    assert all(isinstance(v, (int, float)) for v in offsets), offsets
    assert [f"{v:.2f}" for v in offsets] == [row[6] for row in rows]
    assert errors == []
    context.close()

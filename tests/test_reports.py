"""Carbon reports on SQLite and PostgreSQL, from a store filled by the simulator: the numbers of the
XLSX (read back with openpyxl), the PDF (text extracted with pypdf) and the CSV equal the API's views;
the data version identifies the stored results; an empty period says so; bad requests are 4xx naming
the field; region scope; the schedule; the CLI."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import openpyxl
import pypdf
import pytest
from fastapi.testclient import TestClient
from services import postgres_database  # noqa: F401
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from webdata import PASSWORD, START, USER, populate

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.maintenance import MaintenanceScheduler
from carbonflow.center.reports.build import build_report
from carbonflow.center.reports.service import parse_schedule, run_scheduled
from carbonflow.center.store import create_user, data_version, interval_header, list_reports
from carbonflow.center.store.schema import Interval

HOURS = 6
DAY = "2025-06-02"  # Asia/Shanghai; START is its midnight
RANGE = {"start": "2025-06-01T16:00:00Z", "end": "2025-06-02T16:00:00Z"}


def _pg_schema_url(database: str) -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return (
        make_url(database)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def center(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'center.db'}"
    else:
        url = _pg_schema_url(request.getfixturevalue("postgres_database"))
    store, _last = populate(url, hours=HOURS)
    create_user(store, "ana", PASSWORD, "analyst")
    create_user(store, "wh", PASSWORD, "analyst", region="AH/WH")
    create_user(store, "vic", PASSWORD, "viewer")
    settings = CenterSettings(
        database_url=url, report_dir=str(folder / "files"), maintenance_period_s=0, disclosure_consent=["U01"]
    )
    app = create_app(settings, store=store)
    with TestClient(app) as anonymous:
        tokens = {
            name: anonymous.post("/api/v1/login", json={"name": name, "password": PASSWORD}).json()["token"]
            for name in ("ana", "wh", "vic", USER)
        }
        yield app, store, tokens, folder
    store.close()


def _client(center, name: str) -> TestClient:
    app, _store, tokens, _folder = center
    return TestClient(app, headers={"Authorization": f"Bearer {tokens[name]}"})


def _make(center, name="ana", **body) -> tuple[dict, bytes]:
    client = _client(center, name)
    answer = client.post("/api/v1/reports", json={"period": "day", "start": DAY, **body})
    assert answer.status_code == 201, answer.text
    row = answer.json()
    download = client.get(row["download"])
    assert download.status_code == 200, download.text
    return row, download.content


def _xlsx_table(book, sheet: str, title: str) -> dict:
    """Rows of the table titled ``title`` on ``sheet``: first cell → the row's values."""
    rows = list(book[sheet].iter_rows(values_only=True))
    at = next(i for i, row in enumerate(rows) if row[0] == title)
    width = sum(cell is not None for cell in rows[at + 1])
    out = {}
    for row in rows[at + 2 :]:
        if row[0] is None:
            break
        out[row[0]] = row[:width]
    return out


def test_xlsx_numbers_equal_the_api(center):
    row, data = _make(center, format="xlsx")
    assert row["intervals"] == HOURS * 4 and not row["empty"] and len(row["data_version"]) == 64
    book = openpyxl.load_workbook(io.BytesIO(data))
    api = _client(center, "ana")
    generation = api.get("/api/v1/generation", params=RANGE).json()
    plants = _xlsx_table(book, "Generation side", "Carbon by plant")
    assert {p["plant"] for p in generation["plants"]} == set(plants)
    for plant in generation["plants"]:
        _, energy_mwh, carbon_t, intensity = plants[plant["plant"]]
        assert energy_mwh == pytest.approx(plant["range_energy_kwh"] / 1000.0, abs=1e-3)
        assert carbon_t == pytest.approx(plant["range_carbon_t"], abs=1e-3)
        if plant["range_intensity_g_per_kwh"] is not None:
            assert intensity == pytest.approx(plant["range_intensity_g_per_kwh"], abs=1e-3)
    consumption = api.get("/api/v1/consumption", params={**RANGE, "region_depth": 3}).json()
    regions = _xlsx_table(book, "Consumption side", "Carbon by region")
    industries = _xlsx_table(book, "Consumption side", "Carbon by industry")
    for table, api_rows in ((regions, consumption["by_region"]), (industries, consumption["by_industry"])):
        assert set(table) == {r["key"] for r in api_rows}
        for item in api_rows:
            assert table[item["key"]][2] == pytest.approx(item["carbon_t"], abs=1e-3)
            assert table[item["key"]][3] == pytest.approx(item["intensity_g_per_kwh"], abs=1e-3)
    grid = api.get("/api/v1/grid", params=RANGE).json()
    voltages = _xlsx_table(book, "Grid side (losses)", "Loss carbon by voltage level (kV)")
    for item in grid["loss_by_voltage"]:
        assert voltages[item["voltage_kv"]][2] == pytest.approx(item["loss_carbon_t"], abs=1e-3)
        assert voltages[item["voltage_kv"]][1] == pytest.approx(item["loss_energy_kwh"] / 1000.0, abs=1e-3)
    summary = dict(list(book["Summary"].iter_rows(values_only=True))[1:])
    assert summary["data version"] == row["data_version"]
    total_carbon = sum(r["carbon_t"] for r in consumption["by_region"])
    assert summary["consumption carbon (t)"] == pytest.approx(total_carbon, abs=1e-3)
    assert book["Generation side"]._charts  # a chart where it helps


def test_pdf_and_csv_carry_the_same_numbers(center):
    _, pdf = _make(center, format="pdf")
    _, csv_data = _make(center, format="csv")
    text_of_pdf = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    lines = list(csv.reader(io.StringIO(csv_data.decode("utf-8"))))
    summary = {line[0]: line[1] for line in lines[1:16] if len(line) == 2}
    consumption = (
        _client(center, "ana").get("/api/v1/consumption", params={**RANGE, "region_depth": 3}).json()
    )
    total = sum(r["carbon_t"] for r in consumption["by_region"])
    assert float(summary["consumption carbon (t)"]) == pytest.approx(total, abs=1e-3)
    assert f"{float(summary['consumption carbon (t)']):.3f}" in text_of_pdf
    for item in consumption["by_region"]:
        assert f"{item['carbon_t']:.3f}" in text_of_pdf  # each region's carbon, as the API has it
    assert summary["data version"] in text_of_pdf
    for title in ("Generation side", "Grid side (losses)", "Consumption side"):
        assert title in text_of_pdf


def test_data_version_follows_the_stored_results(center):
    _app, store, _tokens, _folder = center
    first = datetime(2025, 6, 1, 16, tzinfo=UTC)
    last = first + timedelta(days=1)
    version, count = data_version(store, first, last)
    assert count == HOURS * 4
    assert build_report(store, "day", DAY).data_version == version  # rebuilt: the same version
    ts = START + timedelta(minutes=15)
    original = interval_header(store, ts)["hash"]
    remetered = update(Interval).where(Interval.ts == ts)
    with store.write() as connection:  # the interval metered again: another result hash
        connection.execute(remetered.values(hash="0" * 64))
    try:
        assert data_version(store, first, last)[0] != version
    finally:
        with store.write() as connection:
            connection.execute(remetered.values(hash=original))
    assert data_version(store, first, last)[0] == version


def test_empty_period_gives_an_empty_report_that_says_so(center):
    for format in ("csv", "xlsx", "pdf"):
        row, data = _make(center, format=format, period="month", start="2019-01")
        assert row["empty"] and row["intervals"] == 0
        if format == "csv":
            assert "No metered data in this period" in data.decode()
        elif format == "pdf":
            assert "No metered data" in pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
        else:
            cells = [
                c
                for r in openpyxl.load_workbook(io.BytesIO(data))["Summary"].iter_rows(values_only=True)
                for c in r
            ]
            assert any(isinstance(c, str) and c.startswith("No metered data") for c in cells)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period": "week"}, "period"),
        ({"start": "2025-6"}, "start"),
        ({"period": "month", "start": "2025-13"}, "start"),
        ({"format": "docx"}, "format"),
        ({"plant": "P01", "user": "U01"}, "at most one"),
        ({"plant": "NOPE"}, "plant"),
        ({"user": "NOPE"}, "user"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_report_requests_name_the_field(center, body, field):
    answer = _client(center, "ana").post("/api/v1/reports", json={"period": "day", "start": DAY, **body})
    assert 400 <= answer.status_code < 500
    assert field in answer.json()["error"]


def test_region_scope_and_permissions(center):
    whole, _ = _make(center, "ana", format="csv")
    row, data = _make(center, "wh", format="csv")
    assert row["scope_kind"] == "region" and row["region"] == "AH/WH"
    assert "AH/HF" not in data.decode()  # the consumption and loss tables hold the region only
    scoped = _client(center, "wh")
    assert whole["id"] not in {r["id"] for r in scoped.get("/api/v1/reports").json()["items"]}
    assert scoped.get(whole["download"]).status_code == 404  # outside the region: as if absent
    assert (
        scoped.post("/api/v1/reports?region=AH/HF", json={"period": "day", "start": DAY}).status_code == 403
    )
    assert (
        _client(center, "vic").post("/api/v1/reports", json={"period": "day", "start": DAY}).status_code
        == 403
    )
    assert TestClient(center[0]).get("/api/v1/reports").status_code == 401


def test_scheduled_reports_are_built_once_per_ended_period(center):
    _app, store, _tokens, folder = center
    schedule = parse_schedule(["day:csv", "month:xlsx"])
    made = run_scheduled(store, folder / "scheduled", schedule, time_zone="Asia/Shanghai")
    assert {(r["period"], r["start"]) for r in made} == {("day", "2025-06-01"), ("month", "2025-05")}
    scheduler = MaintenanceScheduler(
        store,
        meter_check_every_s=None,
        reports=lambda: run_scheduled(store, folder / "scheduled", schedule, time_zone="Asia/Shanghai"),
    )
    assert scheduler.tick().reports == 0  # already made
    assert sum(r["scheduled"] for r in list_reports(store)) >= 2
    with pytest.raises(ValueError, match="week:csv"):
        parse_schedule(["week:csv"])


def test_cli_report(center, tmp_path, capsys, monkeypatch):
    from carbonflow.cli import main

    monkeypatch.setenv("CARBONFLOW_REPORT_DIR", str(tmp_path / "files"))  # not ./carbonflow-reports
    app = center[0]
    url = app.state.settings.database_url
    out = tmp_path / "day.pdf"
    assert main(["report", "--period", "day", "--start", DAY, "--out", str(out), "--database", url]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert "24 intervals" in capsys.readouterr().out
    assert len(list((tmp_path / "files").iterdir())) == 1  # recorded, with its file
    code = main(["report", "--period", "day", "--start", "2025-6-2", "--out", str(out), "--database", url])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--start" in err[0]

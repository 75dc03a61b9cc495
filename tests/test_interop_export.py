"""Carbon data out (docs/interop.md), on SQLite and PostgreSQL from a store filled by the simulator: the
enterprise export equals the consumption view to the last digit, its origin by fuel adds up to the
energy, market-based emissions follow the instruments and the residual mix; the quota totals add up
across groupings and carry each month's data version; XLSX (openpyxl), Parquet (pyarrow) and CSV carry
the JSON's numbers; region scope and roles; bad input named; the CLI."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import openpyxl
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from services import postgres_database  # noqa: F401
from test_reports import _pg_schema_url
from webdata import PASSWORD, populate

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.reports.contracts import ContractsError, load_contracts
from carbonflow.center.reports.enterprise import market_based
from carbonflow.center.store import create_user, data_version, load_directory

MONTH = "2025-06"
MONTH_RANGE = {"start": "2025-05-31T16:00:00Z", "end": "2025-06-30T16:00:00Z"}  # Asia/Shanghai June
CONTRACTS = """
residual_mix_g_per_kwh = "700"

[[instrument]]
id = "GEC-U01-1"
user = "U01"
kind = "certificate"
month = "2025-06"
energy_kwh = "1000"
intensity_g_per_kwh = "0"
source = "wind"

[[instrument]]
id = "PPA-U02"
user = "U02"
kind = "ppa"
month = "2025-06"
energy_kwh = "900000000"
intensity_g_per_kwh = "12.5"

[[instrument]]
id = "GEC-U01-JULY"
user = "U01"
kind = "certificate"
month = "2025-07"
energy_kwh = "5000"
intensity_g_per_kwh = "0"
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def center(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("interop")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'center.db'}"
    else:
        url = _pg_schema_url(request.getfixturevalue("postgres_database"))
    store, _last = populate(url, hours=3)
    create_user(store, "ana", PASSWORD, "analyst")
    create_user(store, "wh", PASSWORD, "analyst", region="AH/WH")
    create_user(store, "vic", PASSWORD, "viewer")
    contracts = folder / "contracts.toml"
    contracts.write_text(CONTRACTS, encoding="utf-8")
    settings = CenterSettings(database_url=url, maintenance_period_s=0, green_contracts_file=str(contracts))
    app = create_app(settings, store=store)
    with TestClient(app) as anonymous:
        tokens = {
            name: anonymous.post("/api/v1/login", json={"name": name, "password": PASSWORD}).json()["token"]
            for name in ("ana", "wh", "vic")
        }
        yield app, store, tokens, folder
    store.close()


def _client(center, name: str = "ana") -> TestClient:
    app, _store, tokens, _folder = center
    return TestClient(app, headers={"Authorization": f"Bearer {tokens[name]}"})


def _enterprise(center, name: str = "ana", **params):
    return _client(center, name).get(
        "/api/v1/exports/enterprise", params={"period": "month", "start": MONTH, **params}
    )


def test_enterprise_equals_the_consumption_view_to_the_last_digit(center):
    answer = _enterprise(center)
    assert answer.status_code == 200, answer.text
    export = answer.json()
    _app, store, _tokens, _folder = center
    assert (
        export["intervals"] == 12
        and export["data_version"]
        == data_version(
            store, datetime.fromisoformat(export["from_utc"]), datetime.fromisoformat(export["to_utc"])
        )[0]
    )
    view = _client(center).get("/api/v1/consumption", params=MONTH_RANGE).json()
    users = {u["id"]: u for u in view["users"]}
    assert {u["user_id"] for u in export["items"]} == set(users) == {u["id"] for u in load_directory(store)}
    for row in export["items"]:
        user = users[row["user_id"]]
        assert row["energy_kwh"] == user["range_energy_kwh"]  # the same sums, not approximately
        assert row["location_carbon_t"] == user["range_carbon_t"]
        assert row["location_intensity_g_per_kwh"] == user["range_intensity_g_per_kwh"]
        assert (row["region"], row["industry"]) == (user["region"], user["industry"])


def test_origin_by_fuel_adds_up_to_the_energy_and_carbon(center):
    rows = _enterprise(center).json()["items"]
    fuels = set()
    for row in rows:
        fuels |= set(row["origin_energy_kwh"])
        assert sum(row["origin_energy_kwh"].values()) == pytest.approx(row["energy_kwh"], rel=1e-9)
        assert sum(row["origin_carbon_t"].values()) == pytest.approx(row["location_carbon_t"], rel=1e-9)
    assert {"coal", "wind"} <= fuels  # the reference grid's mix reaches the users


def test_market_based_follows_instruments_and_residual_mix(center):
    rows = {r["user_id"]: r for r in _enterprise(center).json()["items"]}
    u01, u02, u03 = rows["U01"], rows["U02"], rows["U03"]
    assert u01["instrument_ids"] == ["GEC-U01-1"]  # July's certificate is not claimed in June
    assert u01["instrument_energy_kwh"] == 1000.0 and u01["residual_basis"] == "residual_mix"
    expected = (u01["energy_kwh"] - 1000.0) * 700.0 / 1e6
    assert u01["market_carbon_t"] == pytest.approx(expected, rel=1e-12)
    assert u02["instrument_energy_kwh"] == pytest.approx(u02["energy_kwh"], rel=1e-12)  # capped
    assert u02["unclaimed_instrument_energy_kwh"] == pytest.approx(9e8 - u02["energy_kwh"], rel=1e-12)
    assert u02["market_intensity_g_per_kwh"] == pytest.approx(12.5, rel=1e-12)
    assert u03["instrument_ids"] == [] and u03["market_intensity_g_per_kwh"] == pytest.approx(700.0)
    day = _enterprise(center, period="day", start="2025-06-02").json()["items"]
    assert all(r["market_carbon_t"] is None and "month" in r["market_note"] for r in day)


def test_market_based_without_residual_mix_falls_back_to_location_based():
    result = market_based(2000.0, 1200.0, [], None)  # 600 g/kWh location-based
    assert result["residual_basis"] == "location_based_fallback"
    assert result["market_carbon_t"] == pytest.approx(1.2)


def test_files_carry_the_json_numbers(center):
    items = {r["user_id"]: r for r in _enterprise(center).json()["items"]}
    book = openpyxl.load_workbook(io.BytesIO(_enterprise(center, format="xlsx").content))
    rows = list(book["users"].iter_rows(values_only=True))
    header = rows[0]
    about = dict(book["about"].iter_rows(values_only=True))
    assert len(about["data_version"]) == 64
    for values in rows[1:]:
        row = dict(zip(header, values, strict=True))
        item = items[row["user_id"]]
        exact = pytest.approx(item["energy_kwh"], rel=1e-15)  # openpyxl writes 16 significant digits
        assert row["energy_kwh"] == exact
        assert row["location_carbon_t"] == pytest.approx(item["location_carbon_t"], rel=1e-15)
        assert row["energy_kwh_coal"] == pytest.approx(item["origin_energy_kwh"].get("coal", 0.0), rel=1e-15)
        assert row["data_version"] == about["data_version"]
    table = pq.read_table(io.BytesIO(_enterprise(center, format="parquet").content))
    assert table.schema.metadata[b"data_version"].decode() == about["data_version"]
    for row in table.to_pylist():
        assert row["market_carbon_t"] == items[row["user_id"]]["market_carbon_t"]
    text = _enterprise(center, format="csv").content.decode("utf-8")
    assert text.startswith("# document: carbonflow enterprise")
    data = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert {r["user_id"] for r in data} == set(items)
    assert float(data[0]["energy_kwh"]) == items[data[0]["user_id"]]["energy_kwh"]  # repr: exact


def test_quota_totals_add_up_and_match_the_view(center):
    answer = _client(center).get("/api/v1/exports/quota", params={"period": "year", "start": "2025"})
    assert answer.status_code == 200, answer.text
    export = answer.json()
    rows = export["items"]
    assert [r["period"] for r in rows][-1] == "2025" and {r["period"] for r in rows} == {"2025-06", "2025"}
    _app, store, _tokens, _folder = center
    june = [r for r in rows if r["period"] == "2025-06"]
    first, last = datetime.fromisoformat(MONTH_RANGE["start"]), datetime.fromisoformat(MONTH_RANGE["end"])
    assert {r["data_version"] for r in june} == {data_version(store, first, last)[0]}
    for period in ("2025-06", "2025"):
        part = [r for r in rows if r["period"] == period]
        totals = {
            g: sum(r["carbon_t"] for r in part if r["grouping"] == g)
            for g in ("region_industry", "region", "industry")
        }
        assert totals["region"] == pytest.approx(totals["region_industry"], rel=1e-12)
        assert totals["industry"] == pytest.approx(totals["region_industry"], rel=1e-12)
        assert sum(r["users"] for r in part if r["grouping"] == "region") == len(load_directory(store))
    view = _client(center).get("/api/v1/consumption", params={**MONTH_RANGE, "region_depth": 2}).json()
    by_region = {r["region"]: r for r in june if r["grouping"] == "region"}
    for item in view["by_region"]:
        assert by_region[item["key"]]["carbon_t"] == pytest.approx(item["carbon_t"], rel=1e-12)
        assert by_region[item["key"]]["intensity_g_per_kwh"] == pytest.approx(
            item["intensity_g_per_kwh"], rel=1e-12
        )
    table = pq.read_table(
        io.BytesIO(
            _client(center)
            .get("/api/v1/exports/quota", params={"period": "year", "start": "2025", "format": "parquet"})
            .content
        )
    )
    assert table.num_rows == len(rows)
    assert table.column_names[:4] == ["period", "grouping", "region", "industry"]


def test_region_scope_and_roles(center):
    _app, store, _tokens, _folder = center
    inside = {u["id"] for u in load_directory(store) if u["region"].startswith("AH/WH")}
    scoped = _enterprise(center, "wh")
    assert scoped.status_code == 200 and {r["user_id"] for r in scoped.json()["items"]} == inside
    assert _enterprise(center, "wh", region="AH/HF").status_code == 403
    outside = next(u["id"] for u in load_directory(store) if u["id"] not in inside)
    assert _enterprise(center, "wh", user=outside).status_code == 400  # not probed, not shown
    assert _enterprise(center, "vic").status_code == 403  # exports are analysts' (report) work
    quota = _client(center, "wh").get("/api/v1/exports/quota", params={"period": "month", "start": MONTH})
    assert {r["region"] for r in quota.json()["items"]} - {"*"} == {"AH/WH"}
    assert TestClient(center[0]).get("/api/v1/exports/quota", params={"start": "2025"}).status_code == 401


def test_bad_requests_name_the_field(center):
    answer = _enterprise(center, start="2025-6")
    assert answer.status_code == 400 and "start" in answer.json()["error"]
    answer = _client(center).get("/api/v1/exports/quota", params={"period": "day", "start": "2025-06-02"})
    assert answer.status_code in (400, 422) and "period" in answer.text
    assert _enterprise(center, user="NOPE").status_code == 400
    empty = _enterprise(center, start="2024-01").json()
    assert empty["intervals"] == 0 and all(r["energy_kwh"] == 0.0 for r in empty["items"])


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '[[instrument]]\nid = "A"\nuser = "U01"\nkind = "ppa"\nmonth = "2025-06"\n'
            'energy_kwh = 1.5\nintensity_g_per_kwh = "0"\n',
            "instrument 'A'.energy_kwh",
        ),
        (
            '[[instrument]]\nid = "B"\nuser = "U01"\nkind = "rec"\nmonth = "2025-06"\n'
            'energy_kwh = "1"\nintensity_g_per_kwh = "0"\n',
            "instrument 'B'.kind",
        ),
        (
            '[[instrument]]\nid = "C"\nuser = "U01"\nkind = "ppa"\nmonth = "2025-13"\n'
            'energy_kwh = "1"\nintensity_g_per_kwh = "0"\n',
            "instrument 'C'.month",
        ),
        (
            '[[instrument]]\nid = "D"\nuser = "U99"\nkind = "ppa"\nmonth = "2025-06"\n'
            'energy_kwh = "1"\nintensity_g_per_kwh = "0"\n',
            "instrument 'D': user",
        ),
        ("residual_mix_g_per_kwh = [\n", "not TOML"),
    ],
)
def test_bad_contracts_file_named(tmp_path, text, named):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ContractsError) as caught:
        load_contracts(str(path), {"U01"})
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_cli_export(center, tmp_path, capsys):
    from carbonflow.cli import main

    url = center[0].state.settings.database_url
    out = tmp_path / "q.parquet"
    argv = ["export", "quota", "--period", "year", "--start", "2025", "--database", url]
    assert main([*argv, "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows > 0 and "12 intervals" in capsys.readouterr().out
    out = tmp_path / "u.xlsx"
    argv = ["export", "enterprise", "--period", "month", "--start", MONTH, "--database", url]
    argv += ["--out", str(out)]
    assert main([*argv, "--user", "U01"]) == 0
    assert len(list(openpyxl.load_workbook(out)["users"].iter_rows())) == 2
    assert main([*argv, "--user", "NOPE"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--user" in err[0] and "NOPE" in err[0]


def test_a_table_as_the_page_showed_it_comes_back_as_xlsx_with_numbers_shown_as_they_were(center):
    table = {
        "name": "devices",
        "columns": ["设备", "有功 (MW)", "时间"],
        "rows": [
            ["EM-U01", "20.3958", "2026-12-06 15:00"],
            ["EM-U02", "-0.00310", None],
            ["EM-U03", "12345678901234567.5", "—"],  # more digits than Excel keeps: stays text
            ["EM-U04", "1,234.5", "x"],  # grouped digits as shown: text
        ],
    }
    answer = _client(center, "vic").post("/api/v1/exports/table", json=table)  # a viewer may: no data read
    assert answer.status_code == 200, answer.text
    assert 'filename="devices.xlsx"' in answer.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content)).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == table["columns"]
    assert rows[1][:2] == ["EM-U01", 20.3958] and sheet["B2"].number_format == "0.0000"
    assert rows[2][1] == -0.0031 and sheet["B3"].number_format == "0.00000"  # shown as -0.00310
    assert rows[3][1] == "12345678901234567.5" and rows[4][1] == "1,234.5" and rows[2][2] in ("", None)
    ragged = {**table, "rows": [["a", "1", "x"], ["b", "2"]]}
    viewer = _client(center, "vic")
    refused = viewer.post("/api/v1/exports/table", json=ragged)
    assert refused.status_code == 400
    assert refused.json()["error"] == "bad table: row 2 has 2 cells for 3 columns"
    assert viewer.post("/api/v1/exports/table", json={**table, "name": "../x"}).status_code == 422

"""Multi-dimensional analysis (``GET /api/v1/analysis``) on SQLite and PostgreSQL, from a store filled by
the simulator in three periods (June 2025, May 2025, June 2024): every group energy-weighted and adding
up to the total; the consumption side by region equals the public disclosure's figures (computed another
way, from the users); month-on-month and year-on-year equal the earlier periods analysed on their own;
rankings, groups side by side, the generation side by fuel and plant; region scope; bad input named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from services import postgres_database  # noqa: F401
from test_reports import _pg_schema_url
from webdata import PASSWORD, populate, save_simulated

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import create_user
from carbonflow.sim.reference_grid import reference_grid

JUNE, MAY, JUNE_BEFORE = "2025-06", "2025-05", "2024-06"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('analysis') / 'center.db'}"
    else:
        url = _pg_schema_url(request.getfixturevalue("postgres_database"))
    store, _last = populate(url, hours=1)  # 2025-06-02, local
    net = reference_grid()
    save_simulated(store, net, datetime(2025, 5, 10, 4, 0, tzinfo=UTC), 1)
    save_simulated(store, net, datetime(2024, 6, 20, 10, 0, tzinfo=UTC), 1)
    create_user(store, "ana", PASSWORD, "analyst")
    create_user(store, "wh", PASSWORD, "viewer", region="AH/WH")
    app = create_app(CenterSettings(database_url=url, maintenance_period_s=0), store=store)
    with TestClient(app) as anonymous:
        tokens = {
            name: anonymous.post("/api/v1/login", json={"name": name, "password": PASSWORD}).json()["token"]
            for name in ("ana", "wh")
        }
        yield {name: TestClient(app, headers={"Authorization": f"Bearer {t}"}) for name, t in tokens.items()}
    store.close()


def _get(client, who: str = "ana", **params) -> dict:
    answer = client[who].get("/api/v1/analysis", params={"period": "month", "start": JUNE, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _weighted(figures: dict) -> None:
    assert figures["intensity_g_per_kwh"] == pytest.approx(figures["carbon_t"] * 1e6 / figures["energy_kwh"])


def test_groups_are_energy_weighted_add_up_and_equal_the_public_disclosure(client):
    found = _get(client, dimension="region", region_depth=2)
    items, total = found["items"], found["total"]
    assert {item["key"] for item in items} == {"AH/HF", "AH/WH"}
    for item in [*items, total]:
        _weighted(item)
    assert sum(i["carbon_t"] for i in items) == pytest.approx(total["carbon_t"], rel=1e-12)
    assert sum(i["energy_kwh"] for i in items) == pytest.approx(total["energy_kwh"], rel=1e-12)
    assert sum(i["share_of_carbon"] for i in items) == pytest.approx(1.0)
    assert [i["rank"] for i in items] == [1, 2] and items[0]["carbon_t"] >= items[1]["carbon_t"]
    public = client["ana"].get("/api/v1/public/regions", params={"period": "month", "start": JUNE}).json()
    by_region = {r["region"]: r for r in public["items"] if not r["suppressed"]}
    assert set(by_region) >= {"AH/HF", "AH/WH"}
    for item in items:
        assert item["carbon_t"] == pytest.approx(by_region[item["key"]]["carbon_t"], abs=5e-4)
        assert item["energy_kwh"] / 1000 == pytest.approx(by_region[item["key"]]["energy_mwh"], abs=5e-4)
    # a mean of the users' intensities is not the region's intensity: the analysis does not take it
    users = _get(client, dimension="user")["items"]
    mean = sum(u["intensity_g_per_kwh"] for u in users) / len(users)
    assert abs(mean - total["intensity_g_per_kwh"]) > 1e-6


def test_month_on_month_and_year_on_year_are_the_earlier_periods_on_their_own(client):
    june = _get(client, dimension="industry")
    may = {i["key"]: i for i in _get(client, dimension="industry", start=MAY)["items"]}
    year_ago = {i["key"]: i for i in _get(client, dimension="industry", start=JUNE_BEFORE)["items"]}
    assert (june["previous_start"], june["year_ago_start"]) == (MAY, JUNE_BEFORE)
    for item in june["items"]:
        for name, other, prefix in (("previous", may, "mom"), ("year_ago", year_ago, "yoy")):
            before = other[item["key"]]
            assert item[name]["carbon_t"] == pytest.approx(before["carbon_t"], rel=1e-12)
            intensity = before["intensity_g_per_kwh"]
            assert item[name]["intensity_g_per_kwh"] == pytest.approx(intensity, rel=1e-12)
            if before["carbon_t"]:
                change = (item["carbon_t"] - before["carbon_t"]) / before["carbon_t"] * 100
                assert item[f"{prefix}_carbon_pct"] == pytest.approx(change)
            else:  # nothing before: no percentage, rather than infinity
                assert item[f"{prefix}_carbon_pct"] is None
    empty = _get(client, dimension="industry", start=MAY)["items"][0]
    assert empty["previous"] is None and empty["mom_carbon_pct"] is None  # April has no data: no change


def test_rankings_side_by_side_and_the_generation_side(client):
    users = _get(client, dimension="user", order="intensity", top=3)["items"]
    assert len(users) == 3 and users[0]["intensity_g_per_kwh"] >= users[2]["intensity_g_per_kwh"]
    pair = _get(client, dimension="user", keys="U02,U01")["items"]
    assert [u["key"] for u in pair] == ["U02", "U01"]
    fuels = _get(client, dimension="fuel")
    assert fuels["side"] == "generation" and {"coal", "wind"} <= {i["key"] for i in fuels["items"]}
    plants = _get(client, dimension="plant")
    assert plants["total"]["carbon_t"] == pytest.approx(fuels["total"]["carbon_t"], rel=1e-12)
    by_region = _get(client, dimension="region", side="generation", region_depth=1)["items"]
    assert [i["key"] for i in by_region] == ["AH"]
    assert by_region[0]["carbon_t"] == pytest.approx(fuels["total"]["carbon_t"], rel=1e-12)


def test_a_regional_user_analyses_inside_their_region_only(client):
    inside = _get(client, "wh", dimension="region", region_depth=3)["items"]
    assert inside and all(i["key"].startswith("AH/WH/") for i in inside)
    outside = client["wh"].get("/api/v1/analysis", params={"region": "AH/HF"})
    assert outside.status_code == 403, outside.text


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"dimension": "industry", "side": "generation"}, "side"),
        ({"period": "month", "start": "2025-13"}, "start"),
        ({"dimension": "user", "keys": "U01,NOPE"}, "NOPE"),
        ({"period": "day", "start": "2025-06"}, "start"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client, params, named):
    answer = client["ana"].get("/api/v1/analysis", params={"period": "month", "start": JUNE, **params})
    assert answer.status_code == 400 and named in answer.text, answer.text
    assert answer.json()["error"], answer.text

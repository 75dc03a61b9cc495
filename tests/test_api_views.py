"""The center's user API (C3) on a store filled from the simulator: every endpoint answers, bad parameters
give 4xx JSON errors, and nothing but ingest, collector endpoints, /healthz and the page itself answers
without a login."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from webdata import COLLECTOR, PASSWORD, START, USER, populate

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import aggregate, create_user, interval_results, list_commands

HOURS = 6


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "center.db"
    store, last = populate(f"sqlite:///{path}", hours=HOURS)
    app = create_app(CenterSettings(database_url=f"sqlite:///{path}", live_poll_s=0.05), store=store)
    with TestClient(app) as anonymous:
        token = anonymous.post("/api/v1/login", json={"name": USER, "password": PASSWORD}).json()["token"]
        yield app, store, last, token
    store.close()


@pytest.fixture
def client(center):
    app, _store, _last, token = center
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def anonymous(center):
    with TestClient(center[0]) as client:
        yield client


GET_ENDPOINTS = [
    "/api/v1/me",
    "/api/v1/topology",
    "/api/v1/buses",
    "/api/v1/buses/U01",
    "/api/v1/branches",
    "/api/v1/generators",
    "/api/v1/loads",
    "/api/v1/intervals",
    "/api/v1/results",
    "/api/v1/results/bus",
    "/api/v1/series?kind=bus&element=S001",
    "/api/v1/origin",
    "/api/v1/history",
    "/api/v1/overview",
    "/api/v1/generation",
    "/api/v1/grid",
    "/api/v1/consumption",
    "/api/v1/devices",
    "/api/v1/devices/RTU-S001",
    "/api/v1/commands",
    "/api/v1/points",
    "/api/v1/readings?point=RTU-S001/1",
]


def _is_json_error(response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize("path", GET_ENDPOINTS)
def test_every_user_endpoint_answers_a_logged_in_user(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.json()


@pytest.mark.parametrize("path", GET_ENDPOINTS)
def test_every_user_endpoint_requires_a_login(anonymous, path):
    _is_json_error(anonymous.get(path), 401)


def test_open_endpoints_and_the_page_need_no_login(anonymous):
    assert anonymous.get("/healthz").json()["status"] == "ok"
    page = anonymous.get("/")
    assert page.status_code == 200 and "echarts.min.js" in page.text
    assert anonymous.get("/static/vendor/echarts.min.js").status_code == 200
    _is_json_error(anonymous.get(f"/api/v1/collectors/{COLLECTOR}/commands"), 401)  # HMAC, not a session


def test_login_sets_an_httponly_cookie_that_the_ui_uses(anonymous):
    response = anonymous.post("/api/v1/login", json={"name": USER, "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "carbonflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert anonymous.get("/api/v1/me").json()["user"] == USER  # the cookie alone authenticates
    _is_json_error(anonymous.post("/api/v1/logout"), 403)  # a cookie write needs the center's own Origin
    assert anonymous.post("/api/v1/logout", headers={"Origin": "http://testserver"}).status_code == 200
    _is_json_error(anonymous.get("/api/v1/me"), 401)


def test_wrong_password_unknown_user_and_bad_token_are_refused(anonymous, center):
    _is_json_error(anonymous.post("/api/v1/login", json={"name": USER, "password": "nope"}), 401)
    _is_json_error(anonymous.post("/api/v1/login", json={"name": "ghost", "password": "x"}), 401)
    _is_json_error(anonymous.post("/api/v1/login", json={"name": USER}), 422)
    _is_json_error(anonymous.get("/api/v1/results", headers={"Authorization": "Bearer forged"}), 401)


def test_passwords_and_tokens_are_stored_only_hashed(center):
    _app, store, _last, token = center
    create_user(store, "auditor", "s3cret-pass", "viewer")
    with store.read() as connection:
        users = connection.exec_driver_sql("SELECT name, password_hash FROM users").all()
        sessions = connection.exec_driver_sql("SELECT token_hash FROM user_sessions").all()
    assert all(h.startswith("scrypt$16384$8$1$") and "s3cret" not in h for _n, h in users)
    assert token not in {row[0] for row in sessions}
    with pytest.raises(ValueError):
        create_user(store, "x", "pw", "emperor")


def test_topology_has_the_104_buses_with_layout_and_classification(client):
    topo = client.get("/api/v1/topology").json()
    assert len(topo["buses"]) == 104
    kinds = [b["kind"] for b in topo["buses"]]
    assert (kinds.count("plant"), kinds.count("substation"), kinds.count("user")) == (10, 80, 14)
    assert all(b["x_km"] is not None and b["y_km"] is not None and b["region"] for b in topo["buses"])
    users = client.get("/api/v1/buses?kind=user&region=AH/HF").json()
    assert users["total"] > 0 and all(b["region"].startswith("AH/HF") for b in users["items"])


def test_pagination_and_csv(client):
    page = client.get("/api/v1/buses?limit=10&offset=100").json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (104, 10, 100, 4)
    response = client.get("/api/v1/buses?format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 104 and {"id", "kind", "region", "x_km"} <= set(rows[0])
    history = client.get("/api/v1/history?kind=load&group_by=industry&bucket=hour&format=csv")
    assert history.text.splitlines()[0].startswith("bucket,key,energy_kwh,carbon_kg,intensity_g_per_kwh")


def test_latest_and_by_ts_results_match_the_stored_interval(client, center):
    _app, store, last, _token = center
    latest = client.get("/api/v1/results").json()
    assert latest["ts"] == last.isoformat().replace("+00:00", "Z")
    assert len(latest["buses"]) == 104 and latest["branches"] and latest["generators"] and latest["loads"]
    earlier = (last - timedelta(hours=1)).isoformat()
    one = client.get("/api/v1/results/bus", params={"ts": earlier, "element": "U01"}).json()["items"][0]
    stored = interval_results(store, "bus", last - timedelta(hours=1, minutes=1), last - timedelta(hours=1))
    assert (
        one["intensity_g_per_kwh"]
        == next(r for r in stored if r["element_id"] == "U01")["intensity_g_per_kwh"]
    )
    totals = latest["totals"]
    assert totals["generation_carbon_t_per_h"] == pytest.approx(
        totals["load_carbon_t_per_h"] + totals["loss_carbon_t_per_h"]
    )


def test_history_is_energy_weighted_in_local_time(client, center):
    _app, store, last, _token = center
    answer = client.get("/api/v1/history?kind=load&element=U01&bucket=day&group_by=element").json()
    expected = aggregate(
        store, "load", "day", START, last + timedelta(seconds=1), element_ids=["U01"], utc_offset_minutes=480
    )
    assert len(answer["items"]) == len(expected) == 1
    assert answer["items"][0]["bucket"] == "2025-06-02T00:00:00+08:00"
    assert answer["items"][0]["intensity_g_per_kwh"] == pytest.approx(expected[0].intensity_g_per_kwh)
    total = client.get("/api/v1/history?kind=total&bucket=15min").json()
    assert total["total"] == HOURS * 4


def test_three_sides_and_overview(client):
    overview = client.get("/api/v1/overview").json()
    assert overview["completeness"]["intervals_today"] == HOURS * 4
    # every interval since the system began metering is there: complete, though it began after midnight
    assert overview["completeness"]["intervals_expected"] == HOURS * 4
    assert overview["completeness"]["intervals_ratio"] == 1.0
    assert overview["now"]["generation_intensity_g_per_kwh"] > 0
    generation = client.get("/api/v1/generation").json()
    plants = {p["plant"] for p in generation["plants"]}
    assert {f"P{k:02d}" for k in range(1, 11)} <= plants  # the 10 power stations (+ a user's rooftop PV)
    assert sum(u["range_carbon_t"] for u in generation["units"]) == pytest.approx(
        overview["today"]["generation_carbon_t"], rel=1e-9
    )
    grid = client.get("/api/v1/grid").json()
    assert sum(r["loss_carbon_t"] for r in grid["loss_by_voltage"]) == pytest.approx(
        overview["today"]["loss_carbon_t"], rel=1e-9
    )
    consumption = client.get("/api/v1/consumption?region_depth=3").json()
    assert all(len(group["key"].split("/")) == 3 for group in consumption["by_region"])
    assert {"U01", "U14"} <= {u["id"] for u in consumption["users"]}


def test_origin_of_a_users_electricity_adds_up(client):
    origin = client.get("/api/v1/origin?load=U01").json()
    (u01,) = origin["loads"]
    assert sum(u01["carbon_share"].values()) == pytest.approx(1.0)
    assert sum(u01["power_mw_by_fuel"].values()) == pytest.approx(sum(u01["power_mw"].values()))
    assert {s["fuel"] for s in origin["sources"]} >= {"coal"}
    assert client.get("/api/v1/origin?bus=S001").json()["buses"][0]["id"] == "S001"


def test_devices_and_commands(client, center):
    _app, store, _last, _token = center
    devices = client.get("/api/v1/devices?status=offline").json()
    assert devices["total"] > 0 and all(d["status"] == "offline" for d in devices["items"])
    response = client.post("/api/v1/devices/RTU-S001/commands", json={"kind": "time_sync"})
    assert response.status_code == 202
    command_id = response.json()["command_id"]
    stored = [c for c in list_commands(store) if c["id"] == command_id]
    assert stored and stored[0]["actor"] == USER and stored[0]["status"] == "queued"
    listed = client.get("/api/v1/commands?device=RTU-S001").json()["items"]
    assert listed[0]["id"] == command_id


def test_readings_by_point_and_by_element(client):
    by_point = client.get("/api/v1/readings?point=RTU-S001/1").json()
    assert by_point["total"] == 3 and by_point["items"][0]["value"] == "130.25"  # exact decimal text
    by_element = client.get("/api/v1/readings?element_kind=bus&element_id=S001&quantity=u_kv").json()
    assert by_element["total"] == 3


BAD_REQUESTS = [
    ("get", "/api/v1/history?start=yesterday", 400),
    ("get", "/api/v1/history?start=2025-06-01T00:00:00", 400),  # no zone
    ("get", "/api/v1/history?start=2025-06-02T00:00:00Z&end=2025-06-01T00:00:00Z", 400),
    ("get", "/api/v1/history?start=2023-01-01T00:00:00Z&end=2025-01-01T00:00:00Z", 400),  # > 1 year
    ("get", "/api/v1/history?bucket=week", 422),
    ("get", "/api/v1/history?kind=planet", 422),
    ("get", "/api/v1/buses?limit=0", 422),
    ("get", "/api/v1/buses?kind=castle", 422),
    ("get", "/api/v1/buses?format=xml", 422),
    ("get", "/api/v1/buses/NOPE", 404),
    ("get", "/api/v1/results?ts=2020-01-01T00:00:00Z", 404),
    ("get", "/api/v1/results?ts=soon", 400),
    ("get", "/api/v1/results/transformer", 422),
    ("get", "/api/v1/series?kind=bus&element=S001&quantity=colour", 400),
    ("get", "/api/v1/series?kind=bus", 422),
    ("get", "/api/v1/origin?load=NOPE", 404),
    ("get", "/api/v1/grid?start=2024-01-01T00:00:00Z&end=2024-06-01T00:00:00Z", 400),
    ("get", "/api/v1/consumption?region_depth=7", 422),
    ("get", "/api/v1/devices/NOPE", 404),
    ("get", "/api/v1/commands?status=lost", 422),
    ("get", "/api/v1/readings", 400),
    ("get", "/api/v1/readings?point=RTU-S001/1&start=2025-01-01T00:00:00Z&end=2025-06-01T00:00:00Z", 400),
    ("post", "/api/v1/devices/RTU-S001/commands", 422),  # no body
    ("post", "/api/v1/devices/NOPE/commands", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), BAD_REQUESTS)
def test_bad_parameters_are_json_errors(client, method, path, status):
    if method == "post":
        body = {"kind": "time_sync"} if "NOPE" in path else None
        response = client.post(path, json=body)
    else:
        response = client.get(path)
    _is_json_error(response, status)


def test_command_kind_must_be_a_user_command(client):
    _is_json_error(client.post("/api/v1/devices/RTU-S001/commands", json={"kind": "format_disk"}), 422)


def test_live_pushes_the_latest_interval_and_requires_a_login(center):
    app, _store, last, token = center
    with TestClient(app) as client:
        with client.websocket_connect(f"/api/v1/live?token={token}") as socket:
            message = socket.receive_json()
        assert message["type"] == "interval"
        assert message["ts"] == last.isoformat().replace("+00:00", "Z")
        assert message["totals"]["generation_carbon_t_per_h"] > 0
        with pytest.raises(Exception), client.websocket_connect("/api/v1/live") as socket:  # noqa: B017
            socket.receive_json()


def test_overview_completeness_counts_from_when_the_system_began_metering(tmp_path):
    began = START + timedelta(hours=3)  # 03:00 local: the hours before it are nobody's gap
    store, _last = populate(f"sqlite:///{tmp_path / 'late.db'}", hours=2, start=began)
    try:
        with TestClient(create_app(CenterSettings(database_url="sqlite://"), store=store)) as anonymous:
            token = anonymous.post("/api/v1/login", json={"name": USER, "password": PASSWORD}).json()["token"]
            overview = anonymous.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"}).json()
    finally:
        store.close()
    completeness = overview["completeness"]
    assert completeness["intervals_today"] == completeness["intervals_expected"] == 2 * 4
    assert completeness["intervals_ratio"] == 1.0
    assert completeness["expected_since"].startswith(began.isoformat()[:16].replace("+00:00", ""))

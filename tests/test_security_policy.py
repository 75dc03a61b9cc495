"""Authorisation generated from the center's own OpenAPI document (issue 15 §Tests): every operation ×
every role × a user inside the resource's region and a user outside it.  Nothing here is hand-picked:
a new route shows up in the OpenAPI document and is tested (or the app refuses to start, see
``test_an_operation_missing_from_the_policy_stops_the_app``)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from webdata import populate

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.api.policy import POLICY, ROLE_PERMISSIONS, ROLES, Rule, rule_for
from carbonflow.center.store import create_user, queue_command, register_devices, upsert_collector
from carbonflow.center.store.alarms import insert_alarm

CITY, OTHER_CITY = "AH/HF", "AH/WH"  # the resources below lie in AH/HF; AH/WH users must not reach them
_T = datetime(2025, 6, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
SAMPLES = {  # a real resource of AH/HF for each path parameter
    "device_id": "RTU-S003",
    "bus_id": "S003",
    "collector_id": "C-HF",
    "camera_id": "CAM-HF",
    "key": hashlib.sha256(PNG).hexdigest() + ".png",
    "name": "target-user",
    "kind": "bus",
    "version": "1",
    "report_id": "0" * 32,
    "release_id": "1",
    "alarm_id": "1",
}
QUERIES = {
    "/api/v1/series": {"kind": "bus", "element": "S003"},
    "/api/v1/readings": {"point": "RTU-S003/1"},
    "/api/v1/versions/diff": {"a": 0, "b": 0, "start": "2025-06-01T00:00:00Z", "end": "2025-06-02T00:00:00Z"},
}
BODIES = {
    ("POST", "/api/v1/ties/intensities"): {"kind": "tie_intensities"},
    ("POST", "/api/v1/devices/{device_id}/commands"): {"kind": "read_now"},
    ("POST", "/api/v1/users"): lambda: {
        "name": f"u{uuid.uuid4().hex[:8]}",
        "password": "long-pass",
        "role": "viewer",
    },
    ("PATCH", "/api/v1/users/{name}"): {"region": "AH"},
    ("POST", "/api/v1/login"): {"name": "nobody", "password": "x"},
    ("POST", "/api/v1/reports"): {"period": "day", "start": "2025-06-02", "format": "csv"},
    ("POST", "/api/v1/releases"): {"period": "day", "start": "2025-06-02"},
    ("PUT", "/api/v1/alarm-rules"): {"rules": [{"id": "gap", "kind": "data_gap", "min_completeness": 0.5}]},
    ("POST", "/api/v1/alarms/{alarm_id}/ack"): {"note": "seen"},
    ("POST", "/api/v1/exports/table"): {"name": "t", "columns": ["a"], "rows": [["1"]]},
    ("POST", "/api/v1/collectors/{collector_id}/secret/rotate"): {"overlap_hours": 0},
    ("POST", "/api/v1/corrections"): {
        "kind": "losses",
        "start": "2025-06-01T00:00:00Z",
        "end": "2025-06-02T00:00:00Z",
        "value": "consumer",
    },
}


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=1)
    upsert_collector(store, "C-HF", "secret", region=CITY)
    register_devices(
        store,
        [
            {
                "id": "CAM-HF",
                "kind": "camera",
                "protocol": "camera-http",
                "region": "AH/HF/FD",
                "endpoint": {"host": "x", "port": 1},
            }
        ],
        collector_id="C-HF",
    )
    queue_command(store, "C-HF", "read_now", device_id=SAMPLES["device_id"])  # a command of AH/HF
    alarm = {"rule_id": "r", "kind": "device_offline", "severity": "major", "subject_kind": "device"}
    insert_alarm(store, {**alarm, "subject_id": "RTU-S003", "region": CITY, "raised_at": _T, "message": "x"})
    settings = CenterSettings(
        database_url=f"sqlite:///{path}",
        center_region="AH",
        image_dir=str(path.parent / "images"),
        api_tokens={
            f"tok-{role}-{where}": f"{role}-{where}" for role in ROLES for where in ("in", "out", "all")
        },
        login_max_failures=1000,
    )
    app = create_app(settings, store=store)
    app.state.images.save("CAM-HF", datetime(2025, 6, 1, tzinfo=UTC), PNG, "image/png", SAMPLES["key"][:-4])
    for role in ROLES:
        create_user(store, f"{role}-in", "pass-word-1", role, CITY)  # inside AH/HF (the resources' city)
        create_user(store, f"{role}-out", "pass-word-1", role, OTHER_CITY)
        create_user(store, f"{role}-all", "pass-word-1", role, "AH")  # the whole center
    create_user(store, "target-user", "pass-word-1", "viewer", CITY)
    with TestClient(app) as client:
        yield app, client
    store.close()


def operations(app) -> list[tuple[str, str]]:
    found = [
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if method.upper() in ("GET", "POST", "PATCH", "PUT", "DELETE")
    ]
    return [*found, ("WEBSOCKET", "/api/v1/live")]


def _app_for_listing():
    return create_app(CenterSettings(database_url="sqlite://"))


OPERATIONS = operations(_app_for_listing())


def _call(client: TestClient, method: str, template: str, token: str) -> int:
    return _request(client, method, template, token)[0]


def _request(client: TestClient, method: str, template: str, token: str) -> tuple[int, str]:
    """(status, body text) of one operation called as the token's user."""
    path = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)
    headers = {"Authorization": f"Bearer {token}"}
    if method == "WEBSOCKET":
        try:
            with client.websocket_connect(f"{path}?token={token}") as socket:
                return 200, str(socket.receive_json())
        except WebSocketDisconnect as closed:
            return (400 + closed.code % 100 if closed.code >= 4400 else 500), ""
    body = BODIES.get((method, template))
    body = body() if callable(body) else body
    params = dict(QUERIES.get(template, {}))
    if rule_for(method, template).scope == "region":
        params["region"] = CITY  # the AH/HF resources, asked for explicitly
    response = client.request(method, path, params=params, json=body, headers=headers)
    assert response.status_code != 500, response.text
    if response.status_code in (401, 403):
        assert set(response.json()) == {"error", "detail"}
    return response.status_code, response.text


# the resources of AH/HF by id: a rows-scoped list answers an AH/WH user without any of them
_CITY_KEYS = ("device_id", "collector_id", "camera_id")
CITY_IDS = re.compile(rf"\b({'|'.join(re.escape(SAMPLES[key]) for key in _CITY_KEYS)})\b")


def test_every_operation_is_in_the_policy():
    assert all(rule_for(method, path) is not None for method, path in OPERATIONS)
    assert len(OPERATIONS) >= 40


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "template"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_role_and_region_decide_every_operation(center, method, template, role):
    _app, client = center
    rule = rule_for(method, template)
    if rule.permission in ("public", "collector"):
        status = _call(client, method, template, "no-such-token")
        assert status != 403  # a user's (missing) rights never matter here; collectors sign instead
        return
    allowed = rule.permission in ROLE_PERMISSIONS[role]
    inside = "all" if rule.scope == "center" else "in"
    status_in = _call(client, method, template, f"tok-{role}-{inside}")
    status_out, body_out = _request(client, method, template, f"tok-{role}-out")
    if not allowed:
        assert status_in == 403 and status_out == 403, (status_in, status_out)
        return
    assert status_in not in (401, 403), f"{role} inside its region refused: {status_in}"
    if rule.scope == "none" or rule.permission == "admin" or rule.permission == "audit":
        assert status_out not in (401, 403)  # not regional: the user's region does not matter
    elif rule.scope == "rows":  # answered, with the rows of the user's own region only
        assert status_out not in (401, 403), f"{role} of {OTHER_CITY} refused a list: {status_out}"
        assert not CITY_IDS.search(body_out), f"{role} of {OTHER_CITY} sees {CITY_IDS.search(body_out)[0]}"
    else:
        assert status_out == 403, f"{role} of {OTHER_CITY} reached a resource of {CITY}: {status_out}"


def test_an_anonymous_caller_gets_401_on_every_user_operation(center):
    _app, client = center
    for method, template in OPERATIONS:
        if rule_for(method, template).permission in ("public", "collector"):
            continue
        status = _call(client, method, template, "forged")
        assert status == 401, (method, template, status)


def test_a_region_filter_defaults_to_the_users_region_and_may_not_leave_it(center):
    _app, client = center
    inside = client.get("/api/v1/buses", headers={"Authorization": "Bearer tok-viewer-in"}).json()
    assert inside["total"] > 0 and all(row["region"].startswith(CITY + "/") for row in inside["items"])
    county = client.get(
        "/api/v1/buses", params={"region": "AH/HF/FX"}, headers={"Authorization": "Bearer tok-viewer-in"}
    )
    assert county.status_code == 200 and all(r["region"] == "AH/HF/FX" for r in county.json()["items"])
    outside = client.get(
        "/api/v1/buses", params={"region": "AH"}, headers={"Authorization": "Bearer tok-viewer-in"}
    )
    assert outside.status_code == 403


def test_an_unknown_resource_and_a_foreign_one_look_alike_to_a_scoped_user(center):
    _app, client = center
    headers = {"Authorization": "Bearer tok-operator-out"}
    unknown = client.get("/api/v1/devices/NO-SUCH-DEVICE", headers=headers)
    foreign = client.get(f"/api/v1/devices/{SAMPLES['device_id']}", headers=headers)
    assert unknown.status_code == foreign.status_code == 403
    assert unknown.json()["error"].replace("NO-SUCH-DEVICE", "X") == foreign.json()["error"].replace(
        SAMPLES["device_id"], "X"
    )


def test_an_operation_missing_from_the_policy_stops_the_app(monkeypatch):
    from carbonflow.center.api.routes import audit

    extra = APIRouter()

    @extra.get("/api/v1/unlisted")
    def unlisted() -> dict:
        return {}

    monkeypatch.setattr(audit, "router", extra)
    with pytest.raises(RuntimeError, match="GET /api/v1/unlisted"):
        create_app(CenterSettings(database_url="sqlite://"))


def test_the_policy_table_names_only_known_roles_and_scopes():
    assert set(ROLE_PERMISSIONS) == set(ROLES)
    assert all(isinstance(rule, Rule) for rule in POLICY.values())

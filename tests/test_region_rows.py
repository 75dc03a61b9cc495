"""Lists of field equipment and operations hold only the rows of the user's region (issue 15 §1, the
``rows`` scope of the access policy), on SQLite and PostgreSQL: devices, points, readings, collectors,
commands and their summary, cameras, meter checks and their summary, and "sync all clocks".

The center's region is AH; equipment lies in two cities (AH/HF, AH/WH), in a sibling of AH/HF whose
name merely starts like it (AH/HFX), in a lower-case look-alike (ah/hf, which SQLite's LIKE would fold),
and at the center itself without a region.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.metering.meter_check import list_checks
from carbonflow.center.store import (
    create_user,
    ingest_batch,
    list_commands,
    list_devices,
    queue_command,
    register_devices,
    upsert_collector,
)
from carbonflow.center.store.alarms import insert_alarm
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import MeterCheck
from carbonflow.messages.c4 import Batch, Reading

T0 = datetime(2025, 6, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
# collector → region, and its devices: id → (region, protocol)
FIELD = {
    "C-HF": (
        "AH/HF",
        {
            "M-HF1": ("AH/HF/FX", "dlt645"),
            "M-HF2": ("AH/HF", "dlt698"),
            "CAM-HF": ("AH/HF/FX", "camera-http"),
        },
    ),
    "C-WH": ("AH/WH", {"M-WH1": ("AH/WH/WZ", "dlt645"), "CAM-WH": ("AH/WH", "camera-http")}),
    "C-HFX": ("AH/HFX", {"M-HFX": ("AH/HFX", "dlt645")}),
    "C-LOW": ("ah/hf", {"M-LOW": ("ah/hf/fx", "dlt645")}),
    "C-CTR": (None, {"M-CTR": (None, "dlt645")}),
}
REGION = {device: region for _, (_, devices) in FIELD.items() for device, (region, _) in devices.items()}
HF = {"M-HF1", "M-HF2", "CAM-HF"}
AH = HF | {"M-WH1", "CAM-WH", "M-HFX"}  # every device whose region lies in AH
EVERY = set(REGION)
USERS = {"hf": "AH/HF", "wh": "AH/WH", "ah": "AH", "all": ""}  # user → region prefix
SEE = {"hf": HF, "wh": {"M-WH1", "CAM-WH"}, "ah": AH | {"M-CTR"}, "all": EVERY}  # + center-level rows


def _device(device_id: str, region: str | None, protocol: str) -> dict:
    camera = protocol == "camera-http"
    return {
        "id": device_id,
        "kind": "camera" if camera else "meter",
        "protocol": protocol,
        "region": region,
        "endpoint": {"host": "127.0.0.1", "port": 1},
        "address": None if camera else {"address": "110100000001"},
        "points": []
        if camera
        else [
            {"id": f"{device_id}/1", "element_kind": "load", "element_id": "U1", "quantity": "p_mw"},
            {"id": f"{device_id}/2", "element_kind": "load", "element_id": "U1", "quantity": "carbon_kg"},
        ],
    }


def seed(store, url: str, image_dir) -> TestClient:  # noqa: F811
    for collector, (region, devices) in FIELD.items():
        upsert_collector(store, collector, "secret", region=region)
        register_devices(store, [_device(d, *spec) for d, spec in devices.items()], collector)
        for device in devices:
            queue_command(store, collector, "read_now", device_id=device)
        queue_command(store, collector, "reload_config", params={"version": "1"})  # the collector's own
        points = [f"{d}/1" for d, (_, protocol) in devices.items() if protocol != "camera-http"]
        readings = [
            Reading(point=p, ts=T0 + timedelta(minutes=m), value="1.5", quality="good")
            for p in points
            for m in (0, 15)
        ]
        batch = Batch(
            collector_id=collector, batch_id=f"batch-{collector}", seq=1, created_at=T0, readings=readings
        )
        ingest_batch(store, batch)
    checks = [
        {
            "device_id": device,
            "carbon_point": f"{device}/2",
            "energy_point": f"{device}/1",
            "start_ts": T0,
            "end_ts": T0 + timedelta(hours=1, minutes=k),
            "status": "ok",
            "energy_kwh": Decimal("10"),
            "shown_kg": Decimal("5.0"),
            "created_at": T0,
            "intervals": [],
        }
        for k, device in enumerate(sorted(REGION))
        if not device.startswith("CAM")
    ]
    with store.write() as connection:
        connection.execute(MeterCheck.__table__.insert(), checks)
    for name, region in USERS.items():
        create_user(store, name, "pass-word-1", "operator", region)
    settings = CenterSettings(
        database_url=url,
        center_region="AH",
        image_dir=str(image_dir),
        api_tokens={f"tok-{name}": name for name in USERS},
    )
    app = create_app(settings, store=store)
    for camera in ("CAM-HF", "CAM-WH", "CAM-LOOSE"):  # CAM-LOOSE: images, but no device (no region)
        data = PNG + camera.encode()
        app.state.images.save(camera, T0, data, "image/png", hashlib.sha256(data).hexdigest())
    return TestClient(app)


def get(client: TestClient, user: str, path: str, **params) -> dict:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer tok-{user}"})
    assert response.status_code == 200, response.text
    return response.json()


def devices_in(rows: list[dict], key: str = "device_id") -> set[str]:
    return {row[key] for row in rows if row[key] is not None}


def test_each_list_holds_the_rows_of_the_users_region_only(store, database_url, tmp_path):  # noqa: F811
    with seed(store, database_url, tmp_path / "images") as client:
        for user, seen in SEE.items():
            devices = get(client, user, "/api/v1/devices")
            assert {row["id"] for row in devices["items"]} == seen and devices["total"] == len(seen), user
            points = get(client, user, "/api/v1/points")["items"]
            assert devices_in(points) == seen - {"CAM-HF", "CAM-WH"}, user
            collectors = {row["id"] for row in get(client, user, "/api/v1/collectors")["items"]}
            assert collectors == {c for c, (_, devs) in FIELD.items() if set(devs) & seen}, user
            commands = get(client, user, "/api/v1/commands")
            assert devices_in(commands["items"]) == seen, user
            # reload_config has no device: it belongs to its collector's region
            reloads = {row["collector_id"] for row in commands["items"] if row["kind"] == "reload_config"}
            assert reloads == collectors, user
            assert commands["total"] == len(seen) + len(collectors)
            summary = {
                row["kind"]: row["count"] for row in get(client, user, "/api/v1/commands/summary")["items"]
            }
            assert summary == {"read_now": len(seen), "reload_config": len(collectors)}, user
            checks = get(client, user, "/api/v1/meter-checks")
            assert devices_in(checks["items"]) == seen - {"CAM-HF", "CAM-WH"}, user
            meters = get(client, user, "/api/v1/meter-checks/summary")["items"]
            assert devices_in(meters) == seen - {"CAM-HF", "CAM-WH"}, user
            readings = get(
                client,
                user,
                "/api/v1/readings",
                element_kind="load",
                element_id="U1",
                quantity="p_mw",
                start=T0.isoformat(),
                end=(T0 + timedelta(hours=1)).isoformat(),
            )
            assert {row["point_id"].split("/")[0] for row in readings["items"]} == seen - {"CAM-HF", "CAM-WH"}
            cameras = {row["id"] for row in get(client, user, "/api/v1/cameras")["items"]}
            loose = {"CAM-LOOSE"} if user in ("ah", "all") else set()  # no region: the center's users
            assert cameras == ({"CAM-HF", "CAM-WH"} & seen) | loose, user


def test_a_page_and_its_total_count_only_the_users_rows(store, database_url, tmp_path):  # noqa: F811
    with seed(store, database_url, tmp_path / "images") as client:
        whole = get(client, "hf", "/api/v1/devices")["items"]
        pages = [get(client, "hf", "/api/v1/devices", limit=1, offset=k) for k in range(3)]
        assert [page["total"] for page in pages] == [3, 3, 3]
        assert [page["items"][0]["id"] for page in pages] == [row["id"] for row in whole]
        assert get(client, "hf", "/api/v1/devices", limit=1, offset=3)["items"] == []
        commands = get(client, "hf", "/api/v1/commands", limit=2, offset=4)
        assert commands["total"] == 4 and len(commands["items"]) == 0
        one_point = get(client, "wh", "/api/v1/readings", point="M-HF1/1", start=T0.isoformat())
        assert one_point["total"] == 0  # another city's point: nothing, not an error
        assert get(client, "hf", "/api/v1/readings", point="M-HF1/1", start=T0.isoformat())["total"] == 2
        csv = client.get("/api/v1/devices?format=csv", headers={"Authorization": "Bearer tok-wh"}).text
        assert csv.splitlines()[1:] and all(
            line.split(",")[0] in ("M-WH1", "CAM-WH") for line in csv.splitlines()[1:]
        )


def test_sync_all_clocks_reaches_the_operators_region_only(store, database_url, tmp_path):  # noqa: F811
    with seed(store, database_url, tmp_path / "images") as client:
        headers = {"Authorization": "Bearer tok-hf", "Origin": "http://testserver"}
        synced = client.post("/api/v1/commands/time-sync-all", headers=headers)
        assert synced.status_code == 202 and synced.json()["devices"] == ["M-HF1", "M-HF2"]
        mine = get(client, "hf", "/api/v1/commands", status="queued")["items"]
        assert sorted(r["device_id"] for r in mine if r["kind"] == "time_sync") == ["M-HF1", "M-HF2"]
        everyone = client.post(
            "/api/v1/commands/time-sync-all", headers={**headers, "Authorization": "Bearer tok-all"}
        )
        assert everyone.json()["devices"] == sorted(d for d in EVERY if not d.startswith("CAM"))


def test_the_devices_and_maintenance_pages_load_for_a_city_user(store, database_url, tmp_path):  # noqa: F811
    """Every call the web UI's devices and maintenance pages make answers a city operator (no 403)."""
    with seed(store, database_url, tmp_path / "images") as client:
        for path in (
            "/api/v1/devices?limit=100000",
            "/api/v1/commands?limit=500&exclude_kind=set_carbon_factor",
            "/api/v1/commands/summary",
            "/api/v1/collectors?limit=100000",
            "/api/v1/meter-checks/summary",
            "/api/v1/cameras?limit=100000",
            "/api/v1/collectors/C-HF",
        ):
            assert client.get(path, headers={"Authorization": "Bearer tok-hf"}).status_code == 200, path


def test_the_row_scope_compares_regions_exactly(store):  # noqa: F811
    for collector, (region, devices) in FIELD.items():
        upsert_collector(store, collector, "secret", region=region)
        register_devices(store, [_device(d, *spec) for d, spec in devices.items()], collector)
    ids = lambda scope: {row["id"] for row in list_devices(store, scope=scope)}  # noqa: E731
    assert ids(RowScope("AH/HF")) == {"M-HF1", "M-HF2", "CAM-HF"}  # not AH/HFX, not ah/hf
    assert ids(RowScope("AH/HF/FX")) == {"M-HF1", "CAM-HF"}
    assert ids(RowScope("AH/H_")) == ids(RowScope("AH/H%")) == set()  # LIKE's wildcards mean nothing
    assert ids(RowScope("ah/hf")) == {"M-LOW"}
    assert ids(RowScope("AH", unregioned=True)) == AH | {"M-CTR"}
    assert ids(None) == EVERY
    assert list_checks(store, scope=RowScope("AH/WH")) == []
    queue_command(store, "C-HF", "read_now", device_id="GHOST")  # a device the center does not know
    queue_command(store, "C-HF", "restart")  # no device: the collector's region
    kinds = lambda scope: sorted((r["kind"], r["device_id"]) for r in list_commands(store, scope=scope))  # noqa: E731
    assert kinds(RowScope("AH/HF")) == [("restart", None)]
    assert kinds(RowScope("AH", unregioned=True)) == [("read_now", "GHOST"), ("restart", None)]
    assert kinds(RowScope("AH/WH", unregioned=True)) == [("read_now", "GHOST")]  # not C-HF's restart


def test_a_city_user_sees_counts_and_acknowledges_alarms_of_their_city_only(store, database_url, tmp_path):  # noqa: F811
    with seed(store, database_url, tmp_path / "images") as client:
        ids = {}
        for device in ("M-HF1", "M-WH1", "M-HFX", "M-CTR"):
            ids[device] = insert_alarm(
                store,
                {
                    "rule_id": "offline",
                    "kind": "device_offline",
                    "severity": "major",
                    "subject_kind": "device",
                    "subject_id": device,
                    "region": REGION[device],
                    "raised_at": T0,
                    "message": f"{device} offline",
                },
            )
        mine = get(client, "hf", "/api/v1/alarms")
        assert [row["subject"]["id"] for row in mine["items"]] == ["M-HF1"]  # not AH/HFX's
        assert mine["counts"]["active"] == 1
        assert get(client, "all", "/api/v1/alarms")["counts"]["active"] == 4
        province = get(client, "ah", "/api/v1/alarms")  # the center's own alarm (no region) too
        assert {row["subject"]["id"] for row in province["items"]} == set(ids)
        assert province["counts"]["active"] == 4
        headers = {"Authorization": "Bearer tok-hf", "Origin": "http://testserver"}
        ack = client.post(f"/api/v1/alarms/{ids['M-HF1']}/ack", json={"note": "on it"}, headers=headers)
        assert ack.status_code == 200 and ack.json()["acknowledged"]
        for foreign in ("M-WH1", "M-HFX", "M-CTR"):  # another city, a look-alike, the center's own
            assert client.post(f"/api/v1/alarms/{ids[foreign]}/ack", headers=headers).status_code == 403
            assert client.get(f"/api/v1/alarms/{ids[foreign]}", headers=headers).status_code == 403
        assert client.get("/api/v1/alarms/99999999999999999999999", headers=headers).status_code == 403
        assert (
            client.get(
                f"/api/v1/alarms/{ids['M-CTR']}", headers={"Authorization": "Bearer tok-ah"}
            ).status_code
            == 200
        )


def test_a_center_level_resource_opens_for_the_centers_users_only(store, database_url, tmp_path):  # noqa: F811
    """What the lists show, the resource routes open: rows without a region belong to the center."""
    with seed(store, database_url, tmp_path / "images") as client:
        for path in ("/api/v1/devices/M-CTR", "/api/v1/collectors/C-CTR", "/api/v1/cameras/CAM-LOOSE/latest"):
            for user, status in (("ah", 200), ("all", 200), ("hf", 403), ("wh", 403)):
                answer = client.get(path, headers={"Authorization": f"Bearer tok-{user}"})
                assert answer.status_code == status, (path, user)
        assert (
            client.get(
                "/api/v1/cameras/NO-SUCH/latest", headers={"Authorization": "Bearer tok-ah"}
            ).status_code
            == 403
        )


def test_a_collectors_page_shows_the_devices_and_commands_of_the_users_region(
    store,  # noqa: F811
    database_url,  # noqa: F811
    tmp_path,
):
    with seed(store, database_url, tmp_path / "images") as client:
        register_devices(store, [_device("M-WH9", "AH/WH/NL", "dlt645")], "C-HF")  # C-HF reads into AH/WH
        queue_command(store, "C-HF", "read_now", device_id="M-WH9")
        page = get(client, "hf", "/api/v1/collectors/C-HF")
        assert [row["id"] for row in page["devices"]] == ["CAM-HF", "M-HF1", "M-HF2"]
        assert devices_in(page["commands"]) == HF and len(page["commands"]) == 4  # + its reload_config
        whole = get(client, "all", "/api/v1/collectors/C-HF")
        assert "M-WH9" in {row["id"] for row in whole["devices"]} and "M-WH9" in devices_in(whole["commands"])

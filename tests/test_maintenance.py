"""Remote maintenance: unanswered commands retried then failed, the retention purge run by the scheduler,
configuration push with versions end to end (center over real HTTP + a real collector polling a
simulated DL/T 698.45 meter), bad configurations refused, and the user endpoints' auth and errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.ingest.to_collector import signed_commands
from carbonflow.center.maintenance import MaintenanceScheduler
from carbonflow.center.store import (
    Store,
    count_readings,
    create_user,
    ingest_batch,
    list_commands,
    queue_command,
    register_devices,
    take_queued_commands,
    upsert_collector,
)
from carbonflow.center.store.collector_admin import collector_config, collector_configs, push_collector_config
from carbonflow.collector.config import load_config
from carbonflow.collector.service import Collector
from carbonflow.devices.base import StaticSource
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.messages.c4 import Batch, Reading
from carbonflow.messages.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    config_body,
    request_headers,
    signature_ok,
)

STAMP_HEADERS = (SIGNED_AT_HEADER, NONCE_HEADER)

SECRET = "maintenance-secret-0123"
USER, PASSWORD = "operator", "a-long-password-42"
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def open_store(tmp_path) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    upsert_collector(store, "C1", SECRET, name="substation collector")
    register_devices(
        store,
        [
            {
                "id": "ECM",
                "kind": "carbon_meter",
                "protocol": "dlt698",
                "points": [
                    {
                        "id": "ECM/e",
                        "element_kind": "load",
                        "element_id": "U1",
                        "quantity": "import_energy_kwh",
                    },
                    {
                        "id": "ECM/p",
                        "element_kind": "load",
                        "element_id": "U1",
                        "quantity": "p_mw",
                        "scale": 1000,
                    },
                ],
            },
            {"id": "MB", "kind": "meter", "protocol": "modbus-tcp", "points": []},
        ],
        "C1",
    )
    create_user(store, USER, PASSWORD)
    return store


@pytest.fixture
def store(tmp_path):
    store = open_store(tmp_path)
    yield store
    store.close()


@pytest.fixture
def app(store):
    return create_app(CenterSettings(database_url="sqlite://", maintenance_period_s=0), store=store)


@pytest.fixture
def client(app):
    with TestClient(app) as anonymous:
        token = anonymous.post("/api/v1/login", json={"name": USER, "password": PASSWORD}).json()["token"]
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


# --- the scheduler -----------------------------------------------------------------------------------


def test_an_unanswered_command_is_retried_then_failed_after_max_attempts(store):
    scheduler = MaintenanceScheduler(
        store, command_timeout_s=60, max_attempts=3, meter_check_every_s=None, clock=lambda: T0
    )
    command = queue_command(store, "C1", "time_sync", device_id="ECM", now=T0)
    now = T0
    for attempt in (1, 2, 3):
        (taken,) = take_queued_commands(store, "C1", now=now)  # the collector takes it and goes silent
        assert taken.command_id == command.command_id
        assert scheduler.tick(now + timedelta(seconds=59)).requeued == 0  # not yet timed out
        now += timedelta(seconds=61)
        report = scheduler.tick(now)
        (row,) = list_commands(store)
        assert row["attempts"] == attempt
        if attempt < 3:
            assert (report.requeued, report.failed, row["status"]) == (1, 0, "queued")
        else:
            assert (report.requeued, report.failed, row["status"]) == (0, 1, "failed")
            assert row["detail"] == "no answer after 3 attempts"
    assert take_queued_commands(store, "C1", now=now) == []


def _old_batch(ts: datetime) -> Batch:
    return Batch(
        collector_id="C1",
        batch_id=uuid.uuid4().hex,
        seq=1,
        created_at=ts,
        readings=[Reading(point="ECM/e", ts=ts, value="1.00")],
    )


def test_the_scheduler_purges_per_retention_after_its_delay_then_daily(store):
    now = datetime.now(UTC)
    ingest_batch(store, _old_batch(now - timedelta(days=30)), received_at=now - timedelta(days=30))
    fresh = _old_batch(now - timedelta(days=1))
    ingest_batch(store, fresh.model_copy(update={"seq": 2}), received_at=now)
    scheduler = MaintenanceScheduler(
        store, retention_days=10, purge_delay_s=600, meter_check_every_s=None, clock=lambda: now
    )
    assert scheduler.tick(now + timedelta(seconds=599)).purge is None  # not at start: after the delay
    assert count_readings(store) == 2
    report = scheduler.tick(now + timedelta(seconds=601))
    assert report.purge is not None and report.purge.rows_deleted["readings"] == 1
    assert count_readings(store) == 1
    assert scheduler.tick(now + timedelta(hours=23)).purge is None  # daily
    assert scheduler.tick(now + timedelta(days=1, seconds=602)).purge is not None
    with store.read() as connection:
        actions = [r[0] for r in connection.exec_driver_sql("SELECT action FROM audit").all()]
    assert actions.count("retention.purge") == 2


def test_a_failing_step_is_reported_and_does_not_stop_the_round(store, monkeypatch):
    scheduler = MaintenanceScheduler(store, purge_delay_s=0, meter_check_every_s=60, clock=lambda: T0)

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("carbonflow.center.maintenance.purge_older_than", broken)
    report = scheduler.tick(T0)
    assert report.errors == ["purge: disk on fire"] and report.meter_checks == 0


def test_stored_meter_checks_are_announced_to_the_listeners(store, monkeypatch):
    """The alarm engine reads new meter checks only when told some were stored (docs/alarms.md)."""
    scheduler = MaintenanceScheduler(store, meter_check_every_s=60, clock=lambda: T0)
    heard: list[list] = []
    scheduler.meter_check_listeners.append(heard.append)
    found: list[list] = [[], ["a check"]]
    monkeypatch.setattr("carbonflow.center.maintenance.check_meters", lambda _store: found.pop(0))
    assert scheduler.tick(T0).meter_checks == 0 and heard == []  # none stored: nobody is told
    assert scheduler.tick(T0 + timedelta(seconds=60)).meter_checks == 1 and heard == [["a check"]]


# --- configuration push end to end ----------------------------------------------------------------


class RunningServer:
    """uvicorn on 127.0.0.1 with a free port, in a thread."""

    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def collector_toml(
    center_url: str, meter_port: int, tmp_path, *, version: str | None, period_s: float
) -> str:
    head = f'config_version = "{version}"\n' if version else ""
    return head + (
        f'id = "C1"\nsecret = "{SECRET}"\n\n'
        f'[center]\nurl = "{center_url}"\ncommand_poll_s = 0.1\nbackoff_min_s = 0.05\nbackoff_max_s = 0.2\n\n'
        f"[defaults]\nperiod_s = {period_s}\ntimeout_s = 1.0\nretries = 0\n\n"
        f'[outbox]\npath = "{tmp_path / "outbox.sqlite"}"\nbatch_max_age_s = 0.1\n\n'
        f'[[devices]]\nid = "ECM"\nprotocol = "dlt698"\nendpoint = "127.0.0.1:{meter_port}"\n'
        f'address = "220100000001"\n'
        f'points = [{{ name = "e", oad = "00100200", kind = "counter" }}]\n'
    )


def test_a_pushed_configuration_is_fetched_validated_written_applied_and_reported(tmp_path, store):
    app = create_app(CenterSettings(database_url="sqlite://", maintenance_period_s=0), store=store)
    meter = Dlt698Meter("ecm", "220100000001", StaticSource({"p_kw": 30.0}))
    path = tmp_path / "collector.toml"

    async def main(base_url: str, token: str):
        await meter.start()
        path.write_text(collector_toml(base_url, meter.port, tmp_path, version="1", period_s=0.5))
        collector = Collector(load_config(path), path)
        await collector.start()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as api:

                async def reported(version: str) -> bool:
                    row = (await api.get("/api/v1/collectors/C1")).json()
                    return row["config_version"] == version and row["outbox"] is not None

                assert await eventually(lambda: reported("1"))
                # version 2: the same devices, polled twice as often; the center numbers it
                new = collector_toml(base_url, meter.port, tmp_path, version=None, period_s=0.25)
                pushed = await api.post("/api/v1/collectors/C1/config", content=new)
                assert pushed.status_code == 201, pushed.text
                assert pushed.json()["version"] == "2" and pushed.json()["status"] == "queued"
                assert await eventually(lambda: reported("2"))
                detail = (await api.get("/api/v1/collectors/C1")).json()
                listing = (await api.get("/api/v1/collectors")).json()
        finally:
            await collector.stop()
            await meter.stop()
        return pushed.json(), detail, listing, collector.config

    with TestClient(app) as anonymous:
        token = anonymous.post("/api/v1/login", json={"name": USER, "password": PASSWORD}).json()["token"]
    with RunningServer(app) as base_url:
        pushed, detail, listing, running = asyncio.run(main(base_url, token))
    assert running.config_version == "2" and running.devices[0].period_s == 0.25
    written = path.read_text()
    assert written.startswith('config_version = "2"') and "period_s = 0.25" in written
    assert 'config_version = "1"' in (tmp_path / "collector.toml.previous").read_text()
    (command,) = [c for c in detail["commands"] if c["kind"] == "reload_config"]
    assert command["status"] == "acknowledged" and command["params"] == {"version": "2", "url": pushed["url"]}
    assert [c["version"] for c in detail["configs"]] == ["2"] and detail["pushed_config_version"] == "2"
    assert detail["status"] == "online" and detail["outbox"]["dead_letters"] == 0
    assert [d["id"] for d in detail["devices"]] == ["ECM", "MB"] and "secret" not in detail
    assert listing["total"] == 1 and listing["items"][0]["devices"] == 2


async def eventually(condition, timeout_s: float = 20.0) -> bool:
    """Wait for an async condition; returns whether it came true (not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return await condition()


GOOD = (
    f'id = "C1"\nsecret = "{SECRET}"\n[center]\nurl = "http://127.0.0.1:8000"\n'
    '[[devices]]\nid = "ECM"\nprotocol = "dlt698"\nendpoint = "127.0.0.1:7000"\naddress = "220100000001"\n'
    'points = [{ name = "e", oad = "00100200" }]\n'
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('id = "C1"\n[center\n', "TOML syntax"),
        (GOOD.replace('id = "C1"', 'id = "C2"', 1), "is not collector 'C1'"),
        (GOOD.replace('oad = "00100200"', 'oad = "zz"'), "device 'ECM' (devices[0]): points[0].oad"),
        (GOOD.replace('address = "220100000001"\n', ""), "address"),
        (GOOD.replace(SECRET, "another-secret-000"), "secret: differs"),
        (GOOD.replace("http://127.0.0.1:8000", "ftp://x"), "center.url"),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_problem_and_nothing_is_queued(
    client, store, text, message
):
    response = client.post("/api/v1/collectors/C1/config", content=text)
    assert response.status_code == 422 and message in response.json()["error"], response.json()
    assert list_commands(store) == [] and collector_configs(store, "C1") == []


def test_a_version_is_immutable_and_the_collector_fetches_it_signed(client, store):
    first = client.post("/api/v1/collectors/C1/config", content='config_version = "v7"\n' + GOOD)
    assert first.status_code == 201 and first.json()["version"] == "v7"
    same = client.post("/api/v1/collectors/C1/config", content='config_version = "v7"\n' + GOOD)
    assert same.status_code == 201  # the same text again: no new version (but a new reload command)
    other = client.post(
        "/api/v1/collectors/C1/config", content='config_version = "v7"\n' + GOOD + "\n# edit\n"
    )
    assert other.status_code == 409
    assert client.post("/api/v1/collectors/C1/config", content=GOOD).json()["version"] == "1"
    path = "/api/v1/collectors/C1/config/v7"
    with TestClient(client.app) as anonymous:
        assert anonymous.get(path).status_code == 401  # unsigned
        signed = anonymous.get(path, headers=request_headers(SECRET.encode(), "GET", path))
        assert signed.status_code == 200 and signed.text == 'config_version = "v7"\n' + GOOD
        body = config_body("C1", "v7", signed.text)  # and the center signed what it sent
        stamp = [signed.headers[name] for name in STAMP_HEADERS]
        assert signature_ok(SECRET.encode(), "config", *stamp, body, signed.headers[SIGNATURE_HEADER])
        missing = "/api/v1/collectors/C1/config/v8"
        assert (
            anonymous.get(missing, headers=request_headers(SECRET.encode(), "GET", missing)).status_code
            == 404
        )


def test_an_operator_reads_a_version_with_its_secret_masked_and_rolls_back_to_it(client, store):
    first = client.post("/api/v1/collectors/C1/config", content=GOOD).json()["version"]
    second = client.post("/api/v1/collectors/C1/config", content=GOOD + "\n# poll faster\n").json()["version"]
    shown = client.get(f"/api/v1/collectors/C1/configs/{first}").json()
    assert SECRET not in shown["text"] and 'secret = "***"' in shown["text"]
    assert 'id = "ECM"' in shown["text"]
    assert client.get("/api/v1/collectors/C1/configs/v99").status_code == 404
    back = client.post(f"/api/v1/collectors/C1/config/{first}/rollback")
    assert back.status_code == 201, back.text
    rolled = back.json()["version"]
    assert rolled not in (first, second) and back.json()["status"] == "queued"  # a new version, queued
    assert collector_config(store, "C1", rolled).endswith(GOOD)  # the first one's text, secret and all
    reloads = [c for c in list_commands(store) if c["kind"] == "reload_config"]
    assert reloads[-1]["params"]["version"] == rolled
    assert client.post("/api/v1/collectors/C1/config/v99/rollback").status_code == 404
    assert client.post("/api/v1/collectors/NOPE/config/1/rollback").status_code == 404


# --- user endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/collectors"),
        ("GET", "/api/v1/collectors/C1"),
        ("POST", "/api/v1/collectors/C1/config"),
        ("POST", "/api/v1/commands/time-sync-all"),
        ("GET", "/api/v1/meter-checks"),
    ],
)
def test_the_maintenance_endpoints_require_a_login(app, method, path):
    with TestClient(app) as anonymous:
        response = anonymous.request(method, path, content=GOOD if method == "POST" else None)
    assert response.status_code == 401 and response.json()["error"] == "login required"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/collectors/NOPE", 404),
        ("/api/v1/collectors?status=sleepy", 422),
        ("/api/v1/meter-checks?start=yesterday", 400),
        ("/api/v1/meter-checks?start=2026-06-02T00:00:00Z&end=2026-06-01T00:00:00Z", 400),
        ("/api/v1/meter-checks?status=bad", 422),
        ("/api/v1/meter-checks?limit=0", 422),
    ],
)
def test_bad_parameters_are_json_errors(client, path, status):
    response = client.get(path)
    assert response.status_code == status and "error" in response.json()


def test_pushing_to_an_unknown_collector_is_404(client):
    assert client.post("/api/v1/collectors/NOPE/config", content=GOOD).status_code == 404


def test_sync_all_clocks_queues_one_time_sync_per_device_with_a_clock(client, store):
    response = client.post("/api/v1/commands/time-sync-all")
    assert response.status_code == 202 and response.json() == {"queued": 1, "devices": ["ECM"]}  # not Modbus
    (command,) = list_commands(store)
    assert (command["kind"], command["device_id"], command["actor"]) == ("time_sync", "ECM", USER)


def test_routine_factor_downloads_are_summed_up_and_left_out_of_the_command_log(client, store):
    for k in range(30):  # an interval's factor download per meter: routine
        queue_command(store, "C1", "set_carbon_factor", device_id="ECM", params={"factor": str(500 + k)})
    client.post("/api/v1/commands/time-sync-all")
    log = client.get("/api/v1/commands?exclude_kind=set_carbon_factor").json()
    assert [c["kind"] for c in log["items"]] == ["time_sync"]
    assert len(client.get("/api/v1/commands").json()["items"]) == 31  # all of them on request
    only_ecm = client.get("/api/v1/commands?device=ECM&exclude_kind=time_sync").json()["items"]
    assert {c["kind"] for c in only_ecm} == {"set_carbon_factor"} and len(only_ecm) == 30
    summary = {k["kind"]: k for k in client.get("/api/v1/commands/summary").json()["items"]}
    assert summary["set_carbon_factor"]["count"] == 30
    assert summary["set_carbon_factor"]["by_status"] == {"queued": 30}
    assert summary["time_sync"]["count"] == 1 and summary["set_carbon_factor"]["last_created_at"]


def test_meter_checks_listing_filters_and_csv(client, store):
    from carbonflow.center.metering.meter_check import CheckResult, save_checks

    rows = [
        CheckResult("ECM", "ok", T0, T0 + timedelta(minutes=15), deviation_kg=0, carbon_point="ECM/c"),
        CheckResult("ECM", "mismatch", T0 + timedelta(minutes=15), T0 + timedelta(minutes=30), detail="jump"),
        CheckResult("OTHER", "ok", T0, T0 + timedelta(minutes=15)),
    ]
    save_checks(store, rows)
    everything = client.get("/api/v1/meter-checks").json()
    assert everything["total"] == 3 and everything["items"][0]["status"] == "mismatch"  # newest first
    assert client.get("/api/v1/meter-checks?device=ECM&status=mismatch").json()["total"] == 1
    ranged = client.get("/api/v1/meter-checks", params={"start": "2026-06-01T08:20:00Z"}).json()
    assert [r["detail"] for r in ranged["items"]] == ["jump"]
    csv = client.get("/api/v1/meter-checks?format=csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.count("\n") == 4
    assert csv.text.splitlines()[0].startswith("id,device_id,carbon_point")


def test_meter_checks_summary_cumulates_the_steps_per_meter(client, store):
    from carbonflow.center.metering.meter_check import CheckResult, save_checks

    def step(minutes: int, shown: str, computed: str, status: str = "ok") -> dict:
        start, end = (T0 + timedelta(minutes=m) for m in (minutes, minutes + 15))
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "energy_kwh": "100",
            "shown_kg": shown,
            "computed_kg": computed,
            "deviation_kg": "0",
            "allowed_kg": "0.02",
            "status": status,
        }

    save_checks(
        store,
        [
            CheckResult(
                "ECM",
                "ok",
                T0,
                T0 + timedelta(minutes=30),
                intervals=[step(0, "57.03", "57.03"), step(15, "57.02", "57.03")],
            ),
            CheckResult(
                "ECM",
                "mismatch",
                T0 + timedelta(minutes=30),
                T0 + timedelta(minutes=45),
                intervals=[step(30, "60.00", "57.03", "mismatch")],
            ),
        ],
    )
    (summary,) = client.get("/api/v1/meter-checks/summary").json()["items"]
    assert summary["device_id"] == "ECM" and summary["steps"] == 3 and summary["mismatched_steps"] == 1
    assert Decimal(summary["shown_kg"]) == Decimal("174.05") and Decimal(summary["computed_kg"]) == Decimal(
        "171.09"
    )
    assert Decimal(summary["deviation_kg"]) == Decimal("2.96") and summary["latest_status"] == "mismatch"
    assert client.get("/api/v1/meter-checks/summary?device=OTHER").json()["items"] == []


def test_a_command_sent_again_is_answered_again_not_executed_twice(tmp_path):
    from carbonflow.collector.config import config_from_dict
    from carbonflow.messages.c4 import Command

    command = Command(command_id="k1", collector_id="C1", kind="restart", created_at=T0)

    class Transport:
        def __init__(self) -> None:
            self.rounds, self.results = [[command], [command]], []

        async def next_commands(self):
            if not self.rounds:
                await asyncio.Event().wait()  # nothing more: wait to be cancelled
            return self.rounds.pop(0)

        async def send_result(self, result) -> None:
            self.results.append(result)

    config = config_from_dict(
        {
            "id": "C1",
            "secret": SECRET,
            "center": {"url": "http://127.0.0.1:9"},
            "outbox": {"path": str(tmp_path / "o.db")},
        }
    )
    transport = Transport()
    collector = Collector(config, transport=transport)
    runs = []

    async def execute(cmd):
        runs.append(cmd.command_id)
        return "polling restarted"

    collector._execute = execute

    async def main():
        task = asyncio.create_task(collector._command_loop())
        while len(transport.results) < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(main())
    collector.outbox.close()
    assert runs == ["k1"] and [r.status for r in transport.results] == ["acknowledged", "acknowledged"]
    assert transport.results[0] == transport.results[1]


def test_an_mqtt_collector_takes_its_pushed_configuration_from_inside_the_signed_command(tmp_path, store):
    # an MQTT collector has no HTTP center to fetch a version from: the text rides in the signed command
    path = tmp_path / "collector.toml"
    broker = "mqtt://127.0.0.1:1883"
    path.write_text(collector_toml(broker, 7000, tmp_path, version="1", period_s=0.5))
    new = collector_toml(broker, 7000, tmp_path, version="2", period_s=0.25)
    push_collector_config(store, "C1", "2", new, url="/api/v1/collectors/C1/config/2")
    [document] = signed_commands(store, "C1", take_queued_commands(store, "C1"))
    assert document["params"]["text"] == new
    collector = Collector(load_config(path), path)  # not started: no broker needed to take a command
    checks = collector.transport.from_center
    doctored = {**document, "params": {**document["params"], "text": new.replace("0.25", "0.05")}}
    assert checks.command(json.dumps(doctored).encode(), "commands topic") is None  # not the center's
    command = checks.command(json.dumps(document).encode(), "commands topic")

    async def run_it():
        try:
            return await collector.execute(command)
        finally:
            await collector.stop_polling()

    result = asyncio.run(run_it())
    assert result.status == "acknowledged" and "configuration 2 loaded" in result.detail, result
    assert collector.config.config_version == "2" and collector.config.devices[0].period_s == 0.25
    assert path.read_text() == new
    assert 'config_version = "1"' in (tmp_path / "collector.toml.previous").read_text()
    collector.outbox.close()

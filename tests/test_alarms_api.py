"""Alarms over the API (C3) and notifications: the list contract, ack with who/when/note, manual clear,
rules as data with 4xx errors naming the field, live alarms on the WebSocket, the overview tile count —
and notifications delivered to a local SMTP sink and webhook receiver, retried and visible when the
channel is down, never blocking metering."""

from __future__ import annotations

import json
import socket
import threading
import typing
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from services import sqlite_url  # noqa: F401

from carbonflow.center.alarms import EmailChannel, Notifier, WebhookChannel
from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store, create_user
from carbonflow.center.store import alarms as alarm_store

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TOKEN = {"Authorization": "Bearer tok"}
GAP = {
    "id": "gap",
    "kind": "data_gap",
    "min_completeness": 0.9,
    "severity": "minor",
    "notify": ["webhook", "email"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def outcome(k: int, completeness: float = 1.0) -> IntervalOutcome:
    totals = {"generation_carbon_t_per_h": 100.0, "residual_t_per_h": 0.0}
    return IntervalOutcome(T0 + timedelta(minutes=k), True, totals, completeness=completeness)


class Receiver(BaseHTTPRequestHandler):
    received: typing.ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver.received
    server.shutdown()
    server.server_close()


class Sink:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, sink.messages
    controller.stop()


@pytest.fixture
def center(sqlite_url, webhook, smtp):  # noqa: F811
    store = Store.open(sqlite_url)
    create_user(store, "alice", "a long enough password", "operator")  # the API token names her
    settings = CenterSettings(
        database_url=sqlite_url,
        api_tokens={"tok": "alice"},
        maintenance_period_s=0,
        alarm_tick_s=0,
        live_poll_s=0.05,
        alarm_webhook_url=webhook[0],
        alarm_smtp_host="127.0.0.1",
        alarm_smtp_port=smtp[0],
        alarm_email_to="ops@example.org, duty@example.org",
    )
    app = create_app(settings, store=store)
    app.state.alarms.set_rules([GAP])
    with TestClient(app, headers=TOKEN) as client:
        yield app, client
    store.close()


def test_the_alarm_list_follows_the_contract_and_ack_records_who_when_and_a_note(center):
    app, client = center
    app.state.alarms.on_interval(outcome(1, completeness=0.5))
    body = client.get("/api/v1/alarms").json()
    [item] = body["items"]
    contract = [
        "id",
        "rule",
        "severity",
        "state",
        "acknowledged",
        "subject",
        "raised_at",
        "cleared_at",
        "message",
        "image",
    ]
    assert set(contract) <= set(item)
    assert item["rule"] == "gap" and item["state"] == "active" and item["acknowledged"] is False
    assert (
        item["subject"] == {"kind": "center", "id": "metering"}
        and item["raised_at"] == "2026-06-01T08:01:00Z"
    )
    assert body["counts"]["active"] == 1 and body["counts"]["unacknowledged"] == 1

    acked = client.post(f"/api/v1/alarms/{item['id']}/ack", json={"note": "collector rebooting"}).json()
    assert acked["acknowledged"] is True and acked["state"] == "active"
    assert (
        acked["ack"]["by"] == "alice" and acked["ack"]["note"] == "collector rebooting" and acked["ack"]["at"]
    )

    app.state.alarms.on_interval(outcome(2))  # the condition ends: cleared, and still acknowledged
    assert client.get("/api/v1/alarms").json()["items"] == []
    [done] = client.get("/api/v1/alarms?state=cleared").json()["items"]
    assert done["cleared_at"] == "2026-06-01T08:02:00Z" and done["acknowledged"] is True
    assert client.get("/api/v1/alarms?state=all&since=2026-06-01T08:05:00Z").json()["items"] == []
    assert client.get("/api/v1/alarms?state=all&region=AH/HF").json()["items"] == []  # the center has none
    assert client.get("/api/v1/overview").status_code in (200, 404)  # no interval stored: may be 404


def test_an_operator_clears_an_alarm_by_hand(center):
    app, client = center
    app.state.alarms.on_interval(outcome(1, completeness=0.5))
    [item] = client.get("/api/v1/alarms").json()["items"]
    cleared = client.post(f"/api/v1/alarms/{item['id']}/clear", json={"note": "known outage"}).json()
    assert cleared["state"] == "cleared" and "alice" in cleared["detail"]["cleared_by"]
    app.state.alarms.on_interval(outcome(2, completeness=0.5))  # seen again: a new alarm
    assert len(client.get("/api/v1/alarms").json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"id": "x", "kind": "threshold", "above": 5}], "quantity"),
        ({"rules": [{"id": "x", "kind": "comm_loss", "after_s": "soon"}]}, "after_s"),
        ([{"id": "x", "kind": "data_gap", "min_completeness": 2}], "min_completeness"),
        ("not rules", "rules"),
    ],
)
def test_bad_rules_are_a_422_naming_the_field_and_change_nothing(center, body, field):
    _app, client = center
    response = client.put("/api/v1/alarm-rules", json=body)
    assert response.status_code == 422
    error = response.json()
    assert field in error["error"] and error["detail"]["field"] == field
    assert [r["id"] for r in client.get("/api/v1/alarm-rules").json()["items"]] == ["gap"]


def test_rules_round_trip_and_errors_are_json(center):
    _app, client = center
    rules = client.get("/api/v1/alarm-rules").json()
    assert rules["source"] == "stored" and rules["items"][0]["min_completeness"] == 0.9
    rules["items"][0]["min_completeness"] = 0.5
    assert client.put("/api/v1/alarm-rules", json=rules["items"]).status_code == 200
    assert client.get("/api/v1/alarm-rules").json()["items"][0]["min_completeness"] == 0.5
    for path, status in (("/api/v1/alarms/999/ack", 404), ("/api/v1/alarms/abc/ack", 422)):
        response = client.post(path, json={})
        assert response.status_code == status and "error" in response.json()
    assert client.get("/api/v1/alarms?state=bogus").status_code == 422
    assert client.get("/api/v1/alarms?since=yesterday").status_code == 400
    with TestClient(_app) as anonymous:
        assert anonymous.get("/api/v1/alarms").status_code == 401


def test_live_socket_pushes_raised_and_cleared_alarms(center):
    app, client = center
    with client.websocket_connect("/api/v1/live?token=tok") as live:
        app.state.alarms.on_interval(outcome(1, completeness=0.5))
        message = live.receive_json()
        assert message["type"] == "alarms" and message["counts"]["active"] == 1
        assert message["items"][0]["state"] == "active"
        app.state.alarms.on_interval(outcome(2))
        message = live.receive_json()
        assert message["counts"]["active"] == 0 and message["items"][0]["state"] == "cleared"


def test_notifications_reach_the_smtp_sink_and_the_webhook(center, webhook, smtp):
    app, client = center
    app.state.alarms.on_interval(outcome(1, completeness=0.5))
    app.state.alarms.on_interval(outcome(2))
    report = app.state.notifier.send_due()
    assert report.sent == 4 and report.errors == []
    events = [(item["event"], item["alarm"]["rule"], item["alarm"]["state"]) for item in webhook[1]]
    assert events == [("raised", "gap", "active"), ("cleared", "gap", "cleared")]
    recipients, mail = smtp[1][0]
    assert recipients == ["ops@example.org", "duty@example.org"]
    assert "minor alarm raised: gap center metering" in mail["Subject"]
    assert "not metered" in mail.get_payload() or "measured" in mail.get_payload()
    sent = client.get("/api/v1/alarm-notifications?status=sent").json()["items"]
    assert len(sent) == 4 and all(n["attempts"] == 1 for n in sent)


def test_a_channel_that_is_down_is_retried_visibly_and_never_blocks_metering(sqlite_url):  # noqa: F811
    store = Store.open(sqlite_url)
    try:
        closed = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
        channels = {
            "webhook": WebhookChannel(closed, timeout_s=0.5),
            "email": EmailChannel("127.0.0.1", ["a@b"], port=free_port(), timeout_s=0.5),
        }
        app = create_app(
            CenterSettings(database_url=sqlite_url, maintenance_period_s=0, alarm_tick_s=0), store=store
        )
        engine = app.state.alarms
        engine.channels = set(channels)
        engine.set_rules([GAP])
        evaluation = engine.on_interval(outcome(1, completeness=0.5))  # metering's side: queued only
        assert evaluation.raised and evaluation.error is None
        queued = alarm_store.list_notifications(store, status="queued")
        assert len(queued) == 2 and all(n["attempts"] == 0 for n in queued)

        now = [datetime.now(UTC)]
        notifier = Notifier(store, channels, max_attempts=3, backoff_s=10, clock=lambda: now[0])
        first = notifier.send_due()
        assert first.retried == 2 and first.sent == 0
        again = alarm_store.list_notifications(store, status="queued")
        assert all(n["attempts"] == 1 and n["last_error"] for n in again)
        assert notifier.send_due().retried == 0  # backing off: nothing due yet
        now[0] += timedelta(seconds=11)
        assert notifier.send_due().retried == 2
        now[0] += timedelta(seconds=21)
        assert notifier.send_due().failed == 2
        failed = alarm_store.list_notifications(store, status="failed")
        assert len(failed) == 2 and all(n["attempts"] == 3 for n in failed)
        assert {n["channel"] for n in failed} == {"webhook", "email"}
    finally:
        store.close()


def test_a_notifier_without_channels_looks_rarely_and_still_fails_what_was_queued_for_one(sqlite_url):  # noqa: F811
    """A center without notification channels (every center of the demo cascade) does not query the
    queue every second; a notification queued while a channel was configured is still marked failed."""
    store = Store.open(sqlite_url)
    try:
        app = create_app(
            CenterSettings(database_url=sqlite_url, maintenance_period_s=0, alarm_tick_s=0), store=store
        )
        engine = app.state.alarms
        engine.channels = {"webhook"}  # configured when the alarm was raised, gone at the restart
        engine.set_rules([GAP])
        assert engine.on_interval(outcome(1, completeness=0.5)).raised
        assert len(alarm_store.list_notifications(store, status="queued")) == 1

        without = Notifier(store, {}, max_attempts=1)
        with_one = Notifier(store, {"webhook": WebhookChannel("http://127.0.0.1:9/hook", timeout_s=0.5)})
        assert without.period_s == Notifier.PERIOD_WITHOUT_CHANNELS_S >= 60 * with_one.period_s
        report = without.send_due()
        assert report.failed == 1 and "not configured" in report.errors[0]
        assert alarm_store.list_notifications(store, status="queued") == []
    finally:
        store.close()


def status_batch(seq: int, online: bool, at: datetime) -> bytes:
    from carbonflow.messages.c4 import Batch, DeviceStatus

    status = DeviceStatus(device="EM-1", online=online, last_seen=at, error=None if online else "no answer")
    batch = Batch(
        collector_id="C1",
        batch_id=f"status-batch-{seq}",
        seq=seq,
        created_at=at,
        readings=[],
        statuses=[status],
    )
    return batch.signed(b"s3cret").model_dump_json().encode()


def test_a_device_status_arriving_through_ingest_raises_and_clears_comm_loss(center):
    from carbonflow.center.store import register_devices, upsert_collector

    app, client = center
    store = app.state.store
    upsert_collector(store, "C1", "s3cret")
    register_devices(
        store,
        [{"id": "EM-1", "kind": "energy_meter", "protocol": "dlt645", "bus": "U1", "region": "AH/HF",
          "endpoint": {"host": "127.0.0.1", "port": 1}, "address": {"address": "1"}, "points": []}],
        collector_id="C1",
    )  # fmt: skip
    app.state.alarms.set_rules([{"id": "loss", "kind": "comm_loss", "after_s": 600}])
    app.state.alarms.clock = lambda: T0 + timedelta(minutes=5)
    assert client.post("/api/v1/ingest", content=status_batch(1, False, T0)).status_code == 200
    [alarm] = client.get("/api/v1/alarms").json()["items"]
    assert alarm["subject"] == {"kind": "device", "id": "EM-1"} and "offline" in alarm["message"]
    assert alarm["region"] == "AH/HF"
    later = T0 + timedelta(minutes=5)
    assert client.post("/api/v1/ingest", content=status_batch(2, True, later)).status_code == 200
    assert client.get("/api/v1/alarms").json()["items"] == []

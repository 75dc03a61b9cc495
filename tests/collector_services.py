"""Service fixtures for the collector tests: a small real HTTP center (FastAPI + uvicorn in a thread)
that verifies signatures, stores batches idempotently and answers Acks, and the real Mosquitto broker
at 127.0.0.1:1883 with a test-side "center" subscriber (skipped locally when the broker is missing;
under CI=true a missing broker fails the test).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from carbonflow.collector.config import LoadedConfig, config_from_dict
from carbonflow.devices.base import DeviceClock
from carbonflow.messages.c4 import Ack, Batch, Command, CommandResult
from carbonflow.messages.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    document_content,
    document_signature_ok,
    request_body,
    sign_document,
    signature_ok,
)

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
SECRET = "test-secret-0123456789"


START = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


class FakeTime:
    """True time moved by hand, so the meters' energy registers are exact."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def fake_clock(time: FakeTime) -> DeviceClock:
    return DeviceClock(now_fn=time, _epoch=time.now)


def config(devices: list[dict], tmp_path, center_url: str = "http://127.0.0.1:9", **extra) -> LoadedConfig:
    document = {
        "id": "c1",
        "secret": SECRET,
        "center": {"url": center_url, "command_poll_s": 0.2, "backoff_min_s": 0.05, "backoff_max_s": 0.2},
        "defaults": {"period_s": 0.2, "offline_after": 2, "timeout_s": 1.0, "retries": 0},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "batch_max_age_s": 0.1},
        "devices": devices,
    }
    for key, value in extra.items():
        document[key] = {**document.get(key, {}), **value}
    return config_from_dict(document)


async def eventually(condition, timeout_s: float = 60.0) -> bool:
    """Wait (in the loop) for a condition; returns whether it came true.  Not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    """Poll a condition (for threads); returns whether it came true.  Not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


@dataclass
class CenterRecord:
    """What the test center stored, as a real center would: once per batch_id and per (point, ts)."""

    batches: dict[str, Batch] = field(default_factory=dict)  # batch_id -> first accepted copy
    readings: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (point, ts) -> value
    qualities: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)
    posts: int = 0  # every ingest request, replays included
    posted_ids: list[str] = field(default_factory=list)  # batch_id of every stored-or-replayed request
    rejected_ids: list[str] = field(default_factory=list)  # batch_id of every request answered 4xx
    replays: int = 0
    commands: list[Command] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self, batch: Batch) -> Ack:
        with self.lock:
            self.posts += 1
            self.posted_ids.append(batch.batch_id)
            if batch.batch_id in self.batches:
                self.replays += 1
                return Ack(
                    batch_id=batch.batch_id, accepted=0, duplicates=len(batch.readings), duplicate_batch=True
                )
            accepted = duplicates = 0
            for reading in batch.readings:
                key = (reading.point, reading.ts.isoformat())
                if key in self.readings:
                    duplicates += 1
                else:
                    self.readings[key] = reading.value
                    self.qualities[key] = reading.quality
                    accepted += 1
            self.statuses.extend(s.model_dump(mode="json") for s in batch.statuses)
            self.batches[batch.batch_id] = batch
            return Ack(batch_id=batch.batch_id, accepted=accepted, duplicates=duplicates)


def queue_command(record: CenterRecord, kind: str, device: str | None = None, **params) -> Command:
    command = Command(
        command_id=str(uuid.uuid4()),
        collector_id="c1",
        kind=kind,
        device=device,
        params=params,
        created_at=datetime.now(UTC),
    )
    with record.lock:
        record.commands.append(command)
    return command


def request_signed(request: Request, body: bytes, secret: bytes) -> bool:
    """A collector request's signature (purpose ``request``) checks out."""
    headers = request.headers
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return signature_ok(
        secret,
        "request",
        headers.get(SIGNED_AT_HEADER),
        headers.get(NONCE_HEADER),
        request_body(request.method, target, body),
        headers.get(SIGNATURE_HEADER),
    )


class HttpCenter:
    """A real HTTP server on 127.0.0.1 speaking the center's side of C4; can be stopped and restarted
    on the same port (a center that goes down and comes back) or switched to reject batches."""

    def __init__(self, secret: str = SECRET, port: int | None = None) -> None:
        self.secret = secret.encode()
        self.port = port or free_port()
        self.record = CenterRecord()
        self.reject_with: int | None = None  # answer every ingest with this status (e.g. 422)
        self.hang_s: float = 0.0  # store the batch, then hang this long and answer 503: the Ack is lost
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()
        record = self.record

        @app.post("/api/v1/ingest")
        async def ingest(request: Request):
            raw = await request.body()
            if self.reject_with is not None:
                with record.lock:
                    record.rejected_ids.append(Batch.model_validate_json(raw).batch_id)
                return JSONResponse(
                    {"error": "rejected by the test", "detail": {"reading": 0}}, status_code=self.reject_with
                )
            try:
                batch = Batch.model_validate_json(raw)
            except ValueError as error:
                return JSONResponse({"error": "schema", "detail": str(error)[:200]}, status_code=422)
            if not batch.verify(self.secret):
                return JSONResponse({"error": "bad signature"}, status_code=401)
            ack = record.store(batch)
            if self.hang_s:
                await asyncio.sleep(self.hang_s)
                return JSONResponse({"error": "gave up"}, status_code=503)
            return JSONResponse(ack.model_dump())

        @app.get("/api/v1/collectors/{collector_id}/commands")
        async def commands(collector_id: str, request: Request):
            if not request_signed(request, b"", self.secret):
                return JSONResponse({"error": "bad signature"}, status_code=401)
            with record.lock:
                queued, record.commands = record.commands, []
            return [sign_document(c.model_dump(mode="json"), self.secret, "command") for c in queued]

        @app.post("/api/v1/collectors/{collector_id}/command-results")
        async def results(collector_id: str, request: Request):
            raw = await request.body()
            if not request_signed(request, raw, self.secret):
                return JSONResponse({"error": "bad signature"}, status_code=401)
            with record.lock:
                record.results.append(CommandResult.model_validate_json(raw))
            return {"ok": True}

        return app

    def start(self) -> HttpCenter:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        if not wait_until(lambda: self._server is not None and self._server.started, 10):
            raise RuntimeError("test center did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(10)
            self._server = None


@pytest.fixture
def http_center() -> Iterator[HttpCenter]:
    center = HttpCenter().start()
    yield center
    center.stop()


# -- MQTT ------------------------------------------------------------------------------------------
def mosquitto_available() -> bool:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    if not mosquitto_available():
        reason = f"Mosquitto is not running at {MQTT_HOST}:{MQTT_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the broker is required)")
        pytest.skip(reason)
    return MQTT_HOST, MQTT_PORT


class MqttCenter:
    """The center's side over the real broker: persistent session, stores batches, THEN publishes Acks."""

    def __init__(self, collector_id: str, secret: str = SECRET) -> None:
        import paho.mqtt.client as mqtt

        self.collector_id = collector_id
        self.secret = secret.encode()
        self.record = CenterRecord()
        self.results: list[CommandResult] = []
        self.status_messages: list[dict] = []
        self.acking = True  # False: store nothing and answer nothing (a center that is down)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-center-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self._subscribed.set()

    def start(self) -> MqttCenter:
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()
        prefix = f"carbonflow/{self.collector_id}"
        self.client.subscribe(
            [(f"{prefix}/readings", 1), (f"{prefix}/status", 1), (f"{prefix}/command-results", 1)]
        )
        assert self._subscribed.wait(5), "test center could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send_command(self, command: Command) -> None:
        signed = sign_document(command.model_dump(mode="json"), self.secret, "command")
        self.client.publish(f"carbonflow/{self.collector_id}/commands", json.dumps(signed), qos=1)

    def _on_message(self, client, userdata, message) -> None:
        topic = message.topic
        if topic.endswith("/readings"):
            if not self.acking:
                return
            batch = Batch.model_validate_json(message.payload)
            if not batch.verify(self.secret):
                return
            ack = self.record.store(batch)
            client.publish(f"carbonflow/{self.collector_id}/acks", ack.model_dump_json(), qos=1)
        elif topic.endswith("/command-results"):
            document = json.loads(message.payload)
            if document_signature_ok(document, self.secret, "command-result"):
                self.results.append(CommandResult.model_validate(document_content(document)))
        elif topic.endswith("/status"):
            self.status_messages.append(json.loads(message.payload))


def forget_session(client_id: str) -> None:
    """Drop a persistent session a test left on the broker (connect once with clean_session=True)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(MQTT_HOST, MQTT_PORT)
        client.loop(0.2)
        client.disconnect()
    except OSError:
        pass

"""Messages signed and fresh both ways (issue 15 §2, docs/message-signing.md).

Collector → center: for every kind (batch, image, command result over HTTP and MQTT, signed GET
requests) a replayed, a stale and a forged message is refused with a 401 naming why, and audited.
Center → collector: forged, stale and replayed commands are ignored by the collector (HTTP polling and a
real Mosquitto); a pushed configuration is fetched only from the collector's own center and only when
the center signed it.  A batch refused for freshness stays in the outbox and goes again, re-signed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from collector_services import MQTT_HOST, MQTT_PORT, forget_session, mqtt_broker  # noqa: F401
from fastapi.testclient import TestClient
from test_store import T0, batch, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.ingest.images import answer_image_envelope
from carbonflow.center.ingest.receive import receive_command_result
from carbonflow.center.store import (
    BadSignatureError,
    StaleMessageError,
    Store,
    create_user,
    list_commands,
    queue_command,
    register_devices,
)
from carbonflow.collector.config import config_from_dict
from carbonflow.collector.from_center import FromCenter
from carbonflow.collector.outbox import Outbox
from carbonflow.collector.remote_config import config_url, fetch_config_text
from carbonflow.collector.transport import MqttTransport
from carbonflow.delivery import DeliveryLoop, classify_status
from carbonflow.messages.c4 import Command, CommandResult, Reading
from carbonflow.messages.collector_config import ConfigError
from carbonflow.messages.images import (
    CAMERA_HEADER,
    COLLECTOR_HEADER,
    SHA256_HEADER,
    TS_HEADER,
    ImageEnvelope,
    image_headers,
    sha256_hex,
    sign_image,
)
from carbonflow.messages.signing import (
    FRESHNESS_WINDOW,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    canonical_json,
    request_body,
    request_headers,
    sign_document,
    signature_of,
)

SECRET = b"secret-1"  # test_store.seed gives collector C1 this secret
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
IMAGE_TS = "2025-06-01T16:00:00.000Z"


def old_stamp() -> tuple[str, str]:
    """A stamp from before the 5-minute window, with a nonce never used."""
    return (datetime.now(UTC) - timedelta(minutes=10)).isoformat(), uuid.uuid4().hex


@pytest.fixture
def center(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    seed(store)
    register_devices(
        store,
        [{"id": "CAM-1", "kind": "camera", "protocol": "camera-http", "endpoint": {"host": "x", "port": 1}}],
        collector_id="C1",
    )
    settings = CenterSettings(database_url="sqlite://", image_dir=str(tmp_path / "images"))
    with TestClient(create_app(settings, store=store)) as client:
        yield client, store
    store.close()


def refusals(store: Store) -> list[tuple[str, str]]:
    """(kind, reason) of every audited refusal of a collector message, oldest first."""
    with store.read() as connection:
        rows = connection.exec_driver_sql(
            "SELECT object, detail FROM audit WHERE action = 'collector.refused' ORDER BY id"
        ).all()
    return [(target, json.loads(detail)["reason"]) for target, detail in rows]


def assert_refused(response: httpx.Response, words: str) -> None:
    assert response.status_code == 401, response.text
    assert words in response.json()["error"], response.json()


# -- collector -> center ---------------------------------------------------------------------------


def test_batches_replayed_stale_or_forged_are_refused_and_audited(center):
    client, store = center
    content = batch("fresh-0001", [("EM-U1/1", 0, "1206.42")])
    body = content.signed(SECRET).model_dump_json()
    assert client.post("/api/v1/ingest", content=body).status_code == 200
    assert_refused(client.post("/api/v1/ingest", content=body), "replayed")
    signed_at, nonce = old_stamp()
    signature = signature_of(SECRET, "batch", signed_at, nonce, content.canonical())
    stale = content.model_copy(update={"signed_at": signed_at, "nonce": nonce, "signature": signature})
    assert_refused(client.post("/api/v1/ingest", content=stale.model_dump_json()), "stale")
    forged = content.signed(b"not-the-secret").model_dump_json()
    assert_refused(client.post("/api/v1/ingest", content=forged), "collector authentication failed")
    unstamped = content.model_copy(
        update={"signature": signature_of(SECRET, "batch", "", "", content.canonical())}
    )
    assert_refused(client.post("/api/v1/ingest", content=unstamped.model_dump_json()), "sent_at and nonce")
    # the same content signed anew is a resend: acknowledged as a duplicate, not refused
    resend = client.post("/api/v1/ingest", content=content.signed(SECRET).model_dump_json())
    assert resend.status_code == 200 and resend.json()["duplicate_batch"] is True
    assert [reason for _, reason in refusals(store)] == ["replayed", "stale", "bad signature", "unfresh"]


def test_a_batch_refused_as_stale_stays_in_the_outbox_and_goes_again_re_signed(center, tmp_path):
    client, _store = center
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        outbox.append([Reading(point="EM-U1/1", ts=T0, value="1.5")])
        outbox.form_batch("C1", SECRET, 10, 0, force=True)
        loop = DeliveryLoop(outbox, None, backoff_min_s=1, backoff_max_s=1)  # type: ignore[arg-type]
        [queued] = outbox.unacked()
        # it waited out an outage: its first stamp is long past (as if signed then)
        signed_at, nonce = old_stamp()
        content = json.loads(queued.body)
        signature = signature_of(SECRET, "batch", signed_at, nonce, canonical_json(content))
        late = json.dumps({**content, "signed_at": signed_at, "nonce": nonce, "signature": signature})
        refused = client.post("/api/v1/ingest", content=late)
        assert loop.settle(queued, classify_status(refused.status_code, refused.text))  # back off, keep
        assert outbox.stats().batches == 1 and outbox.dead_letters() == []
        again = client.post("/api/v1/ingest", content=outbox.unacked()[0].signed_body(SECRET))
        assert again.status_code == 200 and again.json()["accepted"] == 1
        outbox.acknowledge(queued.batch_id)
        assert outbox.stats().batches == 0


def _image_post(client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/api/v1/images", content=PNG, headers={"Content-Type": "image/png", **headers})


def test_images_replayed_stale_or_forged_are_refused_and_audited(center):
    client, store = center
    digest = sha256_hex(PNG)
    headers = image_headers(SECRET, "C1", "CAM-1", IMAGE_TS, digest)
    assert _image_post(client, headers).status_code == 200
    assert_refused(_image_post(client, headers), "replayed")
    signed_at, nonce = old_stamp()
    stale = {
        **headers,
        SIGNED_AT_HEADER: signed_at,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign_image(SECRET, "C1", "CAM-1", IMAGE_TS, digest, signed_at, nonce),
    }
    assert_refused(_image_post(client, stale), "stale")
    forged = image_headers(b"not-the-secret", "C1", "CAM-1", IMAGE_TS, digest)
    assert_refused(_image_post(client, forged), "collector authentication failed")
    resent = _image_post(client, image_headers(SECRET, "C1", "CAM-1", IMAGE_TS, digest))
    assert resent.status_code == 200 and resent.json()["duplicate"] is True
    assert {COLLECTOR_HEADER, CAMERA_HEADER, TS_HEADER, SHA256_HEADER} <= set(headers)
    assert [reason for _, reason in refusals(store)] == ["replayed", "stale", "bad or missing signature"]


def test_an_image_envelope_over_mqtt_refused_gets_no_error_ack_so_the_collector_keeps_it(center):
    client, store = center
    images = client.app.state.images
    envelope = ImageEnvelope.build(SECRET, "C1", "CAM-1", IMAGE_TS, PNG, "image/png").model_dump_json()
    assert json.loads(answer_image_envelope(images, "C1", envelope))["error"] is None
    # an error ImageAck would make the collector drop the image: a freshness refusal raises instead
    # (the MQTT worker answers it on rejects), and the collector sends the image again, signed anew
    with pytest.raises(StaleMessageError, match="replayed"):
        answer_image_envelope(images, "C1", envelope)
    again = ImageEnvelope.build(SECRET, "C1", "CAM-1", IMAGE_TS, PNG, "image/png").model_dump_json()
    assert json.loads(answer_image_envelope(images, "C1", again))["duplicate"] is True
    forged = ImageEnvelope.build(b"forger", "C1", "CAM-1", IMAGE_TS, PNG, "image/png").model_dump_json()
    with pytest.raises(BadSignatureError, match="authentication failed"):  # a 401 over HTTP: kept too
        answer_image_envelope(images, "C1", forged)
    assert [reason for _, reason in refusals(store)] == ["replayed", "bad or missing signature"]


def test_a_captured_get_commands_request_cannot_be_replayed(center):
    client, store = center
    command = queue_command(store, "C1", "time_sync", device_id="EM-U1")
    path = "/api/v1/collectors/C1/commands"
    headers = request_headers(SECRET, "GET", path)
    assert [c["command_id"] for c in client.get(path, headers=headers).json()] == [command.command_id]
    assert_refused(client.get(path, headers=headers), "replayed")
    signed_at, nonce = old_stamp()
    stale = {
        SIGNED_AT_HEADER: signed_at,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature_of(SECRET, "request", signed_at, nonce, request_body("GET", path, b"")),
    }
    assert_refused(client.get(path, headers=stale), "stale")
    assert_refused(client.get(path, headers=request_headers(b"guess", "GET", path)), "authentication failed")
    other = request_headers(SECRET, "GET", path + "?all=1")  # the query is signed: not for this path
    assert_refused(client.get(path, headers=other), "authentication failed")
    assert [reason for _, reason in refusals(store)][:2] == ["replayed", "stale"]
    assert [reason for _, reason in refusals(store)][2:] == ["bad or missing X-Carbonflow-Signature"] * 2


def _result(store: Store) -> CommandResult:
    command = queue_command(store, "C1", "read_now", device_id="EM-U1")
    return CommandResult(command_id=command.command_id, status="acknowledged", finished_at=datetime.now(UTC))


def test_command_results_over_http_replayed_stale_or_forged_are_refused(center):
    client, store = center
    path = "/api/v1/collectors/C1/command-results"
    body = _result(store).model_dump_json().encode()
    headers = request_headers(SECRET, "POST", path, body)
    assert client.post(path, content=body, headers=headers).status_code == 200
    assert_refused(client.post(path, content=body, headers=headers), "replayed")
    signed_at, nonce = old_stamp()
    stale = {
        SIGNED_AT_HEADER: signed_at,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature_of(SECRET, "request", signed_at, nonce, request_body("POST", path, body)),
    }
    assert_refused(client.post(path, content=body, headers=stale), "stale")
    forged = request_headers(b"guess", "POST", path, body)
    assert_refused(client.post(path, content=body, headers=forged), "authentication failed")
    assert [reason for _, reason in refusals(store)][:2] == ["replayed", "stale"]


def test_command_results_over_mqtt_replayed_stale_or_forged_are_refused_and_audited(center):
    _client, store = center
    result = _result(store)
    document = sign_document(result.model_dump(mode="json"), SECRET, "command-result")
    receive_command_result(store, "C1", json.dumps(document))
    assert list_commands(store)[0]["status"] == "acknowledged"
    with pytest.raises(StaleMessageError, match="replayed"):
        receive_command_result(store, "C1", json.dumps(document))
    signed_at, nonce = old_stamp()
    content = result.model_dump(mode="json")
    signature = signature_of(SECRET, "command-result", signed_at, nonce, canonical_json(content))
    stale = {**content, "signed_at": signed_at, "nonce": nonce, "signature": signature}
    with pytest.raises(StaleMessageError, match="stale"):
        receive_command_result(store, "C1", json.dumps(stale))
    forged = sign_document(content, b"guess", "command-result")
    with pytest.raises(Exception, match="collector authentication failed"):
        receive_command_result(store, "C1", json.dumps(forged))
    # a collector's status report cannot pass for a command result (the purpose is signed)
    reflected = sign_document(content, SECRET, "status")
    with pytest.raises(Exception, match="collector authentication failed"):
        receive_command_result(store, "C1", json.dumps(reflected))
    assert [r for _, r in refusals(store)] == ["replayed", "stale", "bad or missing signature"] * 1 + [
        "bad or missing signature"
    ]


# -- center -> collector ---------------------------------------------------------------------------


def _command(kind: str = "read_now") -> dict:
    return Command(
        command_id=uuid.uuid4().hex, collector_id="C1", kind=kind, created_at=datetime.now(UTC)
    ).model_dump(mode="json")


def test_the_collector_ignores_forged_stale_and_replayed_commands():
    checks = FromCenter(SECRET)
    genuine = sign_document(_command(), SECRET, "command")
    assert checks.command(genuine, "test") is not None
    assert checks.command(genuine, "test") is None  # replayed
    signed_at, nonce = old_stamp()
    content = _command()
    stale = {
        **content,
        "signed_at": signed_at,
        "nonce": nonce,
        "signature": signature_of(SECRET, "command", signed_at, nonce, canonical_json(content)),
    }
    assert checks.command(stale, "test") is None
    assert checks.command(sign_document(_command(), b"forger", "command"), "test") is None
    assert checks.command(_command(), "test") is None  # unsigned
    # a message the collector itself signed (same secret) cannot come back as a command
    assert checks.command(sign_document(_command(), SECRET, "command-result"), "test") is None
    assert checks.refused == 5


def test_a_command_captured_before_a_collector_restart_cannot_be_replayed_after_it(tmp_path):
    genuine = sign_document(_command(), SECRET, "command")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    assert FromCenter(SECRET, outbox).command(genuine, "before") is not None
    outbox.close()
    restarted = Outbox(tmp_path / "outbox.sqlite")  # the collector's process started again
    checks = FromCenter(SECRET, restarted)
    assert checks.command(genuine, "after") is None and checks.refused == 1  # replayed
    assert checks.command(sign_document(_command(), SECRET, "command"), "after") is not None
    # nonces older than twice the window are forgotten, in the file too
    later = datetime.now(UTC) + 3 * FRESHNESS_WINDOW
    restarted.record_nonce("n-later", later, later - 2 * FRESHNESS_WINDOW)
    assert [nonce for nonce, _ in restarted.nonces_since(datetime(2000, 1, 1, tzinfo=UTC))] == ["n-later"]
    restarted.close()


def test_commands_polled_over_http_are_signed_by_the_center(center):
    client, store = center
    queue_command(store, "C1", "read_now", device_id="EM-U1")
    path = "/api/v1/collectors/C1/commands"
    [document] = client.get(path, headers=request_headers(SECRET, "GET", path)).json()
    checks = FromCenter(SECRET)
    assert checks.command(document, "GET") is not None
    assert checks.command(document, "GET") is None  # a captured answer replayed to the collector


def _collector_config(url: str, tmp_path) -> object:
    data = {
        "id": "C1",
        "secret": SECRET.decode(),
        "center": {"url": url},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "devices": [],
    }
    return config_from_dict(data, "test", tmp_path)


def test_a_configuration_url_to_another_host_or_endpoint_is_refused(tmp_path):
    config = _collector_config("http://center.example:8000", tmp_path)
    own = config_url(config, "7", "/api/v1/collectors/C1/config/7")
    assert own == "http://center.example:8000/api/v1/collectors/C1/config/7"
    assert config_url(config, "7", "http://center.example:8000/api/v1/collectors/C1/config/7") == own
    for url in (
        "http://evil.example/api/v1/collectors/C1/config/7",
        "https://center.example:8000/api/v1/collectors/C1/config/7",  # other scheme: other origin
        "http://center.example:9000/api/v1/collectors/C1/config/7",
        "//evil.example/api/v1/collectors/C1/config/7",
        "/api/v1/collectors/C1/commands",  # a signed GET of another endpoint
        "/api/v1/collectors/C2/config/7",
        "/api/v1/collectors/C1/config/../commands",
    ):
        with pytest.raises(ConfigError, match="refused"):
            config_url(config, "7", url)


def test_a_pushed_configuration_must_carry_the_centers_signature(center, tmp_path, monkeypatch):
    client, store = center
    text = (
        'id = "C1"\nsecret = "secret-1"\n[center]\nurl = "http://testserver"\n'
        '[[devices]]\nid = "ECM"\nprotocol = "dlt698"\nendpoint = "127.0.0.1:7000"\n'
        'address = "220100000001"\npoints = [{ name = "e", oad = "00100200" }]\n'
    )
    pushed = client.post("/api/v1/collectors/C1/config", content=text, headers=_operator(client, store))
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    config = _collector_config("http://testserver", tmp_path)
    forger: list[bytes] = []  # empty: the center answers as it is; else a forger re-signs its answer

    def handler(request: httpx.Request) -> httpx.Response:
        answer = client.get(request.url.raw_path.decode(), headers=dict(request.headers))
        headers = {k: v for k, v in answer.headers.items() if k.startswith("x-carbonflow")}
        if forger:
            signed_at, nonce = datetime.now(UTC).isoformat(), uuid.uuid4().hex
            body = answer.content.replace(b"ECM", b"EVIL")
            headers = {
                SIGNED_AT_HEADER: signed_at,
                NONCE_HEADER: nonce,
                SIGNATURE_HEADER: signature_of(forger[0], "config", signed_at, nonce, body),
            }
            return httpx.Response(200, content=body, headers=headers)
        return httpx.Response(answer.status_code, content=answer.content, headers=headers)

    real_client = httpx.AsyncClient
    monkeypatch.setattr(
        httpx, "AsyncClient", lambda **kwargs: real_client(transport=httpx.MockTransport(handler), **kwargs)
    )
    assert 'id = "ECM"' in asyncio.run(fetch_config_text(config, version))
    forger.append(b"forger-key")
    with pytest.raises(ConfigError, match="not signed by the center"):
        asyncio.run(fetch_config_text(config, version))


def _operator(client, store) -> dict[str, str]:
    create_user(store, "op", "a-long-password-42", "operator")
    token = client.post("/api/v1/login", json={"name": "op", "password": "a-long-password-42"}).json()
    return {"Authorization": f"Bearer {token['token']}"}


def test_a_forged_command_over_mqtt_is_ignored_by_the_collector(mqtt_broker, tmp_path):  # noqa: F811
    import paho.mqtt.client as mqtt

    collector_id = f"fresh-{uuid.uuid4().hex[:8]}"
    data = {
        "id": collector_id,
        "secret": SECRET.decode(),
        "center": {"url": f"mqtt://{MQTT_HOST}:{MQTT_PORT}", "request_timeout_s": 5},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "devices": [],
    }
    transport = MqttTransport(config_from_dict(data, "test", tmp_path))
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"forger-{uuid.uuid4().hex[:8]}")
    publisher.connect(MQTT_HOST, MQTT_PORT)
    publisher.loop_start()
    topic = f"carbonflow/{collector_id}/commands"

    def command(secret: bytes) -> tuple[str, str]:
        content = {**_command(), "collector_id": collector_id}
        return content["command_id"], json.dumps(sign_document(content, secret, "command"))

    async def run() -> list[str]:
        await transport.start()
        try:
            forged_id, forged = command(b"forger")
            _, genuine = command(SECRET)
            for payload in (forged, genuine, genuine):  # forged, then genuine, then its replay
                publisher.publish(topic, payload, qos=1).wait_for_publish(5)
            received = await asyncio.wait_for(transport.next_commands(), 10)
            await asyncio.sleep(0.5)  # the replay and the forgery had their chance to arrive
            while not transport._commands.empty():
                received.append(transport._commands.get_nowait())
            assert forged_id not in [c.command_id for c in received]
            return [c.command_id for c in received]
        finally:
            await transport.stop()

    try:
        received = asyncio.run(run())
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        forget_session(transport.client_id)
    assert len(received) == 1 and transport.from_center.refused == 2  # the forgery and the replay

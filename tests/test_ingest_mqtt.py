"""MQTT ingest (C4, production transport) against the real Mosquitto on localhost, on both databases.

Each test uses its own topic prefix and client ids, so parallel runs and other tests on the same broker
never see each other's messages; the center's persistent session is removed at the end.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from services import database_url, mqtt_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import func, select
from test_ingest_http import SECRET
from test_store import batch, seed

from carbonflow.center.ingest import MqttIngest
from carbonflow.center.ingest.mqtt import _AcksInOrder, parse_broker_url
from carbonflow.center.store import count_readings, list_commands, queue_command
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Collector, Device
from carbonflow.center.store.verify import verify
from carbonflow.messages.c4 import CommandResult
from carbonflow.messages.signing import document_signature_ok, sign_document

WAIT_S = 20.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class FakeCollector:
    """The collector's side of the topics: publishes batches QoS 1, collects acks, rejects, commands."""

    def __init__(self, url: str, prefix: str, collector_id: str = "C1") -> None:
        address = parse_broker_url(url)
        self.prefix, self.collector_id = prefix, collector_id
        self.received: dict[str, list[dict]] = {"acks": [], "rejects": [], "commands": []}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-collector", clean_session=True
        )
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(f"{prefix}/{collector_id}/{k}", 1) for k in self.received]
        )
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT_S), "collector could not subscribe"

    def _on_message(self, _client, _userdata, message) -> None:
        with self.lock:
            self.received[message.topic.rsplit("/", 1)[1]].append(json.loads(message.payload))

    def publish(self, kind: str, payload: bytes) -> None:
        info = self.client.publish(f"{self.prefix}/{self.collector_id}/{kind}", payload, qos=1)
        info.wait_for_publish(WAIT_S)  # PUBACK from the broker: it now holds the message for the center

    def count(self, kind: str) -> int:
        with self.lock:
            return len(self.received[kind])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_setup(store, mqtt_url) -> Iterator[tuple[MqttIngest, FakeCollector]]:  # noqa: F811
    seed(store)
    prefix = f"cftest-{uuid.uuid4().hex[:10]}"
    center = MqttIngest(
        mqtt_url, store, client_id=f"{prefix}-center", topic_prefix=prefix, command_poll_s=0.1
    )
    collector = FakeCollector(mqtt_url, prefix)
    try:
        yield center, collector
    finally:
        center.stop()
        collector.close()
        center.forget_session()


def signed(batch_id: str, minutes: range, seq: int = 1) -> bytes:
    return (
        batch(batch_id, [("EM-U1/1", m, f"{m}.25") for m in minutes], seq=seq)
        .signed(SECRET)
        .model_dump_json()
        .encode()
    )


def test_batches_are_stored_then_acked_and_replays_are_duplicates(mqtt_setup, store):  # noqa: F811
    center, collector = mqtt_setup
    center.start()
    for k in range(3):
        collector.publish("readings", signed(f"batch-000{k}", range(10 * k, 10 * k + 10), seq=k))
    wait_for(lambda: collector.count("acks") == 3, "3 acks")
    assert [a["accepted"] for a in collector.received["acks"]] == [10, 10, 10]
    assert count_readings(store) == 30  # an ack means committed: queryable at once

    collector.publish("readings", signed("batch-0001", range(10, 20), seq=1))  # replay
    wait_for(lambda: collector.count("acks") == 4, "the replay's ack")
    assert collector.received["acks"][3] == {
        "batch_id": "batch-0001",
        "accepted": 0,
        "duplicates": 10,
        "duplicate_batch": True,
        "conflicts": 0,
    }

    bad = batch("batch-bad1", [("EM-U1/1", 99, "1"), ("GHOST/1", 99, "1")]).signed(SECRET).model_dump_json()
    collector.publish("readings", bad.encode())
    collector.publish("readings", b"not json")
    wait_for(lambda: collector.count("rejects") == 2, "2 rejects")
    # two batch workers: the rejects may come in either order
    first, second = sorted(collector.received["rejects"], key=lambda r: r["batch_id"] is None)
    assert first["batch_id"] == "batch-bad1" and "unknown point 'GHOST/1'" in first["error"]
    assert "not valid JSON" in second["error"]
    assert count_readings(store) == 30 and center.counters.rejected == 2

    # the collector's live status (a signed dict, not a batch) updates its devices
    status = {
        "collector_id": "C1",
        "config_version": "v7",
        "sent_at": datetime.now(UTC).isoformat(),
        "devices": [{"device": "RTU-B1", "online": False, "clock_offset_s": 2.5, "error": "no answer"}],
    }
    collector.publish("status", json.dumps(sign_document(status, SECRET, "status")).encode())
    collector.publish("status", json.dumps(sign_document(status, b"forged", "status")).encode())
    wait_for(lambda: collector.count("rejects") == 3, "the forged status to be refused")
    assert "collector authentication failed" in collector.received["rejects"][2]["error"]
    with store.read() as connection:
        rtu = connection.execute(select(Device).where(Device.id == "RTU-B1")).one()
        version = connection.execute(select(Collector.config_version)).scalar_one()
    assert (rtu.status, rtu.clock_offset_s, rtu.error, version) == ("offline", 2.5, "no answer", "v7")

    command = queue_command(store, "C1", "read_now", device_id="EM-U1")
    wait_for(lambda: collector.count("commands") == 1, "the command to go down")
    assert collector.received["commands"][0]["command_id"] == command.command_id
    assert document_signature_ok(collector.received["commands"][0], SECRET, "command")  # by the center
    result = CommandResult(
        command_id=command.command_id, status="acknowledged", finished_at=datetime.now(UTC)
    )
    signed_result = sign_document(result.model_dump(mode="json"), SECRET, "command-result")
    collector.publish("command-results", json.dumps(signed_result).encode())
    wait_for(lambda: list_commands(store)[0]["status"] == "acknowledged", "the command result")


def test_batches_published_while_the_center_is_down_are_stored_exactly_once(mqtt_setup, store):  # noqa: F811
    center, collector = mqtt_setup
    center.start()  # creates the persistent session and its subscriptions
    collector.publish("readings", signed("batch-0000", range(0, 5), seq=0))
    wait_for(lambda: collector.count("acks") == 1, "the first ack")
    center.stop()

    for k in range(1, 21):  # the center is away: the broker queues these for its session (QoS 1)
        collector.publish("readings", signed(f"batch-{k:04d}", range(5 * k, 5 * k + 5), seq=k))
    collector.publish("readings", signed("batch-0003", range(15, 20), seq=3))  # and one replay among them
    assert collector.count("acks") == 1 and count_readings(store) == 5

    center.start()
    wait_for(lambda: collector.count("acks") == 22, "22 acks after the restart")
    assert count_readings(store) == 105
    with store.read() as connection:
        assert connection.execute(select(func.count()).select_from(BatchRow)).scalar_one() == 21
    acks = collector.received["acks"]
    assert sum(a["accepted"] for a in acks) == 105
    assert [a["batch_id"] for a in acks if a["duplicate_batch"]] == ["batch-0003"]


def test_broker_urls_are_checked():
    assert parse_broker_url("mqtts://user:p%40ss@broker.example:8884") == parse_broker_url(
        "mqtts://user:p%40ss@broker.example:8884"
    )
    address = parse_broker_url("mqtts://user:p%40ss@broker.example")
    assert (address.port, address.tls, address.password) == (8883, True, "p@ss")
    with pytest.raises(ValueError, match="mqtt://host"):
        parse_broker_url("http://broker")


def test_batches_stored_by_several_workers_keep_every_reading_once_and_the_chains_whole(mqtt_setup, store):  # noqa: F811
    """Eight batches of the same point published at once, stored by four batch workers concurrently
    (those waiting while a group is stored go in together as the next group: ``grouping``): every
    reading once, the chain verifies, one ack each."""
    center, collector = mqtt_setup
    assert center.workers == (4 if store.dialect == "postgresql" else 1)  # SQLite's writers take turns
    center.workers = 4  # on SQLite too: its writers wait for each other, nothing is lost
    center.start()
    for k in range(8):
        collector.publish("readings", signed(f"batch-w{k}", range(10 * k, 10 * k + 10), seq=k))
    collector.publish("readings", signed("batch-w3", range(30, 40), seq=3))  # a replay among them
    wait_for(lambda: collector.count("acks") == 9, "9 acks")
    assert sorted(a["accepted"] for a in collector.received["acks"]) == [0] + [10] * 8
    assert count_readings(store) == 80
    assert verify(store).findings == []
    other = batch("batch-c2", [("EM-U1/1", 99, "1")], collector_id="C2").signed(SECRET).model_dump_json()
    collector.publish("readings", other.encode())  # another collector's batch on C1's topic
    wait_for(lambda: collector.count("rejects") == 1, "the misplaced batch to be refused")
    assert (
        "batch of collector 'C2' published on the topic of 'C1'" in collector.received["rejects"][0]["error"]
    )
    assert count_readings(store) == 80


class _AckRecorder:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def _message(mid: int, qos: int = 1) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid=mid, topic=b"p/C1/readings")
    message.qos = qos
    return message


def test_pubacks_go_out_in_arrival_order_whichever_worker_finishes_first():
    """MQTT 3.1.1 §4.6: PUBACKs in the order the PUBLISHes came; a QoS 0 message needs none."""
    acks, client = _AcksInOrder(), _AckRecorder()
    messages = [_message(1), _message(2), _message(3, qos=0), _message(4)]
    for message in messages:
        acks.received(message)
    acks.done(messages[1], client)  # the second finishes first: held back
    assert client.acked == []
    acks.done(messages[3], client)
    assert client.acked == []
    acks.done(messages[0], client)  # now the first two; the third is not done
    assert client.acked == [1, 2]
    acks.done(messages[2], client)  # QoS 0: nothing to send for it, the fourth follows
    assert client.acked == [1, 2, 4]

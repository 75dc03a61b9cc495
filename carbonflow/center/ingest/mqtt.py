"""MQTT transport of C4 (production): the center's persistent-session subscriber.

Topics (``prefix`` = ``carbonflow`` in production; tests use their own):
  ``{prefix}/{collector}/readings``        Batch JSON, QoS 1, collector → center
  ``{prefix}/{collector}/status``          live status (signed dict with ``devices``) or a Batch, QoS 1
  ``{prefix}/{collector}/command-results`` CommandResult JSON signed inside (purpose command-result), QoS 1
  ``{prefix}/{collector}/acks``            Ack JSON, QoS 1, center → collector, after the commit
  ``{prefix}/{collector}/rejects``         ``{"batch_id", "error", "detail"}``: refused, nothing stored
  ``{prefix}/{collector}/commands``        Command JSON signed by the center inside, QoS 1, center → collector
  ``{prefix}/{collector}/images``          camera image envelope (messages.images), QoS 1, when the
                                           subscriber has an ImageStore; ImageAck on ``.../image-acks``

Delivery: fixed client id, ``clean_session=False``, QoS 1 subscriptions, so the broker keeps messages
for the center while it is down.  PUBACK is sent by hand (``manual_ack``) only after the batch is
committed and its Ack published: a crash in between means the broker redelivers, and the store's
idempotency turns the redelivery into a duplicate Ack.  A refused batch is acknowledged at MQTT level
(redelivering it cannot help) and answered on ``rejects``.  A database failure is retried with backoff
without acknowledging.  Work happens on worker threads, so paho's network loop keeps the keepalive:
batches (``readings``) on ``workers`` threads (default 4 on PostgreSQL — while one group of batches is in
the database, the next batches are decoded and checked, then stored together in one transaction
(``grouping``), each acknowledged on its own after that commit —, 1 on SQLite, whose writers take turns
anyway), everything
else (statuses, whose order counts, command results, images) on one thread in arrival order.  PUBACKs
still go out in the order the messages came (MQTT 3.1.1 §4.6): one finished early waits for those
before it.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from carbonflow.center.ingest.grouping import BatchGroups
from carbonflow.center.ingest.images import answer_image_envelope
from carbonflow.center.ingest.receive import receive_batch, receive_command_result, receive_status
from carbonflow.center.ingest.to_collector import signed_commands
from carbonflow.center.store import Store, StoreError, list_commands, take_queued_commands
from carbonflow.delivery.tls import client_context

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class IngestCounters:
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    duplicate_batches: int = 0
    rejected: int = 0
    command_results: int = 0
    statuses: int = 0
    commands_sent: int = 0
    store_failures: int = 0


class _AcksInOrder:
    """The messages received and not yet acknowledged, in arrival order: a message is acknowledged once
    it and every message before it are done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: deque[mqtt.MQTTMessage] = deque()
        self._done: set[int] = set()  # ids of messages in _order (alive there) that are done

    def received(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._order.append(message)

    def done(self, message: mqtt.MQTTMessage, client: mqtt.Client | None) -> None:
        with self._lock:  # held while acknowledging: two workers' PUBACKs cannot overtake each other
            self._done.add(id(message))
            while self._order and id(self._order[0]) in self._done:
                first = self._order.popleft()
                self._done.discard(id(first))
                if client is not None and first.qos > 0:
                    client.ack(first.mid, first.qos)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:1883]`` or ``mqtts://...[:8883]`` (TLS: the system CAs unless a
    context is given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class MqttIngest:
    """Subscribe to every collector's batches, store them, acknowledge them; push queued commands."""

    def __init__(
        self,
        broker_url: str,
        store: Store,
        *,
        client_id: str = "carbonflow-center",
        topic_prefix: str = "carbonflow",
        dispatch_commands: bool = True,
        command_poll_s: float = 1.0,
        keepalive_s: int = 30,
        images: Any = None,  # an ImageStore: also receive camera images
        on_status: Any = None,  # called after a collector message was stored (the alarm engine)
        tls_context: ssl.SSLContext | None = None,  # mqtts://: a private CA, a client certificate
        workers: int | None = None,  # threads storing batches (readings); the rest is handled by one more
    ) -> None:
        if workers is None:  # SQLite has one writer at a time: a second worker would only wait for it
            workers = 4 if getattr(store, "dialect", None) == "postgresql" else 1
        if workers < 1:
            raise ValueError("MqttIngest needs at least one batch worker")
        self.workers = workers
        self.tls_context = tls_context
        self.images = images
        self.on_status = on_status
        self.address = parse_broker_url(broker_url)
        self.store = store
        self.client_id = client_id
        self.prefix = topic_prefix
        self.dispatch_commands = dispatch_commands
        self.command_poll_s = command_poll_s
        self.keepalive_s = keepalive_s
        self.counters = IngestCounters()
        self._client: mqtt.Client | None = None
        self._work: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()  # statuses, results, images
        self._batches: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()  # readings
        self._acks = _AcksInOrder()
        self._groups = BatchGroups(store)  # batches waiting while others are stored: one transaction
        self._counting = threading.Lock()
        self._worker: threading.Thread | None = None
        self._batch_workers: list[threading.Thread] = []
        self._subscribed = threading.Event()
        self._stopping = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------------

    def _new_client(self, clean_session: bool) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:  # the broker is verified (and its host name) with the system CAs by default
            client.tls_set_context(self.tls_context or client_context())
        return client

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (resuming the broker-side session), subscribe, start the worker; wait for SUBACK."""
        self._stopping.clear()
        self._subscribed.clear()
        client = self._new_client(clean_session=False)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client = client
        self._worker = threading.Thread(
            target=self._work_loop, name=f"mqtt-ingest-{self.client_id}", daemon=True
        )
        self._worker.start()
        self._batch_workers = [
            threading.Thread(target=self._batch_loop, name=f"mqtt-batches-{self.client_id}-{k}", daemon=True)
            for k in range(self.workers)
        ]
        for thread in self._batch_workers:
            thread.start()
        client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
        client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise ConnectionError(
                f"MQTT broker {self.address.host}:{self.address.port} did not accept the subscription "
                f"within {timeout_s:g} s"
            )

    def stop(self) -> None:
        """Finish the message in hand, disconnect; the broker keeps the session and queues for us."""
        self._stopping.set()
        if self._worker is not None:
            self._work.put(None)
            for _ in self._batch_workers:
                self._batches.put(None)
            for thread in [self._worker, *self._batch_workers]:
                thread.join(timeout=30)
            self._worker, self._batch_workers = None, []
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        # unacknowledged messages left here are redelivered on the next start
        self._work, self._batches, self._acks = queue.Queue(), queue.Queue(), _AcksInOrder()

    def forget_session(self) -> None:
        """Remove the broker-side session (and what it queued): connect once with a clean session."""
        client = self._new_client(clean_session=True)
        client.connect(self.address.host, self.address.port, keepalive=self.keepalive_s)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()

    def __enter__(self) -> MqttIngest:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        kinds = ("readings", "status", "command-results") + (("images",) if self.images is not None else ())
        client.subscribe([(f"{self.prefix}/+/{kind}", 1) for kind in kinds])

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        if all(not code.is_failure for code in reason_codes):
            self._subscribed.set()
        else:
            log.error("MQTT subscription refused: %s", reason_codes)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._acks.received(message)
        (self._batches if message.topic.endswith("/readings") else self._work).put(message)

    # --- worker thread ---------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        work = self._work
        while True:
            try:
                message = work.get(timeout=self.command_poll_s)
            except queue.Empty:
                if self.dispatch_commands and not self._stopping.is_set():
                    self._dispatch_commands_safely()
                continue
            if message is None:
                return
            self._handle_with_retry(message)

    def _batch_loop(self) -> None:
        while (message := self._batches.get()) is not None:
            self._handle_with_retry(message)

    def _handle_with_retry(self, message: mqtt.MQTTMessage) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self._handle(message)
                return
            except Exception as error:  # database down etc.: keep the message, retry
                with self._counting:
                    self.counters.store_failures += 1
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                log.warning("storing %s failed (%s); retrying in %.1f s", message.topic, error, delay)
                attempt += 1
                self._stopping.wait(delay)
        # stopping with the message unacknowledged: the broker redelivers it next session

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) != len(self.prefix.split("/")) + 2:
            self._ack(message)
            return
        collector_id, kind = parts[-2], parts[-1]
        try:
            if kind == "command-results":
                receive_command_result(self.store, collector_id, message.payload)
                self.counters.command_results += 1
            elif kind == "images" and self.images is not None:
                answer = answer_image_envelope(self.images, collector_id, message.payload)
                self._publish(f"{self.prefix}/{collector_id}/image-acks", answer)
            elif kind == "status":
                ack = receive_status(self.store, collector_id, message.payload, self.on_status)
                if ack is not None:
                    self._publish(f"{self.prefix}/{collector_id}/acks", ack.model_dump_json())
                self.counters.statuses += 1
            else:
                self._store_batch(collector_id, message.payload)
        except (StoreError, ValidationError, ValueError) as error:
            self._reject(collector_id, message.payload, error)
        self._ack(message)

    def _store_batch(self, collector_id: str, payload: bytes) -> None:
        # the collector named in the batch checked against the topic's once it is parsed (not by a JSON
        # parse of its own: ~3 ms of a 2,000-reading batch)
        ack = receive_batch(
            self.store, payload, on_status=self.on_status, topic_collector=collector_id, groups=self._groups
        )
        with self._counting:  # several batch workers
            self.counters.batches += 1
            self.counters.accepted += ack.accepted
            self.counters.duplicates += ack.duplicates
            self.counters.duplicate_batches += int(ack.duplicate_batch)
        self._publish(f"{self.prefix}/{collector_id}/acks", ack.model_dump_json())

    def _reject(self, collector_id: str, payload: bytes, error: Exception) -> None:
        with self._counting:
            self.counters.rejected += 1
        try:
            batch_id = json.loads(payload).get("batch_id") or json.loads(payload).get("command_id")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            batch_id = None
        text = error.message if isinstance(error, StoreError) else str(error).splitlines()[0]
        detail = error.detail if isinstance(error, StoreError) else None
        log.warning("refused message of collector %s: %s", collector_id, text)
        self._publish(
            f"{self.prefix}/{collector_id}/rejects",
            json.dumps({"batch_id": batch_id, "error": text, "detail": detail}, default=str),
        )

    def _publish(self, topic: str, payload: str) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("MQTT client stopped")
        info = client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"publishing to {topic} failed: {mqtt.error_string(info.rc)}")
        # NO_CONN: paho keeps QoS 1 messages and sends them when the connection is back

    def _ack(self, message: mqtt.MQTTMessage) -> None:
        self._acks.done(message, self._client)

    def _dispatch_commands_safely(self) -> None:
        try:
            self.send_queued_commands()
        except Exception as error:  # the next poll tries again
            log.warning("dispatching commands failed: %s", error)

    def send_queued_commands(self) -> int:
        """Publish every queued command on its collector's command topic (marking it sent)."""
        collectors = sorted({row["collector_id"] for row in list_commands(self.store, status="queued")})
        sent = 0
        for collector_id in collectors:
            commands = take_queued_commands(self.store, collector_id)
            for document in signed_commands(self.store, collector_id, commands):
                self._publish(f"{self.prefix}/{collector_id}/commands", json.dumps(document))
                sent += 1
        self.counters.commands_sent += sent
        return sent

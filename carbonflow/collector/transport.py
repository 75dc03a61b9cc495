"""Senders of contract C4: HTTP (embedded default) and MQTT (production).

Both offer the same calls to the service: ``start``/``stop``, ``send_batch`` -> :class:`SendResult`,
``next_commands`` (waits for the center's commands), ``send_result`` (a CommandResult) and
``publish_status``.  An Ack is the only thing that lets the outbox delete a batch.

HTTP: ``POST /api/v1/ingest`` with the signed Batch JSON.  200 with an Ack for this batch_id -> acked;
400/404/409/413/422 and other 4xx -> rejected (dead letter, never retried by itself); 401/403 -> the
center refuses our credentials: the batch is fine, the secret is not, so it stays queued and is retried
with the longest backoff; 408/429, 5xx and connection errors -> retry.  Commands: ``GET
/api/v1/collectors/{id}/commands``; results: ``POST /api/v1/collectors/{id}/command-results``.  Every
request carries ``X-Carbonflow-Signature``: HMAC-SHA256 (the collector's secret, hex) of the raw body,
or of the request path for a GET.

MQTT (paho-mqtt 2, MQTT 3.1.1): fixed client id ``carbonflow-collector-{id}``, persistent session
(``clean_session=False``), QoS 1 everywhere.  Batches go to ``carbonflow/{id}/readings``; Acks come on
``carbonflow/{id}/acks`` (also Acks for batches sent before a restart: they still delete them);
commands on ``carbonflow/{id}/commands``; results to ``carbonflow/{id}/command-results``; live status
to ``carbonflow/{id}/status``.  paho runs its own network thread; everything it receives is handed to
the asyncio loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from carbonflow.collector.config import LoadedConfig
from carbonflow.messages.c4 import Ack, Command, CommandResult, sign

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Carbonflow-Signature"
RETRY_STATUSES = {408, 425, 429}
AUTH_STATUSES = {401, 403}


@dataclass(frozen=True)
class SendResult:
    outcome: Literal["acked", "rejected", "retry", "unauthorized"]
    ack: Ack | None = None
    status: int | None = None
    error: str = ""


JSON_HEADERS = {"Content-Type": "application/json"}


class TransportError(Exception):
    """The center could not be reached or refused a request (not a batch verdict)."""


class HttpTransport:
    kind = "http"
    max_in_flight = 1  # one request at a time keeps the center's view in seq order

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.secret = config.secret_bytes
        self.collector_id = config.id
        self._client: httpx.AsyncClient | None = None
        self._first_poll = True

    async def start(self) -> None:
        center = self.config.center
        self._client = httpx.AsyncClient(base_url=center.url, timeout=center.request_timeout_s)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self, signed: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(signed, self.secret)}

    async def send_batch(self, batch_id: str, body: bytes) -> SendResult:
        assert self._client is not None, "transport not started"
        try:
            response = await self._client.post("/api/v1/ingest", content=body, headers=self._headers(body))
        except httpx.HTTPError as error:
            return SendResult(
                "retry", error=f"center unreachable: {type(error).__name__}: {error}".strip(": ")
            )
        detail = _error_text(response)
        if response.status_code == 200:
            try:
                ack = Ack.model_validate_json(response.content)
            except ValidationError:
                return SendResult("retry", status=200, error=f"200 without a valid Ack: {detail}")
            if ack.batch_id != batch_id:
                return SendResult("retry", status=200, error=f"Ack for {ack.batch_id}, not {batch_id}")
            return SendResult("acked", ack=ack, status=200)
        status = response.status_code
        if status in AUTH_STATUSES:
            return SendResult("unauthorized", status=status, error=f"HTTP {status}: {detail}")
        if 400 <= status < 500 and status not in RETRY_STATUSES:
            return SendResult("rejected", status=status, error=f"HTTP {status}: {detail}")
        return SendResult("retry", status=status, error=f"HTTP {status}: {detail}")

    async def next_commands(self) -> list[Command]:
        """Poll the center's queue (at once the first time, then every ``command_poll_s``)."""
        assert self._client is not None, "transport not started"
        if not self._first_poll:
            await asyncio.sleep(self.config.center.command_poll_s)
        self._first_poll = False
        path = f"/api/v1/collectors/{self.collector_id}/commands"
        try:
            response = await self._client.get(
                path, headers={SIGNATURE_HEADER: sign(path.encode(), self.secret)}
            )
        except httpx.HTTPError as error:
            raise TransportError(f"GET {path}: {type(error).__name__}: {error}") from None
        if response.status_code == 404:
            return []  # a center without remote maintenance
        if response.status_code != 200:
            raise TransportError(f"GET {path}: HTTP {response.status_code}: {_error_text(response)}")
        return _parse_commands(response.content, f"GET {path}")

    async def send_result(self, result: CommandResult) -> None:
        assert self._client is not None, "transport not started"
        path = f"/api/v1/collectors/{self.collector_id}/command-results"
        body = result.model_dump_json().encode()
        try:
            response = await self._client.post(path, content=body, headers=self._headers(body))
        except httpx.HTTPError as error:
            raise TransportError(f"POST {path}: {type(error).__name__}: {error}") from None
        if response.status_code >= 300:
            raise TransportError(f"POST {path}: HTTP {response.status_code}: {_error_text(response)}")

    async def publish_status(self, payload: dict[str, Any]) -> None:
        """The collector's own status report (outbox, devices), signed like on MQTT, to
        ``POST /api/v1/collectors/{id}/status``; a center without that endpoint (404) is left alone."""
        assert self._client is not None, "transport not started"
        path = f"/api/v1/collectors/{self.collector_id}/status"
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        body = json.dumps({**payload, "signature": sign(canonical, self.secret)}, default=str).encode()
        try:
            response = await self._client.post(path, content=body, headers=JSON_HEADERS)
        except httpx.HTTPError as error:
            raise TransportError(f"POST {path}: {type(error).__name__}: {error}") from None
        if response.status_code >= 300 and response.status_code != 404:
            raise TransportError(f"POST {path}: HTTP {response.status_code}: {_error_text(response)}")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "error" in body:
        detail = body.get("detail")
        return f"{body['error']}" + (f" ({json.dumps(detail)[:300]})" if detail else "")
    return json.dumps(body)[:300]


def _parse_commands(raw: bytes, what: str) -> list[Command]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise TransportError(f"{what}: not JSON") from None
    items = data.get("commands", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise TransportError(f"{what}: expected a list of commands")
    commands = []
    for index, item in enumerate(items):
        try:
            commands.append(Command.model_validate(item))
        except ValidationError as error:
            log.warning("%s: command #%d ignored: %s", what, index, error.errors()[0]["msg"])
    return commands


class MqttTransport:
    kind = "mqtt"

    def __init__(self, config: LoadedConfig, on_ack: Callable[[Ack], None] | None = None) -> None:
        self.config = config
        self.collector_id = config.id
        self.secret = config.secret_bytes
        self.on_ack = on_ack  # every Ack, also for batches nobody waits for (sent before a restart)
        self.max_in_flight = config.center.max_in_flight
        prefix = f"carbonflow/{config.id}"
        self.topics = {
            name: f"{prefix}/{name}" for name in ("readings", "status", "acks", "commands", "command-results")
        }
        self.client_id = f"carbonflow-collector-{config.id}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._waiting: dict[str, asyncio.Future[Ack]] = {}
        self._commands: asyncio.Queue[Command] = asyncio.Queue()
        self._connected = asyncio.Event()
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:

        self._loop = asyncio.get_running_loop()
        client = persistent_mqtt_client(self.config, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        connect_to_center(client, self.config)
        client.loop_start()
        with contextlib.suppress(TimeoutError):  # not fatal: sends retry until the broker is there
            await asyncio.wait_for(self._connected.wait(), self.config.center.request_timeout_s)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()

    # -- paho callbacks (its network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._call(self._set_error, f"broker refused the connection: {reason_code}")
            return
        client.subscribe([(self.topics["acks"], 1), (self.topics["commands"], 1)])
        self._call(self._connected.set)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._connected.clear)
        self._call(self._set_error, f"disconnected from the broker: {reason_code}")

    def _on_message(self, client, userdata, message) -> None:
        self._call(self._received, message.topic, bytes(message.payload))

    def _call(self, function, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(function, *args)

    # -- on the asyncio loop ----------------------------------------------------------------------
    def _set_error(self, error: str) -> None:
        self.last_error = error

    def _received(self, topic: str, payload: bytes) -> None:
        if topic == self.topics["acks"]:
            try:
                ack = Ack.model_validate_json(payload)
            except ValidationError as error:
                log.warning("%s: malformed Ack ignored: %s", topic, error.errors()[0]["msg"])
                return
            future = self._waiting.pop(ack.batch_id, None)
            if future is not None and not future.done():
                future.set_result(ack)
            if self.on_ack is not None:
                self.on_ack(ack)
        elif topic == self.topics["commands"]:
            try:
                self._commands.put_nowait(Command.model_validate_json(payload))
            except ValidationError as error:
                log.warning("%s: malformed command ignored: %s", topic, error.errors()[0]["msg"])

    async def send_batch(self, batch_id: str, body: bytes) -> SendResult:
        if self._client is None or not self.connected:
            return SendResult("retry", error=f"broker not connected ({self.last_error or 'connecting'})")
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = future
        info = self._client.publish(self.topics["readings"], body, qos=1)
        if info.rc != 0:
            self._waiting.pop(batch_id, None)
            return SendResult("retry", error=f"publish failed (paho rc {info.rc})")
        try:
            ack = await asyncio.wait_for(future, self.config.center.ack_timeout_s)
        except TimeoutError:
            self._waiting.pop(batch_id, None)
            return SendResult("retry", error=f"no Ack within {self.config.center.ack_timeout_s} s")
        except asyncio.CancelledError:
            self._waiting.pop(batch_id, None)
            raise
        return SendResult("acked", ack=ack)

    async def next_commands(self) -> list[Command]:
        commands = [await self._commands.get()]
        while not self._commands.empty():
            commands.append(self._commands.get_nowait())
        return commands

    async def send_result(self, result: CommandResult) -> None:
        await self._publish(self.topics["command-results"], result.model_dump_json().encode())

    async def publish_status(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        signed = {**payload, "signature": sign(body, self.secret)}
        await self._publish(self.topics["status"], json.dumps(signed, default=str).encode())

    async def _publish(self, topic: str, body: bytes) -> None:
        if self._client is None or not self.connected:
            raise TransportError(f"MQTT {topic}: broker not connected ({self.last_error or 'connecting'})")
        info = self._client.publish(topic, body, qos=1)
        if info.rc != 0:
            raise TransportError(f"MQTT {topic}: publish failed (paho rc {info.rc})")


def make_transport(config: LoadedConfig, on_ack: Callable[[Ack], None] | None = None):
    if config.center.transport == "mqtt":
        return MqttTransport(config, on_ack)
    return HttpTransport(config)


def now_utc() -> datetime:
    return datetime.now(UTC)


def persistent_mqtt_client(config: LoadedConfig, client_id: str):
    """A paho client with a persistent session (QoS 1 messages survive a disconnect) and the center's
    credentials; callbacks are the caller's."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
    )
    if config.center.username:
        client.username_pw_set(config.center.username, config.center.password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_to_center(client, config: LoadedConfig) -> None:
    url = urlsplit(config.center.url)
    client.connect_async(url.hostname, url.port or 1883, keepalive=30)

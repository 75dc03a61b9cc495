"""The collector's side of contract C4 over the delivery path (:mod:`carbonflow.delivery`): HTTP
(embedded default) and MQTT (production).

Both offer the same calls: ``start``/``stop``, ``send_batch`` and ``send_image`` -> :class:`SendResult`,
``next_commands`` (waits for the center's commands), ``send_result`` (a CommandResult) and
``publish_status``.  An Ack is the only thing that lets an outbox delete a batch or an image.
Signing and freshness (:mod:`carbonflow.messages.signing`, docs/message-signing.md): every message up is
stamped (``signed_at``, ``nonce``) and signed at the moment it is sent; every command down must carry the
center's fresh signature (:class:`~carbonflow.collector.from_center.FromCenter`) or it is ignored.

HTTP: ``POST /api/v1/ingest`` with the signed Batch JSON.  200 with an Ack for this batch_id -> acked;
400/404/409/413/422 and other 4xx -> rejected (dead letter, never retried by itself); 401/403 -> the
center refuses our credentials: the batch is fine, the secret is not, so it stays queued and is retried
with the longest backoff; 408/429, 5xx and connection errors -> retry.  Images: ``POST /api/v1/images``
(the raw image, signed headers of :mod:`carbonflow.messages.images`), same verdicts.  Commands: ``GET
/api/v1/collectors/{id}/commands``; results: ``POST /api/v1/collectors/{id}/command-results``; status:
``POST /api/v1/collectors/{id}/status``.  Those requests carry ``X-Carbonflow-Signed-At``,
``X-Carbonflow-Nonce`` and ``X-Carbonflow-Signature`` (purpose ``request``: method, path with query, body);
batches, images and status reports are signed inside.

MQTT: ONE session per collector (:class:`~carbonflow.delivery.MqttSession`), fixed client id
``carbonflow-collector-{id}``, persistent session (``clean_session=False``), QoS 1 everywhere.  Batches
go to ``carbonflow/{id}/readings``; Acks come on ``carbonflow/{id}/acks`` (also Acks for batches sent
before a restart: they still delete them); images to ``carbonflow/{id}/images`` with ImageAcks on
``carbonflow/{id}/image-acks``; commands (signed by the center) on ``carbonflow/{id}/commands``; results
(signed documents) to ``carbonflow/{id}/command-results``; live status to ``carbonflow/{id}/status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from carbonflow.collector.config import LoadedConfig
from carbonflow.collector.from_center import FromCenter
from carbonflow.collector.image_outbox import QueuedImage
from carbonflow.delivery import AwaitedAcks, DeliveryError, HttpSender, MqttSession, SendResult
from carbonflow.messages import images as wire
from carbonflow.messages.c4 import Ack, Command, CommandResult
from carbonflow.messages.images import ImageAck, ImageEnvelope
from carbonflow.messages.signing import NonceJournal, request_headers, sign_document

log = logging.getLogger(__name__)
JSON_HEADERS = {"Content-Type": "application/json"}
TOPICS = ("readings", "status", "images", "image-acks", "acks", "commands", "command-results")


def signed_status(payload: dict[str, Any], secret: bytes) -> bytes:
    """The status report signed inside (purpose ``status``): the center refuses a stale, replayed or
    out-of-order report (a replay must not mark an offline collector online)."""
    return json.dumps(sign_document(payload, secret, "status"), default=str).encode()


def signed_result(result: CommandResult, secret: bytes) -> bytes:
    """A command result as a document signed inside (MQTT; over HTTP the request itself is signed)."""
    return json.dumps(sign_document(result.model_dump(mode="json"), secret, "command-result")).encode()


def parse_model(model, raw: bytes, what: str):
    """One message from the center, or None (logged) when it is malformed."""
    try:
        return model.model_validate_json(raw) if isinstance(raw, bytes) else model.model_validate(raw)
    except ValidationError as error:
        log.warning("%s: malformed %s ignored: %s", what, model.__name__, error.errors()[0]["msg"])
        return None


class HttpTransport:
    kind = "http"
    max_in_flight = 1  # one request at a time keeps the center's view in seq order

    def __init__(self, config: LoadedConfig, nonces: NonceJournal | None = None) -> None:
        self.config = config
        self.secret = config.secret_bytes
        self.collector_id = config.id
        self.http = HttpSender(config.center.url, config.center.request_timeout_s, config.tls_context)
        self.from_center = FromCenter(self.secret, nonces)
        self._first_poll = True

    async def start(self) -> None:
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()

    async def send_batch(self, batch_id: str, body: bytes) -> SendResult:
        def accept(response: httpx.Response) -> SendResult:
            ack = parse_model(Ack, response.content, "POST /api/v1/ingest")
            if ack is None:
                error = f"200 without a valid Ack: {response.text[:200]}"
                return SendResult("retry", status=200, error=error)
            if ack.batch_id != batch_id:
                return SendResult("retry", status=200, error=f"Ack for {ack.batch_id}, not {batch_id}")
            return SendResult("acked", ack=ack, status=200)

        return await self.http.send("/api/v1/ingest", body, JSON_HEADERS, accept)  # signed inside

    async def send_image(self, image: QueuedImage) -> SendResult:
        digest = wire.sha256_hex(image.body)
        headers = {
            "Content-Type": image.content_type,
            **wire.image_headers(self.secret, self.collector_id, image.camera, image.ts, digest),
        }
        return await self.http.send("/api/v1/images", image.body, headers)

    async def next_commands(self) -> list[Command]:
        """Poll the center's queue (at once the first time, then every ``command_poll_s``)."""
        if not self._first_poll:
            await asyncio.sleep(self.config.center.command_poll_s)
        self._first_poll = False
        path = f"/api/v1/collectors/{self.collector_id}/commands"
        headers = request_headers(self.secret, "GET", path)
        response = await self.http.request("GET", path, headers=headers, missing_ok=True)
        if response is None:
            return []  # a center without remote maintenance
        try:
            data = response.json()
        except ValueError:
            raise DeliveryError(f"GET {path}: not JSON") from None
        items = data.get("commands", data) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DeliveryError(f"GET {path}: expected a list of commands")
        checked = (self.from_center.command(item, f"GET {path}") for item in items)
        return [command for command in checked if command is not None]

    async def send_result(self, result: CommandResult) -> None:
        path = f"/api/v1/collectors/{self.collector_id}/command-results"
        body = result.model_dump_json().encode()
        headers = {**JSON_HEADERS, **request_headers(self.secret, "POST", path, body)}
        await self.http.request("POST", path, body=body, headers=headers)

    async def publish_status(self, payload: dict[str, Any]) -> None:
        """The collector's own status report (outbox, devices), signed like on MQTT; a center without
        that endpoint (404) is left alone."""
        path = f"/api/v1/collectors/{self.collector_id}/status"
        body = signed_status(payload, self.secret)
        await self.http.request("POST", path, body=body, headers=JSON_HEADERS, missing_ok=True)


class MqttTransport:
    kind = "mqtt"

    def __init__(
        self,
        config: LoadedConfig,
        on_ack: Callable[[Ack], None] | None = None,
        nonces: NonceJournal | None = None,
    ) -> None:
        self.config = config
        self.collector_id = config.id
        self.secret = config.secret_bytes
        self.on_ack = on_ack  # every Ack, also for batches nobody waits for (sent before a restart)
        center = config.center
        self.max_in_flight = center.max_in_flight
        self.topics = {name: f"carbonflow/{config.id}/{name}" for name in TOPICS}
        self.client_id = f"carbonflow-collector-{config.id}"
        self.session = MqttSession(
            center.url,
            self.client_id,
            username=center.username,
            password=center.password,
            timeout_s=center.request_timeout_s,
            tls_context=config.tls_context,
        )
        self._batch_acks = AwaitedAcks(self.session, center.ack_timeout_s, "Ack")
        self._image_acks = AwaitedAcks(self.session, center.ack_timeout_s, "image Ack")
        self._commands: asyncio.Queue[Command] = asyncio.Queue()
        self.from_center = FromCenter(self.secret, nonces)
        self.session.subscribe(self.topics["acks"], self._received_ack)
        self.session.subscribe(self.topics["image-acks"], self._received_image_ack)
        self.session.subscribe(self.topics["commands"], self._received_command)

    @property
    def connected(self) -> bool:
        return self.session.connected

    async def start(self) -> None:
        await self.session.start()

    async def stop(self) -> None:
        await self.session.stop()

    def _received_ack(self, payload: bytes) -> None:
        ack = parse_model(Ack, payload, self.topics["acks"])
        if ack is not None:
            self._batch_acks.resolve(ack.batch_id, ack)
            if self.on_ack is not None:
                self.on_ack(ack)

    def _received_image_ack(self, payload: bytes) -> None:
        ack = parse_model(ImageAck, payload, self.topics["image-acks"])
        if ack is not None:
            self._image_acks.resolve((ack.camera, ack.ts), ack)

    def _received_command(self, payload: bytes) -> None:
        command = self.from_center.command(payload, self.topics["commands"])
        if command is not None:
            self._commands.put_nowait(command)

    async def send_batch(self, batch_id: str, body: bytes) -> SendResult:
        return await self._batch_acks.publish(self.topics["readings"], body, batch_id)

    async def send_image(self, image: QueuedImage) -> SendResult:
        envelope = ImageEnvelope.build(
            self.secret, self.collector_id, image.camera, image.ts, image.body, image.content_type
        )
        body = envelope.model_dump_json().encode()
        result = await self._image_acks.publish(self.topics["images"], body, (image.camera, image.ts))
        if result.ack is not None and result.ack.error is not None:
            return SendResult("rejected", ack=result.ack, error=result.ack.error)
        return result

    async def next_commands(self) -> list[Command]:
        commands = [await self._commands.get()]
        while not self._commands.empty():
            commands.append(self._commands.get_nowait())
        return commands

    async def send_result(self, result: CommandResult) -> None:
        await self.session.publish(self.topics["command-results"], signed_result(result, self.secret))

    async def publish_status(self, payload: dict[str, Any]) -> None:
        await self.session.publish(self.topics["status"], signed_status(payload, self.secret))


def make_transport(
    config: LoadedConfig,
    on_ack: Callable[[Ack], None] | None = None,
    nonces: NonceJournal | None = None,
):
    """``nonces``: where the center's accepted nonces are kept across restarts (the outbox)."""
    if config.center.transport == "mqtt":
        return MqttTransport(config, on_ack, nonces)
    return HttpTransport(config, nonces)

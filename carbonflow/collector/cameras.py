"""Site cameras on the collector: fetch snapshots, queue them, forward them to the center.

One :class:`CameraRunner` per ``[[cameras]]`` entry fetches ``GET http://endpoint/path`` with httpx every
``period_s`` (aligned to the wall clock, like the device polls), checks that the answer is a PNG or JPEG
no larger than ``images.max_image_bytes``, time-stamps it with the collector's clock (UTC, ms) and puts
it in the :class:`~carbonflow.collector.image_outbox.ImageOutbox`.  Camera status goes to the center
as device statuses (online at the first good snapshot, offline after ``defaults.offline_after`` failed
fetches), like every device's.

The sender forwards the oldest queued image, one at a time, over the center's transport
(:mod:`carbonflow.messages.images`): HTTP ``POST /api/v1/images`` or MQTT ``carbonflow/{id}/images``
with the center's :class:`~carbonflow.messages.images.ImageAck` on ``carbonflow/{id}/image-acks``.
The MQTT sender has its own client (``carbonflow-collector-{id}-images``, persistent session) so image
traffic never delays a readings batch.  Verdicts as for batches: acked -> deleted; rejected (4xx) ->
deleted and counted; unauthorized / unreachable -> kept, retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from carbonflow.collector.image_outbox import ImageOutbox, QueuedImage
from carbonflow.collector.pollers import to_ms, utc_now
from carbonflow.collector.transport import (
    AUTH_STATUSES,
    RETRY_STATUSES,
    SendResult,
    _error_text,
    connect_to_center,
    persistent_mqtt_client,
)
from carbonflow.messages.c4 import DeviceStatus
from carbonflow.messages.collector_config import CameraConfig
from carbonflow.messages.images import (
    CAMERA_HEADER,
    COLLECTOR_HEADER,
    SHA256_HEADER,
    SIGNATURE_HEADER,
    TS_HEADER,
    ImageAck,
    ImageEnvelope,
    sha256_hex,
    sign_image,
    sniff_content_type,
    ts_text,
)

if TYPE_CHECKING:
    from carbonflow.collector.service import Collector

log = logging.getLogger(__name__)


class CameraRunner:
    def __init__(self, service: CameraService, camera: CameraConfig) -> None:
        self.service, self.camera = service, camera
        images = service.collector.config.images
        self.period_s = camera.period_s or images.period_s
        self.timeout_s = camera.timeout_s or images.timeout_s
        self.online: bool | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.last_seen = None
        self.fetched = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"camera {self.camera.id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        period = self.period_s
        while True:
            await self.fetch_once()
            await asyncio.sleep(period - (time.time() % period) if period >= 1 else period)

    async def fetch_once(self) -> bool:
        """One snapshot into the outbox; False (and counted as a failure) when none was had."""
        try:
            response = await self.service.client.get(self.camera.url, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            return self._failed(f"{type(error).__name__}: {error}".strip(": "))
        if response.status_code != 200:
            return self._failed(f"HTTP {response.status_code} from {self.camera.url}")
        body = response.content
        content_type = sniff_content_type(body)
        if content_type is None:
            return self._failed(f"{self.camera.url} did not answer with a PNG or JPEG image")
        limit = self.service.collector.config.images.max_image_bytes
        if len(body) > limit:
            return self._failed(f"snapshot of {len(body)} bytes is above max_image_bytes {limit}")
        ts = to_ms(utc_now())
        dropped = self.service.outbox.append(self.camera.id, ts_text(ts), body, content_type)
        if dropped:
            self.service.collector._event(f"image outbox full: {dropped} oldest images dropped")
        self.fetched += 1
        self.failures, self.last_seen = 0, ts
        if self.online is not True:
            self.online, self.last_error = True, None
            log.info("%s: online", self.camera.id)
            self.service.collector.report_status(self.status())
        self.service.wake()
        return True

    def _failed(self, error: str) -> bool:
        self.failures += 1
        self.last_error = " ".join(error.split())[:500]
        limit = self.service.collector.config.defaults.offline_after
        if self.failures >= limit and self.online is not False:
            self.online = False
            log.warning("%s: offline after %d failed snapshots: %s", self.camera.id, self.failures, error)
            self.service.collector.report_status(self.status())
        return False

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            device=self.camera.id, online=bool(self.online), last_seen=self.last_seen, error=self.last_error
        )


class HttpImageSender:
    def __init__(self, collector: Collector) -> None:
        self.config = collector.config
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        center = self.config.center
        self._client = httpx.AsyncClient(base_url=center.url, timeout=center.request_timeout_s)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, image: QueuedImage) -> SendResult:
        assert self._client is not None, "image sender not started"
        digest = sha256_hex(image.body)
        collector_id = self.config.id
        headers = {
            "Content-Type": image.content_type,
            COLLECTOR_HEADER: collector_id,
            CAMERA_HEADER: image.camera,
            TS_HEADER: image.ts,
            SHA256_HEADER: digest,
            SIGNATURE_HEADER: sign_image(
                self.config.secret_bytes, collector_id, image.camera, image.ts, digest
            ),
        }
        try:
            response = await self._client.post("/api/v1/images", content=image.body, headers=headers)
        except httpx.HTTPError as error:
            return SendResult("retry", error=f"center unreachable: {type(error).__name__}: {error}")
        status = response.status_code
        if status == 200:
            return SendResult("acked", status=200)
        detail = f"HTTP {status}: {_error_text(response)}"
        if status in AUTH_STATUSES:
            return SendResult("unauthorized", status=status, error=detail)
        if 400 <= status < 500 and status not in RETRY_STATUSES:
            return SendResult("rejected", status=status, error=detail)
        return SendResult("retry", status=status, error=detail)


class MqttImageSender:
    def __init__(self, collector: Collector) -> None:
        self.config = collector.config
        prefix = f"carbonflow/{self.config.id}"
        self.topic, self.ack_topic = f"{prefix}/images", f"{prefix}/image-acks"
        self.client_id = f"carbonflow-collector-{self.config.id}-images"
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._waiting: dict[tuple[str, str], asyncio.Future[ImageAck]] = {}
        self.last_error: str | None = None

    async def start(self) -> None:

        self._loop = asyncio.get_running_loop()
        client = persistent_mqtt_client(self.config, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_args: self._call(self._connected.clear)
        client.on_message = lambda _c, _u, message: self._call(self._received, bytes(message.payload))
        self._client = client
        connect_to_center(client, self.config)
        client.loop_start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.config.center.request_timeout_s)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._call(setattr, self, "last_error", f"broker refused the connection: {reason_code}")
            return
        client.subscribe([(self.ack_topic, 1)])
        self._call(self._connected.set)

    def _call(self, function, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(function, *args)

    def _received(self, payload: bytes) -> None:
        try:
            ack = ImageAck.model_validate_json(payload)
        except ValidationError:
            log.warning("%s: malformed image Ack ignored", self.ack_topic)
            return
        future = self._waiting.pop((ack.camera, ack.ts), None)
        if future is not None and not future.done():
            future.set_result(ack)

    async def send(self, image: QueuedImage) -> SendResult:
        if self._client is None or not self._connected.is_set():
            return SendResult("retry", error=f"broker not connected ({self.last_error or 'connecting'})")
        envelope = ImageEnvelope.build(
            self.config.secret_bytes, self.config.id, image.camera, image.ts, image.body, image.content_type
        )
        future: asyncio.Future[ImageAck] = asyncio.get_running_loop().create_future()
        self._waiting[(image.camera, image.ts)] = future
        info = self._client.publish(self.topic, envelope.model_dump_json().encode(), qos=1)
        if info.rc != 0:
            self._waiting.pop((image.camera, image.ts), None)
            return SendResult("retry", error=f"publish failed (paho rc {info.rc})")
        try:
            ack = await asyncio.wait_for(future, self.config.center.ack_timeout_s)
        except TimeoutError:
            self._waiting.pop((image.camera, image.ts), None)
            return SendResult("retry", error=f"no image Ack within {self.config.center.ack_timeout_s} s")
        if ack.error is not None:
            return SendResult("rejected", error=ack.error)
        return SendResult("acked")


class CameraService:
    """The collector's cameras: runners, the image outbox and the sender."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        config = collector.config
        self.outbox = ImageOutbox(config.outbox_path, config.images.max_bytes)
        self.sender = (
            MqttImageSender(collector) if config.center.transport == "mqtt" else HttpImageSender(collector)
        )
        self.runners: dict[str, CameraRunner] = {}
        self.client = httpx.AsyncClient()
        self.last_send_error: str | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if not self.collector.config.cameras:
            return
        await self.sender.start()
        self._task = asyncio.create_task(self._send_loop(), name="image sender")
        self.start_runners()

    def start_runners(self) -> None:
        if self.runners or self._task is None:
            return
        for camera in self.collector.config.cameras:
            if camera.enabled:
                self.runners[camera.id] = runner = CameraRunner(self, camera)
                runner.start()

    async def stop_runners(self) -> None:
        runners, self.runners = list(self.runners.values()), {}
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    async def stop(self) -> None:
        await self.stop_runners()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
            await self.sender.stop()
        await self.client.aclose()
        self.outbox.close()

    def wake(self) -> None:
        self._ready.set()

    async def _send_loop(self) -> None:
        center = self.collector.config.center
        backoff = center.backoff_min_s
        while True:
            queued = self.outbox.oldest(1)
            if not queued:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), 1.0)
                continue
            image = queued[0]
            result = await self.sender.send(image)
            if result.outcome == "acked":
                self.outbox.acknowledge(image.id)
                self.last_send_error, backoff = None, center.backoff_min_s
                continue
            if result.outcome == "rejected":
                self.outbox.reject(image.id)
                self.collector._event(
                    f"image {image.camera} {image.ts} rejected by the center: {result.error}"
                )
                continue
            self.outbox.record_failure(image.id, result.error)
            if result.error != self.last_send_error:
                log.warning("image %s %s not delivered: %s", image.camera, image.ts, result.error)
            self.last_send_error = result.error
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, center.backoff_max_s)

    def stats(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        return {
            "queued": stats.images,
            "bytes": stats.bytes,
            "max_bytes": stats.max_bytes,
            "dropped": stats.dropped,
            "rejected": stats.rejected,
            "delivered": stats.delivered,
            "last_send_error": self.last_send_error,
        }

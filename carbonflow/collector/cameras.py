"""Site cameras on the collector: fetch snapshots, queue them, forward them to the center.

One :class:`CameraRunner` per ``[[cameras]]`` entry fetches ``GET http://endpoint/path`` with httpx every
``period_s`` (aligned to the wall clock, like the device polls), checks that the answer is a PNG or JPEG
no larger than ``images.max_image_bytes``, time-stamps it with the collector's clock (UTC, ms) and puts
it in the :class:`~carbonflow.collector.image_outbox.ImageOutbox`.  Camera status goes to the center
as device statuses (online at the first good snapshot, offline after ``defaults.offline_after`` failed
fetches), like every device's.

A :class:`~carbonflow.delivery.DeliveryLoop` forwards the oldest queued image, one at a time, with
the ``send`` it is given (the collector's transport: HTTP ``POST /api/v1/images`` or its one MQTT
session, ``carbonflow/{id}/images``).  Verdicts as for batches: acked -> deleted; rejected (4xx) ->
deleted and counted; unauthorized / unreachable -> kept, retried with backoff.  The service takes
narrow callbacks (send, report a status, note an event), never the collector itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from carbonflow.collector.config import LoadedConfig
from carbonflow.collector.image_outbox import ImageOutbox, QueuedImage
from carbonflow.collector.pollers import Clock, to_ms
from carbonflow.delivery import DeliveryLoop, SendResult, cancel_and_wait
from carbonflow.messages.c4 import DeviceStatus
from carbonflow.messages.collector_config import CameraConfig
from carbonflow.messages.images import sniff_content_type, ts_text

log = logging.getLogger(__name__)


class CameraRunner:
    def __init__(self, service: CameraService, camera: CameraConfig) -> None:
        self.service, self.camera = service, camera
        images = service.config.images
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
        await cancel_and_wait([self.task] if self.task else [])

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
        limit = self.service.config.images.max_image_bytes
        if len(body) > limit:
            return self._failed(f"snapshot of {len(body)} bytes is above max_image_bytes {limit}")
        ts = to_ms(self.service.clock())
        dropped = self.service.outbox.append(self.camera.id, ts_text(ts), body, content_type)
        if dropped:
            self.service.on_event(f"image outbox full: {dropped} oldest images dropped")
        self.fetched += 1
        self.failures, self.last_seen = 0, ts
        if self.online is not True:
            self.online, self.last_error = True, None
            log.info("%s: online", self.camera.id)
            self.service.report_status(self.status())
        self.service.wake()
        return True

    def _failed(self, error: str) -> bool:
        self.failures += 1
        self.last_error = " ".join(error.split())[:500]
        limit = self.service.config.defaults.offline_after
        if self.failures >= limit and self.online is not False:
            self.online = False
            log.warning("%s: offline after %d failed snapshots: %s", self.camera.id, self.failures, error)
            self.service.report_status(self.status())
        return False

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            device=self.camera.id, online=bool(self.online), last_seen=self.last_seen, error=self.last_error
        )


class CameraService:
    """The collector's cameras: runners, the image outbox and its delivery loop."""

    def __init__(
        self,
        config: LoadedConfig,
        send: Callable[[QueuedImage], Awaitable[SendResult]],
        report_status: Callable[[DeviceStatus], None],
        on_event: Callable[[str], None],
        clock: Clock,
    ) -> None:
        self.config = config  # replaced by the collector on a reload
        self.report_status, self.on_event, self.clock = report_status, on_event, clock
        self.outbox = ImageOutbox(config.outbox_path, config.images.max_bytes)
        center = config.center
        self.delivery = DeliveryLoop(
            self.outbox,
            send,
            backoff_min_s=center.backoff_min_s,
            backoff_max_s=center.backoff_max_s,
            on_event=on_event,
        )
        self.runners: dict[str, CameraRunner] = {}
        self.client = httpx.AsyncClient()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if not self.config.cameras:
            return
        self._task = asyncio.create_task(self.delivery.run(), name="image sender")
        self.start_runners()

    def start_runners(self) -> None:
        if self.runners or self._task is None:
            return
        for camera in self.config.cameras:
            if camera.enabled:
                self.runners[camera.id] = runner = CameraRunner(self, camera)
                runner.start()

    async def stop_runners(self) -> None:
        runners, self.runners = list(self.runners.values()), {}
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    async def stop(self) -> None:
        await self.stop_runners()
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        await self.client.aclose()
        self.outbox.close()

    def wake(self) -> None:
        self.delivery.wake()

    def stats(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        return {
            "queued": stats.images,
            "bytes": stats.bytes,
            "max_bytes": stats.max_bytes,
            "dropped": stats.dropped,
            "rejected": stats.rejected,
            "delivered": stats.delivered,
            "last_send_error": self.delivery.last_error,
        }

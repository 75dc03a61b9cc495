"""The running collector: pollers -> validation -> outbox -> transport, plus status and commands.

``Collector(config).run()`` runs until :meth:`Collector.stop`; ``start``/``stop`` for embedding (the
demo, tests).  Tasks: one per device (poll loop aligned to multiples of its period, clock checks,
online/offline status), the batcher (cuts batches from the outbox), the batch delivery loop
(:class:`~carbonflow.delivery.DeliveryLoop`: sends the oldest unacked batches, backs off while the
center is down), the cameras, the status reporter and the command loop (:mod:`.commands`).  Time comes
from the injected ``clock`` (the system clock unless the demo passes its simulated one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from carbonflow.collector.cameras import CameraService
from carbonflow.collector.clients.errors import DeviceError
from carbonflow.collector.commands import COMMANDS, CommandLoop, run_command
from carbonflow.collector.config import LoadedConfig, load_config
from carbonflow.collector.outbox import Outbox, OutboxFull, StoredBatch
from carbonflow.collector.pollers import Clock, Poller, make_poller, system_clock, to_ms
from carbonflow.collector.remote_config import install_pushed_config
from carbonflow.collector.transport import make_transport
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.delivery import DeliveryError, DeliveryLoop, SendResult, cancel_and_wait
from carbonflow.messages.c4 import Ack, Command, CommandResult, DeviceStatus
from carbonflow.messages.collector_config import ConfigError, DeviceConfig

log = logging.getLogger(__name__)


@dataclass
class DeviceState:
    online: bool | None = None  # None: not known yet
    failures: int = 0
    last_seen: datetime | None = None
    last_error: str | None = None
    last_clock_check: float = 0.0

    def status(self, device_id: str, offset: float | None) -> DeviceStatus:
        return DeviceStatus(
            device=device_id,
            online=bool(self.online),
            last_seen=self.last_seen,
            clock_offset_s=offset,
            error=self.last_error,
        )


class DeviceRunner:
    """Polls one device forever; counts failures; reports status changes."""

    def __init__(self, collector: Collector, device: DeviceConfig) -> None:
        self.collector = collector
        self.device = device
        self.poller: Poller = make_poller(device, collector.config, collector.deliver, collector.clock)
        self.state = DeviceState()
        self.task: asyncio.Task | None = None
        self.poll_lock = asyncio.Lock()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"poll {self.device.id}")

    async def stop(self) -> None:
        if self.task is not None:
            await cancel_and_wait([self.task])
        with contextlib.suppress(Exception):
            await self.poller.close()

    async def _run(self) -> None:
        period = self.device.period_s or self.collector.config.defaults.period_s
        opened = False
        while True:
            if not opened:
                try:
                    await self.poller.open()
                    opened = True
                    self._succeeded()
                except (DeviceError, OSError) as error:
                    self._failed(error)
            if opened:
                await self.poll_once()
            # aligned to the wall clock so that every device's values of one period line up
            await asyncio.sleep(period - (time.time() % period) if period >= 1 else period)

    async def poll_once(self) -> int:
        async with self.poll_lock:
            try:
                values = await self.poller.poll()
            except (DeviceError, OSError) as error:
                self._failed(error)
                return 0
            except Exception as error:  # a bug must not end this device's polling for good
                log.exception("%s: poll failed unexpectedly", self.device.id)
                self._failed(error)
                return 0
            self._succeeded()
            stored = self.collector.deliver(self.device.id, values) if values else 0
            await self._maybe_check_clock()
            return stored

    async def _maybe_check_clock(self) -> None:
        every = self.collector.config.defaults.clock_check_s
        if not self.poller.has_clock or time.monotonic() - self.state.last_clock_check < every:
            return
        self.state.last_clock_check = time.monotonic()
        try:
            await self.poller.read_clock_offset()
        except (DeviceError, OSError, ValueError) as error:
            log.info("%s: clock not read: %s", self.device.id, error)

    def _succeeded(self) -> None:
        self.state.failures = 0
        self.state.last_seen = to_ms(self.collector.clock())
        if self.state.online is not True:
            self.state.online, self.state.last_error = True, None
            log.info("%s: online", self.device.id)
            self.collector.report_status(self.status())

    def _failed(self, error: Exception) -> None:
        self.state.failures += 1
        self.state.last_error = " ".join(str(error).split())[:500] or type(error).__name__
        limit = self.collector.config.defaults.offline_after
        if self.state.failures >= limit and self.state.online is not False:
            self.state.online = False
            log.warning(
                "%s: offline after %d failed polls: %s",
                self.device.id,
                self.state.failures,
                self.state.last_error,
            )
            self.collector.report_status(self.status())

    def status(self) -> DeviceStatus:
        status = self.state.status(self.device.id, self.poller.clock_offset_s)
        freezes = getattr(self.poller, "freezes", None)  # what is wrong with its frozen counters
        if status.error is None and freezes is not None and freezes.note:
            status = status.model_copy(update={"error": freezes.note})
        return status


class Collector:
    DRAIN_S = 3.0  # on a graceful stop, how long the last batches may take to reach the center

    def __init__(
        self,
        config: LoadedConfig,
        config_path: str | Path | None = None,
        transport: Any = None,
        on_event: Callable[[str], None] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.clock = clock
        self.outbox = Outbox(
            config.outbox_path,
            config.outbox.max_readings,
            config.outbox.max_bytes,
            reserve_bytes=Outbox.MIN_RESERVE_BYTES + 300 * config.outbox.batch_max_readings,
        )
        self.validator = Validator(self.outbox.load_states())
        self.transport = transport or make_transport(config, on_ack=self._on_late_ack, nonces=self.outbox)
        self.runners: dict[str, DeviceRunner] = {}
        self.on_event = on_event  # flags and notices, for tests and the CLI log
        self.events: list[str] = []
        self.accepted_readings = 0  # readings that passed validation into the outbox in this run
        self.batches = DeliveryLoop(
            self.outbox,
            self._send_batch,
            backoff_min_s=config.center.backoff_min_s,
            backoff_max_s=config.center.backoff_max_s,
            in_flight=getattr(self.transport, "max_in_flight", 1),
            on_event=self._event,
            rejected_note=", kept as a dead letter",
        )
        self._tasks: list[asyncio.Task] = []
        self._batch_ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._outbox_full = False
        self.answered: dict[str, CommandResult] = {}  # recent results by command id (this run)
        self.cameras = CameraService(  # site cameras: snapshots -> image outbox -> center
            config, lambda image: self.transport.send_image(image), self.report_status, self._event, clock
        )

    @property
    def delivered(self) -> int:
        """Batches acknowledged by the center in this run."""
        return self.batches.delivered

    @property
    def rejected(self) -> int:
        return self.batches.rejected

    @property
    def last_send_error(self) -> str | None:
        return self.batches.last_error

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start()
        self._start_runners()
        await self.cameras.start()
        self._tasks = [
            asyncio.create_task(self._batcher(), name="batcher"),
            asyncio.create_task(self.batches.run(), name="sender"),
            asyncio.create_task(self._status_reporter(), name="status"),
            asyncio.create_task(self._command_loop(), name="commands"),
        ]
        log.info(
            "collector %s: %d devices, center %s, outbox %s",
            self.config.id,
            len(self.runners),
            self.config.center.url,
            self.outbox.path,
        )

    async def stop(self, flush: bool = False) -> None:
        """Stop polling and sending.  ``flush``: first cut what is pending into a batch and give the
        sender up to DRAIN_S to deliver it (what is not acknowledged by then stays for the next start)."""
        await self._stop_runners()
        if flush:
            self._form_batches(force=True)
            self.batches.wake()
            with contextlib.suppress(TimeoutError):  # a short grace period for the sender, no more
                await asyncio.wait_for(self._drained(), self.DRAIN_S)
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self.cameras.stop()  # its image sender uses the transport
        await self.transport.stop()
        self.outbox.close()
        self._stopped.set()

    async def _drained(self) -> None:
        while self.outbox.stats().batches:
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            if not self._stopped.is_set():
                await self.stop()

    def run_forever(self) -> None:
        """Run until SIGINT/SIGTERM (the CLI)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stopping = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(signum, stopping.set)
            await self.start()
            await stopping.wait()
            await self.stop(flush=True)

        asyncio.run(main())

    async def stop_polling(self) -> None:
        """Stop the device tasks only (sending and commands go on)."""
        await self._stop_runners()

    def start_polling(self) -> None:
        if not self.runners:
            self._start_runners()

    def _start_runners(self) -> None:
        for device in self.config.devices:
            if device.enabled:
                runner = DeviceRunner(self, device)
                self.runners[device.id] = runner
                runner.start()
        self.cameras.start_runners()

    async def _stop_runners(self) -> None:
        await self.cameras.stop_runners()
        runners, self.runners = list(self.runners.values()), {}
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    # -- readings into the outbox ------------------------------------------------------------------
    def deliver(self, device_id: str, values: list[RawValue]) -> int:
        """Validate a device's values and append them (with the point states) to the outbox."""
        runner = self.runners.get(device_id)
        if runner is None:
            return 0
        readings = []
        if ahead := self.validator.forget_future(self.clock()):
            self._event(
                f"{len(ahead)} points had a last reading time ahead of the collector's clock (stepped "
                f"back?), e.g. {ahead[0]}: their next readings are taken"
            )
        for raw in values:
            point = runner.device.point(raw.point)
            verdict = self.validator.check(f"{device_id}/{raw.point}", point, raw)
            if verdict.flag:
                self._event(verdict.flag)
            if verdict.reading is not None:
                readings.append(verdict.reading)
        changed = {p: self.validator.states[p] for p in self.validator.changed}
        self.validator.changed.clear()
        try:
            stored = self.outbox.append(readings, states=changed)
        except OutboxFull as full:
            if not self._outbox_full:
                self._outbox_full = True
                self.report_status(self.collector_status(str(full)))
            self._event(str(full))
            return 0
        self.accepted_readings += stored
        if self._outbox_full:
            self._outbox_full = False
            self.report_status(self.collector_status())
        if self.outbox.stats().pending_readings >= self.config.outbox.batch_max_readings:
            self._batch_ready.set()
        return stored

    def report_status(self, status: DeviceStatus) -> None:
        with contextlib.suppress(OutboxFull):
            self.outbox.append([], [status])
        self._batch_ready.set()

    def collector_status(self, error: str | None = None) -> DeviceStatus:
        """The collector's own entry (device = its id): online, and the outbox-full notice if any."""
        return DeviceStatus(
            device=self.config.id,
            online=True,
            last_seen=to_ms(self.clock()),
            firmware=f"carbonflow collector, config {self.config.config_version}",
            error=error,
        )

    def _event(self, text: str) -> None:
        log.info("%s", text)
        self.events.append(text)
        del self.events[:-1000]
        if self.on_event is not None:
            self.on_event(text)

    # -- batches to the center -----------------------------------------------------------------------
    def _form_batches(self, force: bool = False) -> int:
        formed = 0
        outbox = self.config.outbox
        while (
            batch := self.outbox.form_batch(
                self.config.id,
                self.config.secret_bytes,
                outbox.batch_max_readings,
                outbox.batch_max_age_s,
                self.config.config_version,
                force=force,
            )
        ) is not None:
            formed += 1
            log.debug("batch %s seq %d: %d readings", batch.batch_id, batch.seq, len(batch.readings))
            if len(batch.readings) < outbox.batch_max_readings:
                break
        return formed

    async def _batcher(self) -> None:
        tick = min(self.config.outbox.batch_max_age_s / 2, 0.5)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), tick)
            self._batch_ready.clear()
            try:
                if self._form_batches():
                    self.batches.wake()
            except Exception:  # a bug or a broken disk must not end batching for good: log, go on
                log.exception("cutting a batch failed; trying again")
                await asyncio.sleep(tick)

    def _send_batch(self, batch: StoredBatch) -> Awaitable[SendResult]:
        """Signed now, at this send: a batch refused as stale (it waited out an outage) or replayed
        goes again with a fresh stamp — the outbox keeps it until an Ack, whatever the refusal."""
        return self.transport.send_batch(batch.batch_id, batch.signed_body(self.config.secret_bytes))

    def _on_late_ack(self, ack: Ack) -> None:
        """MQTT: an Ack nobody waits for (its batch was sent before a restart) still settles it."""
        self.batches.acknowledged(ack.batch_id)

    # -- status -------------------------------------------------------------------------------------
    async def _status_reporter(self) -> None:
        while True:
            statuses = [
                runner.status() for runner in self.runners.values() if runner.state.online is not None
            ]
            full = self.outbox.stats()
            statuses.append(
                self.collector_status(
                    f"outbox full: {full.refused_readings} readings refused" if full.full else None
                )
            )
            for status in statuses:
                self.report_status(status)
            with contextlib.suppress(DeliveryError):
                await self.transport.publish_status(self.status())
            await asyncio.sleep(self.config.defaults.status_period_s)

    def status(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        return {
            "collector_id": self.config.id,
            "config_version": self.config.config_version,
            "sent_at": self.clock().isoformat(),
            "outbox": {
                "pending_readings": stats.pending_readings,
                "batches": stats.batches,
                "batched_readings": stats.batched_readings,
                "dead_letters": stats.dead_letters,
                "refused_readings": stats.refused_readings,
                "used_bytes": stats.used_bytes,
                "max_bytes": stats.max_bytes,
                "full": stats.full,
            },
            "last_send_error": self.last_send_error,
            "devices": [runner.status().model_dump(mode="json") for runner in self.runners.values()],
            "images": self.cameras.stats(),
        }

    # -- commands -------------------------------------------------------------------------------------
    async def _command_loop(self) -> None:
        transport = self.transport
        loop = CommandLoop(
            transport.next_commands,
            transport.send_result,
            self.execute,
            self.config.center.command_poll_s,
            self.answered,
        )
        await loop.run()

    async def execute(self, command: Command) -> CommandResult:
        """Run one command; any failure becomes a 'failed' result with a one-line reason."""
        return await run_command(self._execute, command, self.clock, self._event)

    async def _execute(self, command: Command) -> str:
        return await COMMANDS.run(self, command)

    # -- what command handlers may do (commands.Maintained) ------------------------------------------
    def targets(self, device: str | None) -> list[DeviceRunner]:
        if device is None:
            return list(self.runners.values())
        runner = self.runners.get(device)
        if runner is None:
            raise KeyError(f"no device {device!r} on collector {self.config.id}")
        return [runner]

    async def restart_polling(self) -> int:
        await self._stop_runners()
        self._start_runners()
        return len(self.runners)

    def batch_now(self) -> None:
        self._batch_ready.set()

    async def reload_config(
        self, version: str | None = None, url: str | None = None, text: str | None = None
    ) -> str:
        """``text``: the configuration inside the center's signed command; else fetched from ``url``."""
        if self.config_path is None:
            raise ConfigError("this collector was not started from a file: nothing to reload")
        if version is not None:  # a version pushed by the center: (fetch,) check, write
            await install_pushed_config(self.config, self.config_path, version, url, text)
        config = load_config(self.config_path)  # an invalid file leaves the running config untouched
        notes = []
        if (config.id, config.center, config.outbox) != (
            self.config.id,
            self.config.center,
            self.config.outbox,
        ):
            notes.append("collector id, center and outbox settings take effect at the next start")
            config = config.model_copy(
                update={"id": self.config.id, "center": self.config.center, "outbox": self.config.outbox}
            )
        await self._stop_runners()
        self.config = self.cameras.config = config
        self._start_runners()
        self.report_status(self.collector_status())  # the next batch tells the center the new version
        return f"configuration {config.config_version} loaded: {len(self.runners)} devices" + (
            f" ({'; '.join(notes)})" if notes else ""
        )

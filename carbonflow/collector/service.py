"""The running collector: pollers -> validation -> outbox -> transport, plus status and commands.

``Collector(config).run()`` runs until :meth:`Collector.stop`; ``start``/``stop`` for embedding (the
demo, tests).  Tasks: one per device (poll loop aligned to multiples of its period, clock checks,
online/offline status), the batcher (cuts batches from the outbox), the sender (sends the oldest
unacked batches, backs off while the center is down), the status reporter and the command loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from carbonflow.collector.cameras import CameraService
from carbonflow.collector.clients.errors import DeviceError
from carbonflow.collector.config import LoadedConfig, load_config
from carbonflow.collector.outbox import Outbox, OutboxFull
from carbonflow.collector.pollers import Poller, make_poller, to_ms, utc_now
from carbonflow.collector.remote_config import install_pushed_config
from carbonflow.collector.transport import SendResult, TransportError, make_transport
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.messages.c4 import Ack, Command, CommandResult, DeviceStatus
from carbonflow.messages.collector_config import ConfigError, DeviceConfig
from carbonflow.protocols.errors import ProtocolError

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancel until done: on Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives
    as its inner call completes, and a polling loop would then run on while ``stop`` waits forever."""
    pending = [t for t in tasks if not t.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
        pending = [t for t in pending if not t.done()]
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()


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
        self.poller: Poller = make_poller(device, collector.config, collector.deliver)
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
        self.state.last_seen = to_ms(utc_now())
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
        return self.state.status(self.device.id, self.poller.clock_offset_s)


class Collector:
    DRAIN_S = 3.0  # on a graceful stop, how long the last batches may take to reach the center
    def __init__(
        self,
        config: LoadedConfig,
        config_path: str | Path | None = None,
        transport: Any = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.outbox = Outbox(config.outbox_path, config.outbox.max_readings)
        self.validator = Validator(self.outbox.load_states())
        self.transport = transport or make_transport(config, on_ack=self._on_late_ack)
        self.runners: dict[str, DeviceRunner] = {}
        self.on_event = on_event  # flags and notices, for tests and the CLI log
        self.events: list[str] = []
        self.accepted_readings = 0  # readings that passed validation into the outbox in this run
        self.delivered = 0  # batches acknowledged by the center in this run
        self.rejected = 0
        self.last_send_error: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._batch_ready = asyncio.Event()
        self._send_ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._outbox_full = False
        self.answered: dict[str, CommandResult] = {}  # recent results by command id (this run)
        self.cameras = CameraService(self)  # site cameras: snapshots -> image outbox -> center

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start()
        self._start_runners()
        await self.cameras.start()
        self._tasks = [
            asyncio.create_task(self._batcher(), name="batcher"),
            asyncio.create_task(self._sender(), name="sender"),
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
            self._send_ready.set()
            with contextlib.suppress(TimeoutError):  # a short grace period for the sender, no more
                await asyncio.wait_for(self._drained(), self.DRAIN_S)
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self.transport.stop()
        await self.cameras.stop()
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
            last_seen=to_ms(utc_now()),
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
            if self._form_batches():
                self._send_ready.set()

    async def _sender(self) -> None:
        center = self.config.center
        backoff = center.backoff_min_s
        while True:
            batches = self.outbox.unacked(getattr(self.transport, "max_in_flight", 1))
            if not batches:
                self._send_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._send_ready.wait(), 1.0)
                continue
            results = await asyncio.gather(*(self.transport.send_batch(b.batch_id, b.body) for b in batches))
            trouble = False
            for batch, result in zip(batches, results):
                trouble |= self._settle(batch.batch_id, result)
            if trouble:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, center.backoff_max_s)
            else:
                backoff = center.backoff_min_s

    def _settle(self, batch_id: str, result: SendResult) -> bool:
        """Apply the center's verdict; True when the center is unreachable or refuses us (back off)."""
        if result.outcome == "acked":
            if self.outbox.acknowledge(batch_id):
                self.delivered += 1
            self.last_send_error = None
            return False
        if result.outcome == "rejected":
            self.outbox.dead_letter(batch_id, result.status, result.error)
            self.rejected += 1
            self._event(f"batch {batch_id} rejected by the center, kept as a dead letter: {result.error}")
            return False
        self.outbox.record_failure(batch_id, result.error)
        if result.error != self.last_send_error:
            log.warning("batch %s not delivered (%s): %s", batch_id, result.outcome, result.error)
        self.last_send_error = result.error
        if result.outcome == "unauthorized":
            self._event(f"the center refuses this collector's credentials: {result.error}")
        return True

    def _on_late_ack(self, ack: Ack) -> None:
        """MQTT: an Ack nobody waits for (its batch was sent before a restart) still settles it."""
        if self.outbox.acknowledge(ack.batch_id):
            self.delivered += 1

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
            with contextlib.suppress(TransportError):
                await self.transport.publish_status(self.status())
            await asyncio.sleep(self.config.defaults.status_period_s)

    def status(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        return {
            "collector_id": self.config.id,
            "config_version": self.config.config_version,
            "sent_at": utc_now().isoformat(),
            "outbox": {
                "pending_readings": stats.pending_readings,
                "batches": stats.batches,
                "batched_readings": stats.batched_readings,
                "dead_letters": stats.dead_letters,
                "refused_readings": stats.refused_readings,
                "full": stats.full,
            },
            "last_send_error": self.last_send_error,
            "devices": [runner.status().model_dump(mode="json") for runner in self.runners.values()],
            "images": self.cameras.stats(),
        }

    # -- commands -------------------------------------------------------------------------------------
    async def _command_loop(self) -> None:
        unsent: list[CommandResult] = []  # results the center has not taken yet: sent again, in order
        while True:
            unsent = await self._send_results(unsent)
            try:
                commands = await self.transport.next_commands()
            except TransportError as error:
                log.info("commands not fetched: %s", error)
                await asyncio.sleep(self.config.center.command_poll_s)
                continue
            for command in commands:
                # a command sent again by the center (its answer was lost) is answered, not run twice
                result = self.answered.get(command.command_id) or await self.execute(command)
                self.answered[command.command_id] = result
                while len(self.answered) > 1000:
                    self.answered.pop(next(iter(self.answered)))
                unsent.append(result)
                unsent = await self._send_results(unsent)

    async def _send_results(self, results: list[CommandResult]) -> list[CommandResult]:
        """Send what can be sent; a result that fails (center away, slow) stays for the next round."""
        for index, result in enumerate(results):
            try:
                await self.transport.send_result(result)
            except TransportError as error:
                log.warning("result of command %s not sent yet: %s", result.command_id, error)
                return results[index:]
        return []

    async def execute(self, command: Command) -> CommandResult:
        """Run one command; any failure becomes a 'failed' result with a one-line reason."""
        try:
            detail = await self._execute(command)
            status = "acknowledged"
        except (DeviceError, OSError, ValueError, KeyError, ConfigError, ProtocolError) as error:
            detail, status = " ".join(str(error).split()) or type(error).__name__, "failed"
        except Exception as error:  # the center still gets an answer, and the command loop goes on
            log.exception("command %s failed unexpectedly", command.command_id)
            detail, status = f"internal error: {type(error).__name__}: {error}", "failed"
        self._event(f"command {command.command_id} {command.kind} {command.device or ''}: {status}: {detail}")
        return CommandResult(
            command_id=command.command_id, status=status, detail=detail[:2000], finished_at=utc_now()
        )

    def _targets(self, command: Command) -> list[DeviceRunner]:
        if command.device is None:
            return list(self.runners.values())
        runner = self.runners.get(command.device)
        if runner is None:
            raise KeyError(f"no device {command.device!r} on collector {self.config.id}")
        return [runner]

    async def _execute(self, command: Command) -> str:
        kind = command.kind
        if kind == "reload_config":
            return await self.reload_config(command.params)
        if kind == "restart":
            await self._stop_runners()
            self._start_runners()
            return f"polling restarted for {len(self.runners)} devices"
        if kind == "read_now":
            counts = []
            for runner in self._targets(command):
                counts.append(f"{runner.device.id}: {await runner.poll_once()} readings")
                if runner.state.online is False or runner.state.failures:
                    counts[-1] += f" (failed: {runner.state.last_error})"
            self._batch_ready.set()
            return "; ".join(counts)
        if kind == "time_sync":
            lines, failed = [], []
            for runner in self._targets(command):
                try:
                    lines.append(f"{runner.device.id}: {await runner.poller.time_sync()}")
                except (DeviceError, OSError) as error:
                    failed.append(f"{runner.device.id}: {error}")
            if failed:
                raise DeviceError("; ".join(failed + lines))
            return "; ".join(lines)
        if kind == "set_carbon_factor":
            if command.device is None:
                raise ValueError("set_carbon_factor needs a device")
            runner = self._targets(command)[0]
            return await runner.poller.set_carbon_factor(command.params)
        raise ValueError(f"unknown command kind {kind!r}")

    async def reload_config(self, params: dict[str, Any] | None = None) -> str:
        if self.config_path is None:
            raise ConfigError("this collector was not started from a file: nothing to reload")
        params = params or {}
        if params.get("version") is not None:  # a version pushed by the center: fetch, check, write
            version, url = str(params["version"]), params.get("url")
            await install_pushed_config(self.config, self.config_path, version, url)
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
        self.config = config
        self._start_runners()
        self.report_status(self.collector_status())  # the next batch tells the center the new version
        return f"configuration {config.config_version} loaded: {len(self.runners)} devices" + (
            f" ({'; '.join(notes)})" if notes else ""
        )

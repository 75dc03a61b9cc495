"""The center's remote-maintenance scheduler: one asyncio task, started by the API app's lifespan.

Every ``period_s`` it

* sends back to ``queued`` the commands a collector took (``sent``) but never answered within
  ``command_timeout_s``, and marks ``failed`` those that have had ``max_attempts`` tries
  (``store.requeue_unanswered``) — so a collector restarted mid-command gets it again;
* purges readings, batches and interval results older than the retention (``store.purge_older_than``),
  first ``purge_delay_s`` after start and then every ``purge_every_s`` (daily); each purge is written to
  the audit log;
* compares electric-carbon meters with the platform every ``meter_check_every_s``
  (:func:`carbonflow.center.metering.meter_check.check_meters`, up to the latest metered interval);
* builds the scheduled carbon reports (``settings.report_schedule``) of each period that has ended
  (:func:`carbonflow.center.reports.service.run_scheduled`, each once);
* signs a checkpoint of the hash-chain heads every ``checkpoint_every_s`` (``store.make_checkpoint``,
  docs/tamper-evidence.md), the first one at the first round.

``tick(now)`` does one round synchronously (tests call it with chosen times); the task runs it in a
worker thread so the event loop never waits on the database.  A failing step is logged and retried at
the next round; it never ends the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonflow.center.audit import signing_key
from carbonflow.center.metering.meter_check import check_meters
from carbonflow.center.reports.service import parse_schedule, report_directory, run_scheduled
from carbonflow.center.store import (
    DEFAULT_RETENTION_DAYS,
    PurgeReport,
    Store,
    make_checkpoint,
    purge_older_than,
    record_audit,
    requeue_unanswered,
)

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    at: datetime
    requeued: int = 0
    failed: int = 0
    purge: PurgeReport | None = None
    meter_checks: int = 0
    mismatches: int = 0
    reports: int = 0
    checkpoint: int | None = None  # the id of the checkpoint signed this round
    errors: list[str] = field(default_factory=list)


class MaintenanceScheduler:
    def __init__(
        self,
        store: Store,
        *,
        period_s: float = 30.0,
        command_timeout_s: float = 300.0,
        max_attempts: int = 3,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        purge_every_s: float = 86_400.0,
        purge_delay_s: float = 600.0,
        meter_check_every_s: float | None = 900.0,
        clock: Callable[[], datetime] | None = None,
        reports: Callable[[], list] | None = None,
        checkpoint_key: Callable[[], Ed25519PrivateKey] | None = None,
        checkpoint_every_s: float = 3600.0,
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.store = store
        self.period_s = period_s
        self.command_timeout = timedelta(seconds=command_timeout_s)
        self.max_attempts = max_attempts
        self.retention_days = retention_days
        self.purge_every = timedelta(seconds=purge_every_s)
        self.meter_check_every = None if not meter_check_every_s else timedelta(seconds=meter_check_every_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        started = self.clock()
        self.next_purge = started + timedelta(seconds=purge_delay_s)
        self.next_meter_check = started
        self.reports = reports  # builds the scheduled reports of ended periods, answers those made
        # loaded (or made) at the first checkpoint, not at start: a center that never signs needs no file
        self.checkpoint_key = checkpoint_key if checkpoint_every_s else None
        self.checkpoint_every = timedelta(seconds=checkpoint_every_s)
        self.next_checkpoint = started
        self.last: TickReport | None = None
        self._task: asyncio.Task | None = None
        # called with the results after meter checks were stored (the alarm engine's on_meter_checks)
        self.meter_check_listeners: list[Callable[[list], Any]] = []

    def tick(self, now: datetime | None = None) -> TickReport:
        now = now or self.clock()
        report = TickReport(now)
        try:
            report.requeued, report.failed = requeue_unanswered(
                self.store, self.command_timeout, max_attempts=self.max_attempts, now=now
            )
            if report.failed:
                log.warning(
                    "%d commands failed: no answer after %d attempts", report.failed, self.max_attempts
                )
        except Exception as error:  # the next round retries
            report.errors.append(f"requeue: {error}")
        if now >= self.next_purge:
            try:
                report.purge = purge_older_than(self.store, self.retention_days, now=now)
                record_audit(
                    self.store,
                    "maintenance",
                    "retention.purge",
                    None,
                    {"cutoff": report.purge.cutoff.isoformat(), "rows": report.purge.rows_deleted},
                )
                self.next_purge = now + self.purge_every
            except Exception as error:
                report.errors.append(f"purge: {error}")
        if self.meter_check_every is not None and now >= self.next_meter_check:
            try:
                results = check_meters(self.store)
                if results:
                    for listener in self.meter_check_listeners:
                        listener(results)
                report.meter_checks = len(results)
                report.mismatches = sum(r.status == "mismatch" for r in results)
                self.next_meter_check = now + self.meter_check_every
            except Exception as error:
                report.errors.append(f"meter checks: {error}")
        if self.reports is not None:
            try:
                report.reports = len(self.reports())
            except Exception as error:
                report.errors.append(f"reports: {error}")
        if self.checkpoint_key is not None and now >= self.next_checkpoint:
            try:
                report.checkpoint = make_checkpoint(self.store, self.checkpoint_key(), now=now)["id"]
                self.next_checkpoint = now + self.checkpoint_every
            except Exception as error:
                report.errors.append(f"checkpoint: {error}")
        for error in report.errors:
            log.error("maintenance: %s", error)
        self.last = report
        return report

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            await asyncio.to_thread(self.tick)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="center maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def scheduler_from_settings(store: Store, settings: Any) -> MaintenanceScheduler | None:
    """The scheduler the API app runs (None when ``maintenance_period_s`` is 0)."""
    period = getattr(settings, "maintenance_period_s", 30.0)
    if not period:
        return None
    return MaintenanceScheduler(
        store,
        period_s=period,
        command_timeout_s=getattr(settings, "command_timeout_s", 300.0),
        max_attempts=getattr(settings, "command_max_attempts", 3),
        retention_days=settings.retention_days,
        meter_check_every_s=getattr(settings, "meter_check_period_s", 900.0),
        reports=_scheduled_reports(store, settings),
        **_checkpoints(settings),
    )


def _checkpoints(settings: Any) -> dict[str, Any]:
    period = getattr(settings, "audit_checkpoint_period_s", 0)
    if not period:
        return {"checkpoint_every_s": 0}
    key: list[Ed25519PrivateKey] = []  # read once, then kept

    def loaded() -> Ed25519PrivateKey:
        if not key:
            key.append(signing_key(settings))
        return key[0]

    return {"checkpoint_key": loaded, "checkpoint_every_s": period}


def _scheduled_reports(store: Store, settings: Any) -> Callable[[], list] | None:
    schedule = parse_schedule(getattr(settings, "report_schedule", None) or [])
    if not schedule:
        return None
    directory = report_directory(settings)
    return lambda: run_scheduled(store, directory, schedule, time_zone=settings.time_zone)

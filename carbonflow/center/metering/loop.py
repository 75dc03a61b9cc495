"""Meter every interval once its data is in: the center's clock-driven loop.

Interval ``k`` ends at a multiple of ``interval_s``; it is metered ``grace_s`` after its end so that
the polls around the boundary have arrived (counters are interpolated to the boundary from readings on
both sides).  The clock is the wall clock in production and the simulated clock in the demo (``speed``
says how many clock seconds pass per real second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from carbonflow.center.metering.service import IntervalOutcome, MeteringService

log = logging.getLogger(__name__)


def interval_end_after(moment: datetime, interval_s: int) -> datetime:
    """The first interval end strictly after ``moment``."""
    seconds = int(moment.timestamp()) // interval_s * interval_s + interval_s
    return datetime.fromtimestamp(seconds, UTC)


class MeteringLoop:
    def __init__(
        self,
        service: MeteringService,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        speed: float = 1.0,
        grace_s: float | None = None,
        on_outcome: Callable[[IntervalOutcome], None] | None = None,
        max_intervals: int | None = None,
    ) -> None:
        self.service = service
        self.now = now
        self.speed = speed
        self.grace = timedelta(seconds=service.interval_s / 2 if grace_s is None else grace_s)
        self.on_outcome = on_outcome
        self.max_intervals = max_intervals
        self.metered = 0
        self.skipped = 0
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or self._stop
        # the interval in progress has no reading at its start: begin with the next whole one
        next_end = interval_end_after(self.now(), self.service.interval_s) + timedelta(
            seconds=self.service.interval_s
        )
        while not stop.is_set():
            wait_s = (next_end + self.grace - self.now()).total_seconds() / self.speed
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
                continue
            outcome = await asyncio.to_thread(self.service.meter_interval, next_end)
            if outcome.stored:
                self.metered += 1
            else:
                self.skipped += 1
                log.warning("interval ending %s not metered: %s", next_end.isoformat(), outcome.error)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            next_end += timedelta(seconds=self.service.interval_s)
            if self.max_intervals is not None and self.metered >= self.max_intervals:
                return

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="metering")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

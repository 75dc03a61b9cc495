"""Meter every interval once its data is in, and again when late data arrives: the center's loop.

Interval ``k`` ends at a multiple of ``interval_s``; it is metered ``grace_s`` after its end so that
the polls around the boundary have arrived — and, where the service can tell (``counters_awaited``),
once every counter read lately has a reading at or after the boundary, waiting at most ``max_wait_s``
more: a boundary value still on its way would otherwise be estimated, and the interval metered from
extrapolations first and again a moment later (on a busy machine, or at the demo's accelerated clock,
the readings of a boundary can take longer than the grace).  The clock is the wall clock in production and the
simulated clock in the demo (``speed`` says how many clock seconds pass per real second).

An interval that was not complete — not metered at all, or metered with estimates (readings that had not
arrived: a busy collector, a center outage, a link down) — stays *pending* for ``remeter_window_s``: at
every tick the loop counts the readings it would be metered from, and when more have arrived it meters
it again (a new version; the earlier one is kept).  No interval stays unmetered once its data is there.
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
        remeter_window_s: float | None = None,
        max_wait_s: float | None = None,
    ) -> None:
        self.service = service
        self.now = now
        self.speed = speed
        self.grace = timedelta(seconds=service.interval_s / 2 if grace_s is None else grace_s)
        self.max_wait = timedelta(seconds=service.interval_s / 2 if max_wait_s is None else max_wait_s)
        self.waited = 0  # intervals metered later than their grace because boundary readings were awaited
        self.on_outcome = on_outcome
        # more listeners of each outcome (first metering and every new version), each called in a
        # worker thread after ``on_outcome``: e.g. the cascade takes the interval's part from here
        self.observers: list[Callable[[IntervalOutcome], None]] = []
        self.max_intervals = max_intervals
        self.metered = 0
        self.skipped = 0
        self.remetered = 0
        window = 60 * service.interval_s if remeter_window_s is None else remeter_window_s
        self.remeter_window = timedelta(seconds=window)
        self.pending: dict[datetime, int] = {}  # incomplete interval end -> readings it was metered from
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self._metering = asyncio.Lock()  # one interval metered at a time (the service keeps state)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or self._stop
        awaited = getattr(self.service, "counters_awaited", None)
        tick_s = self.service.interval_s / 30 / self.speed
        watch = getattr(self.service, "incomplete_intervals", None)
        if watch is not None:  # a restarted center keeps waiting for the late data of its last run
            self.pending.update(await asyncio.to_thread(watch, self.now() - self.remeter_window))
        # the interval in progress has no reading at its start: begin with the next whole one
        next_end = interval_end_after(self.now(), self.service.interval_s) + timedelta(
            seconds=self.service.interval_s
        )
        waiting = False
        while not stop.is_set():
            wait_s = (next_end + self.grace - self.now()).total_seconds() / self.speed
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
                continue
            if await self._awaiting(awaited, next_end):
                waiting = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick_s)
                continue
            self.waited += waiting
            waiting = False
            async with self._metering:
                await self._remeter_pending(next_end)
                if self._enough():  # late data completed an interval never metered before
                    return
                outcome = await asyncio.to_thread(self.service.meter_interval, next_end)
            if outcome.stored:
                self.metered += 1
            else:
                self.skipped += 1
                log.warning("interval ending %s not metered: %s", next_end.isoformat(), outcome.error)
            self._track(outcome)
            await self._notify(outcome)
            next_end += timedelta(seconds=self.service.interval_s)
            if self._enough():
                return

    async def _awaiting(self, awaited: Callable[[datetime], int] | None, end: datetime) -> bool:
        """Boundary readings of the interval ending at ``end`` are on their way and may be waited for."""
        if awaited is None or self.now() >= end + self.grace + self.max_wait:
            return False
        return await asyncio.to_thread(awaited, end) > 0

    def _enough(self) -> bool:
        return self.max_intervals is not None and self.metered >= self.max_intervals

    def _track(self, outcome: IntervalOutcome) -> None:
        if outcome.complete:
            self.pending.pop(outcome.end, None)
        else:
            self.pending[outcome.end] = outcome.readings

    async def _remeter_pending(self, newest: datetime) -> None:
        """Meter again every pending interval for which more readings have arrived."""
        for end in sorted(self.pending):
            if newest - end > self.remeter_window:
                del self.pending[end]  # given up: it keeps its last version, estimates named
                continue
            available = await asyncio.to_thread(self.service.readings_available, end)
            if available <= self.pending[end]:
                continue
            reason = f"late readings: {available - self.pending[end]} more"
            outcome = await asyncio.to_thread(self.service.meter_interval, end, reason=reason)
            self.remetered += 1
            self._track(outcome)
            if outcome.stored and outcome.version == 1:
                self.metered += 1
            await self._notify(outcome)

    async def remeter(self, end: datetime, reason: str) -> IntervalOutcome:
        """Meter an interval again now, for a reason other than late readings (a neighbour's tie
        intensities arrived: ``center/crossregion``); observers hear of the new version as usual."""
        async with self._metering:
            outcome = await asyncio.to_thread(self.service.meter_interval, end, reason=reason)
            self.remetered += 1
            self._track(outcome)
            await self._notify(outcome)
        return outcome

    async def _notify(self, outcome: IntervalOutcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        for observer in self.observers:
            try:
                await asyncio.to_thread(observer, outcome)
            except Exception:  # one listener's failure never stops the metering
                log.exception("observer of interval %s failed", outcome.end.isoformat())

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="metering")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

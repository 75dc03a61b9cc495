"""Checks every value passes before it enters the outbox: duplicates and out-of-order data, counter
roll-over and resets, plausibility bounds.  Pure logic over a per-point state the outbox persists.

* A reading whose ``ts`` is not after the point's last accepted ``ts`` is dropped (a duplicate when
  equal, out of order when earlier) - the center would store only one value per ``(point, ts)`` anyway.
  A last ``ts`` ahead of the collector's clock (the clock was stepped back) is forgotten first
  (:meth:`Validator.forget_future`), so a clock correction does not drop the readings that follow it.
* Counters: a value below the previous one either rolled over (the register wraps modulo ``rollover``
  and the wrapped increase is less than half the range) - the collector then sends the corrected,
  monotone value ``shown + wraps x rollover`` with quality good - or was reset (cleared, replaced
  meter): the reading is sent as shown with quality ``invalid`` and a flag, and becomes the new base.
* A value outside ``[min, max]`` is sent as shown with quality ``invalid`` and a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from carbonflow.messages.c4 import Quality, Reading
from carbonflow.messages.collector_config import PointConfig

QUALITY_RANK = {"good": 0, "estimated": 1, "stale": 2, "invalid": 3}


def worst(a: Quality, b: Quality) -> Quality:
    return a if QUALITY_RANK[a] >= QUALITY_RANK[b] else b


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits, keeping the device's own precision ('25.00' stays '25.00')."""
    return format(value, "f")


@dataclass(frozen=True)
class RawValue:
    """A value as a poller got it: point name within the device, engineering value, UTC time."""

    point: str
    value: Decimal | None
    ts: datetime
    quality: Quality = "good"


@dataclass
class PointState:
    last_ts: datetime | None = None
    last_raw: Decimal | None = None  # counters: the last value as the device showed it
    wraps: int = 0  # counters: roll-overs seen since the base


@dataclass(frozen=True)
class Verdict:
    reading: Reading | None  # None: dropped
    flag: str | None = None  # what was noticed (reset, roll-over, out of bounds, dropped ...)


class Validator:
    """Validates readings point by point; :attr:`changed` lists the states to persist."""

    def __init__(self, states: dict[str, PointState] | None = None) -> None:
        self.states: dict[str, PointState] = dict(states or {})
        self.changed: set[str] = set()
        self.dropped = 0
        self.newest = self._newest()  # the latest last_ts of any point

    def _newest(self) -> datetime | None:
        return max((s.last_ts for s in self.states.values() if s.last_ts is not None), default=None)

    def forget_future(self, now: datetime, tolerance_s: float = 2.0) -> list[str]:
        """The points whose last time lies ahead of ``now`` (the collector's clock): a clock stepped back
        after running fast (or corrected while the collector was down) would otherwise have their next
        readings dropped as out of order until it caught up.  Their last time is forgotten (the next
        reading is taken); returns them.  Cheap when nothing is ahead (one comparison)."""
        limit = now + timedelta(seconds=tolerance_s)
        if self.newest is None or self.newest <= limit:
            return []
        ahead = [p for p, s in self.states.items() if s.last_ts is not None and s.last_ts > limit]
        for point in ahead:
            self.states[point].last_ts = None
            self.changed.add(point)
        self.newest = self._newest()
        return ahead

    def check(self, point_id: str, config: PointConfig, raw: RawValue) -> Verdict:
        state = self.states.setdefault(point_id, PointState())
        if state.last_ts is not None and raw.ts <= state.last_ts:
            self.dropped += 1
            what = "duplicate" if raw.ts == state.last_ts else "out of order"
            return Verdict(None, f"{point_id}: {what} reading at {raw.ts.isoformat()} dropped")
        state.last_ts = raw.ts
        if self.newest is None or raw.ts > self.newest:
            self.newest = raw.ts
        self.changed.add(point_id)
        quality: Quality = raw.quality
        flag: str | None = None
        value = raw.value
        if value is None:
            return Verdict(Reading(point=point_id, ts=raw.ts, value=None, quality="invalid"))
        if config.kind == "counter" and quality != "invalid":
            value, counter_quality, flag = self._counter(point_id, config, state, value)
            quality = worst(quality, counter_quality)
        if (config.min is not None and value < config.min) or (config.max is not None and value > config.max):
            quality = "invalid"
            flag = f"{point_id}: {decimal_text(value)} outside [{config.min}, {config.max}]"
        return Verdict(Reading(point=point_id, ts=raw.ts, value=decimal_text(value), quality=quality), flag)

    @staticmethod
    def _counter(
        point_id: str, config: PointConfig, state: PointState, shown: Decimal
    ) -> tuple[Decimal, Quality, str | None]:
        previous, rollover = state.last_raw, config.rollover
        state.last_raw = shown
        if previous is None or shown >= previous:
            return _corrected(shown, state, rollover), "good", None
        if rollover is not None and shown - previous + rollover < rollover / 2:
            state.wraps += 1
            corrected = _corrected(shown, state, rollover)
            return (
                corrected,
                "good",
                (
                    f"{point_id}: counter rolled over at {rollover} ({previous} -> {shown}), "
                    f"sent as {decimal_text(corrected)}"
                ),
            )
        state.wraps = 0  # a reset: the shown value is the new base
        return shown, "invalid", f"{point_id}: counter went backwards ({previous} -> {shown}): reset?"


def _corrected(shown: Decimal, state: PointState, rollover: Decimal | None) -> Decimal:
    return shown if rollover is None or not state.wraps else shown + state.wraps * rollover

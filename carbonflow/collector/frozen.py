"""Frozen counters: which freeze records a poller reads after a boundary, and the readings it makes.

A meter with a ``freeze_period_s`` freezes its counters at every multiple of that period on its own
clock and keeps the last records (DL/T 645 整点冻结 ``0504``, DL/T 698.45 minute / hour freeze
``5002``/``5003``).  Once the meter's clock (collector time + measured offset) has passed a boundary not
yet delivered, the poller reads records newest first - record 1, 2, ... - back to the last one it
delivered (at most the record depth; on the first start at most :data:`FIRST_RECORDS`), and delivers
them oldest first, before the poll's live values, as readings of the SAME points as the live counters
(the points marked ``frozen``), value exactly as the meter shows it:

* ``ts`` is the record's freeze time in the device's zone, converted to UTC.  When the measured clock
  offset is within the device's ``clock_tolerance_s`` the meter's clock counts as right and ``ts`` is
  that boundary exactly; beyond it ``ts`` = freeze time - offset and the quality is ``estimated`` (the
  value is right, its time is not sure);
* a freeze time still in the future after that correction cannot be placed: quality ``invalid`` at the
  time it was read, and a note;
* right after a boundary, until its record is delivered (at most ``clock_tolerance_s`` + 1 s), live
  reads of frozen points are held back, so that a live reading never lands after the boundary before
  the frozen one (the collector drops readings older than the last one of a point).

:attr:`FreezeTracker.note` says what is wrong with the freezes of the device (refused, missing, clock
beyond tolerance, a tag from the future), or None.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from carbonflow.collector.clients.errors import DeviceRejected
from carbonflow.collector.validate import RawValue
from carbonflow.messages.c4 import Quality
from carbonflow.messages.collector_config import DeviceConfig

log = logging.getLogger(__name__)

FIRST_RECORDS = 16  # records read back on the first freeze read after a (re)start
HOLD_MARGIN_S = 1.0  # live reads of frozen points wait this long past the tolerance for the record
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FrozenRecord:
    """One freeze record as read: its time as the meter shows it (naive, the device's zone) and the
    values of the frozen points by point name (None: the meter has no value for it)."""

    tag: datetime
    values: dict[str, Decimal | None]


ReadRecord = Callable[[int], Awaitable[FrozenRecord | None]]  # n-th last record (1 = newest), None: none


def last_boundary(moment: datetime, period_s: float) -> datetime:
    """The last freeze (interval) boundary at or before ``moment``: a multiple of ``period_s`` since
    the UNIX epoch."""
    seconds = (moment - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=seconds // period_s * period_s)


def straddles(before: datetime, after: datetime, offset_s: float | None, period_s: float) -> bool:
    """Did a read between ``before`` and ``after`` (collector time) reach a boundary on the meter's
    clock (collector time + ``offset_s``)?  Its value may then hold energy from after the boundary
    while its time tag (the middle of the exchange) lies before it; the boundary's frozen value, which
    comes next, would then seem lower than the reading before it - a register "running backwards"
    (seen on a busy machine, where one exchange lasts seconds).  Such a live counter value is dropped:
    the frozen one gives the boundary exactly."""
    offset = timedelta(seconds=offset_s or 0.0)
    return last_boundary(after + offset, period_s) > before + offset


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class FreezeTracker:
    """The freeze bookkeeping of one device: what was delivered, what is due, the readings to make."""

    def __init__(self, device: DeviceConfig, depth: int) -> None:
        self.device = device
        self.period_s = device.freeze_period_s or 0
        self.points = [p for p in device.points if p.frozen]
        self.depth = depth
        self.tolerance_s = float(device.clock_tolerance_s)
        self.last_tag: datetime | None = None  # UTC freeze time of the newest record delivered
        self.note: str | None = None
        self.since: datetime | None = None  # the first freeze read: boundaries before it may lack records

    @property
    def active(self) -> bool:
        return bool(self.period_s and self.points)

    def boundary(self, moment: datetime) -> datetime:
        """The last freeze boundary at or before ``moment``."""
        return last_boundary(moment, self.period_s)

    def due(self, now: datetime, offset_s: float | None) -> bool:
        """Has the meter's clock passed a boundary whose record was not delivered yet?"""
        if not self.active:
            return False
        latest = self.boundary(now + timedelta(seconds=offset_s or 0.0))
        return self.last_tag is None or latest > self.last_tag

    def holding(self, now: datetime, offset_s: float | None = None) -> bool:
        """Hold back live reads of frozen points: on the meter's clock (``now`` + its measured offset)
        a boundary just passed and its record is not in."""
        if not self.active:
            return False
        device_now = now + timedelta(seconds=offset_s or 0.0)
        boundary = self.boundary(device_now)
        waiting = self.last_tag is None or self.last_tag < boundary
        return waiting and (device_now - boundary).total_seconds() < self.tolerance_s + HOLD_MARGIN_S

    def keeps_live(self, point, before: datetime, after: datetime, offset_s: float | None) -> bool:
        """Is the live value of ``point`` read between ``before`` and ``after`` kept (see
        :func:`straddles`)?"""
        return not (self.active and point.frozen and straddles(before, after, offset_s, self.period_s))

    def live_points(self, now: datetime, offset_s: float | None = None) -> list:
        """The device's points to read live now."""
        hold = self.holding(now, offset_s)
        return [p for p in self.device.points if not (hold and p.frozen)]

    async def collect(self, read: ReadRecord, now: datetime, offset_s: float | None) -> list[RawValue]:
        """Read the records not delivered yet (newest first) and make their readings (oldest first)."""
        records: list[tuple[datetime, FrozenRecord]] = []
        period = timedelta(seconds=self.period_s)
        self.since = self.since or now
        try:
            for number in range(1, (self.depth if self.last_tag else min(self.depth, FIRST_RECORDS)) + 1):
                record = await read(number)
                if record is None:
                    break
                tag = record.tag.replace(tzinfo=self.device.zone).astimezone(UTC)
                if self.last_tag is not None and tag <= self.last_tag:
                    break
                records.append((tag, record))
                if self.last_tag is not None and tag - period <= self.last_tag:
                    break  # the one before it was delivered already
        except DeviceRejected as error:
            self._say(f"freeze records not readable: {error}")
            return []
        values = self._readings(records, now, offset_s or 0.0)
        placed = [
            tag
            for tag, _ in records
            if tag <= now + timedelta(seconds=abs(offset_s or 0.0) + self.tolerance_s)
        ]
        if placed:  # a tag from the future must not stop the reading of the records to come
            self.last_tag = max(self.last_tag or placed[0], *placed)
        elif self.due(now, offset_s):
            expected = self.boundary(now + timedelta(seconds=offset_s or 0.0))
            late = (now - expected).total_seconds() - abs(offset_s or 0.0)
            if expected > self.since and late > self.tolerance_s + HOLD_MARGIN_S:
                self._say(f"no freeze record for {expected.isoformat()} yet ({late:.0f} s after it)")
        return values

    def _readings(
        self, records: list[tuple[datetime, FrozenRecord]], now: datetime, offset_s: float
    ) -> list[RawValue]:
        beyond = abs(offset_s) > self.tolerance_s
        notes = []
        if beyond and records:
            notes.append(
                f"clock offset {offset_s:+.3f} s beyond tolerance {self.tolerance_s:g} s: "
                "frozen readings estimated at the corrected time"
            )
        values: list[RawValue] = []
        for tag, record in reversed(records):
            ts = tag - timedelta(seconds=offset_s) if beyond else tag
            quality: Quality = "estimated" if beyond else "good"
            if ts > now + timedelta(seconds=self.tolerance_s):
                notes.append(f"freeze time {record.tag.isoformat(sep=' ')} is in the future")
                ts, quality = now, "invalid"
            for point in self.points:
                value = record.values.get(point.name)
                values.append(
                    RawValue(point.name, value, _ms(ts), quality if value is not None else "invalid")
                )
        if records:
            self._say("; ".join(notes) if notes else None)
        values.sort(key=lambda v: v.ts)  # stable: a misplaced record must not put the others out of order
        return values

    def _say(self, note: str | None) -> None:
        if note != self.note and note is not None:
            log.warning("%s: %s", self.device.id, note)
        self.note = note

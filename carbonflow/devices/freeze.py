"""Interval boundaries of a device's own clock, where it freezes (snapshots) its counters.

Every device with a ``freeze_period_s`` freezes at each multiple of that period counted from the UTC
epoch, by its own clock - so a 900 s period freezes at :00, :15, :30, :45 whatever the station's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_boundary(t: datetime, period_s: int) -> datetime:
    """The first multiple of ``period_s`` (seconds since the UTC epoch) at or after ``t``."""
    period = timedelta(seconds=period_s)
    return EPOCH + -((EPOCH - t) // period) * period


def last_boundary(t: datetime, period_s: int) -> datetime:
    """The last multiple of ``period_s`` at or before ``t``."""
    period = timedelta(seconds=period_s)
    return EPOCH + ((t - EPOCH) // period) * period

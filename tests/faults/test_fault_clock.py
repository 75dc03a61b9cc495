"""A collector's clock skewed (libfaketime, changed while the collector runs, as NTP would step it):
10 minutes slow - every batch is refused as stale (beyond the 5-minute freshness window), audited, and
kept; 90 s slow - inside the window, the kept batches go (signed anew at each send) and new ones too;
right again; 90 s fast; stepped back to the right time - the readings after the step are taken (not
dropped as older than the fast clock's).  The collector is never restarted and nothing is requeued
by hand; the books balance exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import glob
from datetime import UTC, datetime, timedelta

from faultfield import Center, Collector, Field, assert_nothing_lost, outbox_ledger, running, wait_for
from servers import unavailable
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from sqlalchemy import func, select

from carbonflow.center.store.schema import AuditEntry, Reading


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(
        glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    if not found:
        unavailable("libfaketime is not installed (apt-get install libfaketime)")
    return found[0]


def refusals(field: Field) -> int:
    assert field.store is not None
    with field.store.read() as connection:
        return connection.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "collector.refused")
        ).scalar_one()


POLLED = ("EM-U04/", "ECM-G3-1/", "MB-S057-1/")  # stamped by the collector's clock (no time tag)


def polled_since(field: Field, moment: datetime) -> int:
    """Readings of the polled meters stamped 1.5 s to 30 s after ``moment`` (libfaketime may keep the
    old offset for up to a second)."""
    assert field.store is not None
    with field.store.read() as connection:
        points = connection.execute(
            select(Reading.point_id).where(
                Reading.ts >= moment + timedelta(seconds=1.5), Reading.ts < moment + timedelta(seconds=30)
            )
        ).scalars()
        return sum(1 for point in points if point.startswith(POLLED))


def test_a_skewed_collector_clock(tmp_path, database_url):  # noqa: F811
    skew = tmp_path / "skew"  # libfaketime reads the offset from this file (at most 1 s old)
    skew.write_text("-10m\n")
    field = Field(tmp_path, database_url)
    center = Center(database_url, tmp_path)
    collector = Collector(
        tmp_path,
        env={
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(skew),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # the event loop's timers stay sane
        },
    )

    async def body() -> None:
        field.collector_config(center.url)
        await center.start()
        await collector.start()
        await wait_for(lambda: refusals(field) >= 3, "batches refused as stale")
        slow = outbox_ledger(field.outbox)
        assert field.batches_at_center() == 0  # nothing got in with a stale stamp
        assert slow.unacked >= 1 and slow.dead == 0  # kept, not dead-lettered: the batch is fine
        skew.write_text("-90s\n")  # NTP steps the clock: still slow, but inside the window
        await wait_for(lambda: field.batches_at_center() >= slow.formed + 3, "the kept batches and new ones")
        skew.write_text("+90s\n")  # then 90 s fast (inside the window): readings stamped ahead
        await wait_for(
            lambda: polled_since(field, datetime.now(UTC) + timedelta(seconds=60)) >= 9,
            "readings stamped by the fast clock",
        )
        step_back = datetime.now(UTC)
        skew.write_text("+0\n")  # stepped back to the right time: the next readings must not be dropped
        await wait_for(
            lambda: polled_since(field, step_back) >= 9, "polled readings right after the step back"
        )
        assert "ahead of the collector's clock" in collector.output()
        assert collector.starts == 1  # never restarted
        await field.drain(collector)
        assert_nothing_lost(field.outbox, field.store, min_readings=50)

    asyncio.run(running(field, body, collector, center))


def test_a_last_time_ahead_of_the_clock_is_forgotten():
    from decimal import Decimal

    from carbonflow.collector.validate import PointState, RawValue, Validator
    from carbonflow.messages.collector_config import PointConfig

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    ahead, behind = now + timedelta(seconds=90), now - timedelta(seconds=5)
    validator = Validator({"A/1": PointState(ahead, Decimal(5)), "B/1": PointState(behind, Decimal(5))})
    counter = PointConfig(name="1", di="00010000", kind="counter")
    assert validator.check("A/1", counter, RawValue("1", Decimal(6), now)).reading is None  # out of order
    assert validator.forget_future(now + timedelta(seconds=1)) == ["A/1"]  # B/1 is not ahead
    assert validator.forget_future(now + timedelta(seconds=1)) == []  # once
    verdict = validator.check("A/1", counter, RawValue("1", Decimal(6), now))
    assert verdict.reading is not None and verdict.reading.quality == "good"  # the counter base is kept
    assert "A/1" in validator.changed and validator.states["B/1"].last_ts == behind

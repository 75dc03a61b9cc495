"""A collector's clock skewed (libfaketime, changed while the collector runs, as NTP would step it):
10 minutes slow - every batch is refused as stale (beyond the 5-minute freshness window), audited, and
kept; 90 s slow - inside the window, the kept batches go (signed anew at each send) and new ones too;
then right again.  The collector is never restarted and nothing is requeued by hand; the books balance
exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import glob

from faultfield import Center, Collector, Field, assert_nothing_lost, outbox_ledger, running, wait_for
from servers import unavailable
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from sqlalchemy import func, select

from carbonflow.center.store.schema import AuditEntry


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
        skew.write_text("+0\n")  # right again (a step forward: no reading's time goes backwards)
        seen = field.batches_at_center()
        await wait_for(lambda: field.batches_at_center() >= seen + 3, "batches with the right time")
        assert collector.starts == 1  # never restarted
        await field.drain(collector)
        assert_nothing_lost(field.outbox, field.store, min_readings=50)

    asyncio.run(running(field, body, collector, center))

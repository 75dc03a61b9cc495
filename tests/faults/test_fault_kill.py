"""kill -9 of the center during ingestion and of the collector mid-batch, on SQLite and PostgreSQL: the
killed process is started again with the same command (as a supervisor would) and the books balance
exactly — every reading the collector appended is stored once at the center, every batch seq once."""

from __future__ import annotations

import asyncio

from faultfield import Center, Collector, Field, assert_nothing_lost, running, wait_for
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401


def test_center_killed_during_ingestion(tmp_path, database_url):  # noqa: F811
    field = Field(tmp_path, database_url)
    center = Center(database_url, tmp_path)
    collector = Collector(tmp_path)

    async def body() -> None:
        field.collector_config(center.url)
        await center.start()
        await collector.start()
        for _ in range(2):  # twice: the second kill lands on a center that recovered once already
            seen = field.batches_at_center()
            await wait_for(lambda s=seen: field.batches_at_center() >= s + 3, "batches to arrive")
            await center.kill()  # SIGKILL in the middle of a stream of batches
            await asyncio.sleep(1.0)  # the collector meets a dead port meanwhile, backs off, keeps polling
            await center.start()
        seen = field.batches_at_center()
        await wait_for(lambda: field.batches_at_center() >= seen + 3, "batches after the last restart")
        assert "not delivered" in collector.output()  # the fault bit: sends failed, and were retried
        await field.drain(collector)
        assert_nothing_lost(field.outbox, field.store, min_readings=50)

    asyncio.run(running(field, body, collector, center))


def test_collector_killed_mid_batch(tmp_path, database_url):  # noqa: F811
    field = Field(tmp_path, database_url)
    center = Center(database_url, tmp_path)
    collector = Collector(tmp_path)

    async def body() -> None:
        field.collector_config(center.url)
        await center.start()
        await collector.start()
        for _ in range(2):  # formed, in flight, acknowledged-but-not-yet-deleted: somewhere in between
            seen = field.batches_at_center()
            await wait_for(lambda s=seen: field.batches_at_center() >= s + 3, "batches to arrive")
            await collector.kill()
            await collector.start()
        await field.drain(collector)
        assert_nothing_lost(field.outbox, field.store, min_readings=50)

    asyncio.run(running(field, body, collector, center))

"""The outbox's disk limit filled: while the center is away the collector's outbox grows to
``outbox.max_bytes`` (SQLite's ``max_page_count``: exactly a full disk), refuses further readings (counted
and reported, never a silent loss), never locks up (the batch reserve), and once the center is back it
delivers every stored reading once and takes readings again — with no manual step."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from faultfield import (
    COLLECTOR,
    Center,
    Collector,
    Field,
    assert_nothing_lost,
    outbox_ledger,
    running,
    wait_for,
)
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from sqlalchemy import select

from carbonflow.center.store.schema import Collector as CollectorRow
from carbonflow.collector.outbox import Outbox, OutboxFull
from carbonflow.messages.c4 import Reading

MAX_BYTES = 160 * 1024


def readings(n: int, start: int = 0) -> list[Reading]:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    return [
        Reading(point=f"M{i % 7}/1", ts=t0 + timedelta(seconds=i), value=f"{i}.00")
        for i in range(start, start + n)
    ]


def test_a_really_full_disk_refuses_counts_and_recovers(tmp_path):
    """SQLITE_FULL before the configured bound (another program filled the disk): appends are refused
    and counted (not an exception that ends polling), cutting a batch waits, nothing stored is lost."""
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=64 * 1024 * 1024)
    assert outbox.append(readings(100)) == 100
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
    refused = 0
    for k in range(1, 30):
        try:
            outbox.append(readings(50, 100 * k))
        except OutboxFull as full:
            assert "disk full" in str(full) or "full" in str(full)
            refused += 50
    assert refused > 0
    assert outbox.stats().refused_readings == refused
    stored = outbox.stats().pending_readings
    outbox.form_batch("c1", b"secret-123", 1000, 0.0, force=True)  # may or may not find room: no exception
    outbox._db.execute(f"PRAGMA max_page_count = {64 * 1024 * 1024 // outbox.page_size}")  # disk freed
    assert outbox.append(readings(10, 10_000)) == 10
    cut = 0
    while (batch := outbox.form_batch("c1", b"secret-123", 1000, 0.0, force=True)) is not None:
        cut += len(batch.readings)
        assert outbox.acknowledge(batch.batch_id)
    total = outbox._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()[0]
    assert cut == stored + 10 == total  # every stored reading in exactly one batch
    assert outbox.stats().refused_readings == refused
    outbox.close()


def test_the_bound_keeps_room_to_cut_batches(tmp_path):
    """Filled to its bound with the center away, the outbox still cuts every pending reading into
    batches (the reserve): it never ends up full of readings it cannot send."""
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=MAX_BYTES, reserve_bytes=64 * 1024 + 40 * 300)
    appended, refused, k = 0, 0, 0
    while refused < 500:
        try:
            appended += outbox.append(readings(20, 20 * k))
        except OutboxFull:
            refused += 20
        k += 1
        while outbox.form_batch("c1", b"secret-123", 40, 10.0) is not None:
            pass
    assert outbox.stats().full and outbox.stats().used_bytes <= MAX_BYTES
    assert (tmp_path / "outbox.sqlite").stat().st_size <= MAX_BYTES
    while outbox.form_batch("c1", b"secret-123", 40, 0.0, force=True) is not None:
        pass
    stats = outbox.stats()
    assert stats.pending_readings == 0 and stats.batched_readings == appended
    assert stats.refused_readings == refused
    for batch in outbox.unacked(10_000):
        assert outbox.acknowledge(batch.batch_id)
    assert not outbox.stats().full and outbox.append(readings(20, 10**6)) == 20  # room again
    outbox.close()


def center_report(field: Field) -> dict:
    assert field.store is not None
    with field.store.read() as connection:
        report = connection.execute(
            select(CollectorRow.status_report).where(CollectorRow.id == COLLECTOR)
        ).scalar_one_or_none()
    return json.loads(report) if isinstance(report, str) else (report or {})


def test_outbox_filled_while_the_center_is_away(tmp_path, database_url):  # noqa: F811
    field = Field(tmp_path, database_url)
    center = Center(database_url, tmp_path)
    collector = Collector(tmp_path)

    async def body() -> None:
        field.collector_config(center.url, max_bytes=MAX_BYTES)
        await collector.start()  # the center is not there yet
        await wait_for(
            lambda: field.outbox.exists() and outbox_ledger(field.outbox).refused > 0, "a full outbox"
        )
        at_full = outbox_ledger(field.outbox)
        await asyncio.sleep(1.5)  # full for a while: every poll is refused, the collector keeps running
        assert collector.running
        assert field.outbox.stat().st_size <= MAX_BYTES
        still_full = outbox_ledger(field.outbox)
        assert still_full.refused > at_full.refused
        await center.start()
        # recovery: the stored batches go, room comes back, readings are taken again
        await wait_for(
            lambda: outbox_ledger(field.outbox).appended > still_full.appended + 50, "readings again"
        )
        refused = outbox_ledger(field.outbox).refused
        assert refused > 0
        await wait_for(
            lambda: (
                center_report(field).get("outbox", {}).get("refused_readings") == refused
                and not center_report(field)["outbox"]["full"]
            ),
            "the center to hear of the refused readings",
        )
        await field.drain(collector)
        book, _ = assert_nothing_lost(field.outbox, field.store, min_readings=100)
        assert book.refused == refused  # refused once, counted once; none refused after recovery

    asyncio.run(running(field, body, collector, center))


def test_images_may_take_at_most_half_of_the_outbox_file():
    """Images share the outbox file with the readings: their bound must leave the readings room."""
    import pytest

    from carbonflow.collector.config import config_from_dict
    from carbonflow.messages.collector_config import ConfigError

    document = {
        "id": "c1",
        "secret": "secret-0123456789",
        "center": {"url": "http://127.0.0.1:9"},
        "outbox": {"max_bytes": 1 << 20},
        "images": {"max_bytes": 600 * 1024},
        "cameras": [{"id": "CAM-1", "protocol": "camera-http", "endpoint": "127.0.0.1:9"}],
    }
    with pytest.raises(ConfigError, match=r"images\.max_bytes .* at most half of outbox\.max_bytes"):
        config_from_dict(document)
    document["images"]["max_bytes"] = 512 * 1024
    assert config_from_dict(document).outbox.max_bytes == 1 << 20

"""The services under the center restarted: the MQTT broker (on SQLite and PostgreSQL) and the center's
PostgreSQL server — each one of our own, never the shared ones.  Center and collector keep running
throughout; the books balance exactly afterwards."""

from __future__ import annotations

import asyncio

from faultfield import Center, Collector, Field, assert_nothing_lost, running, wait_for
from servers import Mosquitto, Postgres
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401


def test_mosquitto_restarted(tmp_path, database_url):  # noqa: F811
    broker = Mosquitto(tmp_path)
    field = Field(tmp_path, database_url)
    center = Center(database_url, tmp_path, mqtt_url=broker.url)
    collector = Collector(tmp_path)

    async def body() -> None:
        await broker.start()
        field.collector_config(broker.url)
        await center.start()
        await collector.start()
        for kill in (False, True):  # a clean restart, then a crash (SIGKILL): QoS 1 messages in flight lost
            seen = field.batches_at_center()
            await wait_for(lambda s=seen: field.batches_at_center() >= s + 3, "batches over MQTT")
            broker.stop(kill=kill)
            await asyncio.sleep(1.0)
            await broker.start()
        seen = field.batches_at_center()
        await wait_for(lambda: field.batches_at_center() >= seen + 3, "batches after the broker came back")
        assert center.running and collector.running  # neither was restarted
        await field.drain(collector)
        assert_nothing_lost(field.outbox, field.store, min_readings=50)

    try:
        asyncio.run(running(field, body, collector, center))
    finally:
        broker.stop(kill=True)


def test_postgresql_restarted_under_the_center(tmp_path):
    server = Postgres()
    try:
        server.init()
        asyncio.run(server.start())
        field = Field(tmp_path, server.url)
        center = Center(server.url, tmp_path)
        collector = Collector(tmp_path)

        async def body() -> None:
            field.collector_config(center.url)
            await center.start()
            await collector.start()
            seen = field.batches_at_center()
            await wait_for(lambda: field.batches_at_center() >= seen + 3, "batches to arrive")
            await server.stop("immediate")  # a crash: no shutdown checkpoint, recovery at start
            await asyncio.sleep(1.0)  # ingestion fails meanwhile (5xx): the collector keeps its batches
            await server.start()
            seen = field.batches_at_center()
            await wait_for(
                lambda: field.batches_at_center() >= seen + 3, "batches after PostgreSQL came back"
            )
            assert center.running  # the center was not restarted: its connection pool recovered
            assert "not delivered" in collector.output()  # the fault bit: ingestion failed meanwhile
            await field.drain(collector)
            assert_nothing_lost(field.outbox, field.store, min_readings=50)

        asyncio.run(running(field, body, collector, center))
    finally:
        server.remove()

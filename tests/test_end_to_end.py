"""End to end over real TCP: simulated field devices (all four protocols) -> collector -> center ->
store, on SQLite with HTTP and on PostgreSQL with the real Mosquitto; the center is stopped for a while
and restarted, and afterwards every reading the collector accepted is stored exactly once.  Then the
whole demo runs a few intervals and its metered intensities are checked against the simulator's truth."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from services import mqtt_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from sqlalchemy import func, select

from carbonflow.center.api.app import create_app
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.store import (
    Store,
    latest_interval_ts,
    list_conflicts,
    register_devices,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Reading
from carbonflow.center.topology import topology_rows
from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.service import Collector
from carbonflow.demo import DemoOptions, run_demo
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.serve import DeviceFarm, SimClock, TruthDriver
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig
from carbonflow.sim.truth import TruthFeed

DEVICES = ["RTU-P03", "ECM-G3-1", "EM-U01", "EM-U04", "MB-S057-1", "RTU-S001"]  # 104, 698, 645, Modbus
SECRET = "e2e-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_center(
    store: Store, settings: CenterSettings, port: int
) -> tuple[uvicorn.Server, asyncio.Task]:
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store=store), port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the center did not start"
        await asyncio.sleep(0.05)
    return server, task


async def stop_center(server: uvicorn.Server, task: asyncio.Task) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_for(condition, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def chain_with_center_outage(database_url: str, mqtt: str | None, tmp_path: Path) -> dict:
    net = reference_grid()
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    simulation = Simulation(net, SimConfig(start=start, interval_s=60, count=60, seed=5))
    feed, clock = TruthFeed(), SimClock(start, speed=20.0)
    driver = TruthDriver(simulation, feed, clock)
    driver.publish_until(start + timedelta(seconds=driver.lookahead_s))
    farm = DeviceFarm(build_device_map(net), feed, clock.now, only=DEVICES)
    served = await farm.start("127.0.0.1", 0)  # free ports

    store = Store.open(database_url)
    upsert_topology(store, topology_rows(grid_document(net)))
    collector_id = f"e2e-{uuid.uuid4().hex[:8]}"
    upsert_collector(store, collector_id, SECRET)
    register_devices(store, served["devices"], collector_id=collector_id)
    (tmp_path / "secret").write_text(SECRET)
    port = free_port()
    settings = CenterSettings(
        database_url=database_url, mqtt_url=mqtt, mqtt_client_id=f"center-{collector_id}"
    )
    center = await start_center(store, settings, port)

    data = config_from_device_map(
        served,
        collector_id=collector_id,
        center_url=mqtt or f"http://127.0.0.1:{port}",
        secret_file=str(tmp_path / "secret"),
        outbox_path=str(tmp_path / "outbox.sqlite"),
        period_s=0.5,
    )
    data["center"]["backoff_max_s"] = 1.0
    collector = Collector(config_from_dict(data, "e2e", tmp_path), clock=clock.now)
    clock.begin()
    driver_task = asyncio.create_task(driver.run())
    try:
        await collector.start()
        await wait_for(lambda: collector.delivered >= 2, 30, "the first deliveries")
        await stop_center(*center)  # the center goes away; the collector keeps polling and buffering
        delivered_before = collector.delivered
        await asyncio.sleep(3.0)
        buffered = collector.outbox.stats()
        center = await start_center(store, settings, port)
        await collector.stop_polling()
        collector._form_batches(force=True)
        await wait_for(
            lambda: collector.outbox.stats().batches == 0 and collector.outbox.stats().pending_readings == 0,
            40,
            "the outbox to drain",
        )
        with store.read() as connection:
            stored = connection.execute(select(func.count()).select_from(Reading)).scalar_one()
            distinct = connection.execute(
                select(func.count()).select_from(select(Reading.point_id, Reading.ts).distinct().subquery())
            ).scalar_one()
            batches = connection.execute(
                select(func.count()).select_from(BatchRow).where(BatchRow.collector_id == collector_id)
            ).scalar_one()
        return {
            "accepted": collector.accepted_readings,
            "stored": stored,
            "distinct": distinct,
            "batches": batches,
            "delivered": collector.delivered,
            "delivered_before_outage": delivered_before,
            "buffered_during_outage": buffered.batches + buffered.pending_readings,
            "dead_letters": collector.outbox.stats().dead_letters,
        }
    finally:
        await collector.stop()
        driver_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver_task
        await stop_center(*center)
        await farm.stop()
        store.close()


@pytest.mark.parametrize("backend", ["sqlite-http", "postgresql-mqtt"])
def test_center_outage_loses_nothing_and_duplicates_nothing(backend, request, tmp_path):
    if backend == "sqlite-http":
        database_url, mqtt = request.getfixturevalue("sqlite_url"), None
    else:
        database_url, mqtt = request.getfixturevalue("postgres_url"), request.getfixturevalue("mqtt_url")
    figures = asyncio.run(chain_with_center_outage(database_url, mqtt, tmp_path))
    assert figures["buffered_during_outage"] > 0, figures  # the outage really held data back
    assert figures["dead_letters"] == 0, figures
    assert figures["accepted"] > 0 and figures["stored"] == figures["accepted"], figures
    assert figures["distinct"] == figures["stored"], figures
    assert figures["batches"] == figures["delivered"], figures


def test_demo_meters_intervals_that_match_the_simulator_truth_and_a_restart_keeps_the_books(tmp_path):
    options = DemoOptions(
        directory=tmp_path / "demo", port=free_port(), speed=10.0, hours=1.0, max_intervals=2, password="pw"
    )
    lines: list[str] = []
    report = asyncio.run(run_demo(options, say=lines.append))
    assert report.intervals_metered == 2, lines
    for check in report.truth_checks:
        assert check.buses >= 90, lines
        assert check.median_abs_g_per_kwh < 1.0, lines  # nodal intensities as the simulator computed them
    assert report.factors_queued == 2 * 14, lines  # one factor per consumer's electric-carbon meter
    assert any("user admin" in line for line in lines)
    store = Store.open(f"sqlite:///{options.directory / 'center.db'}")
    first_run_end = latest_interval_ts(store)
    store.close()

    # stopped and started again on the same directory: time resumes after everything the first run left
    options.port = free_port()
    again: list[str] = []
    second = asyncio.run(run_demo(options, say=again.append))
    assert second.intervals_metered == 2, again
    assert all(check.ts > first_run_end for check in second.truth_checks), again
    for check in second.truth_checks:
        assert check.median_abs_g_per_kwh < 1.0, again
    store = Store.open(f"sqlite:///{options.directory / 'center.db'}")
    try:
        assert list_conflicts(store) == []  # no reading of one run offered into the other's (point, ts)
    finally:
        store.close()

"""The stuck-value rule's "no new reading" mode (``same_value = false``) on an IEC 104 RTU that reports
on change only, silence made deterministic (no background scan, a steady value, a hand-set clock), not
by load: a steady but live value is asked for again by the collector (a general interrogation once a
point has been silent for ``refresh_s``) and never counts as stuck; and an interval counts as silent only
once the collector has reported the device after its end — data still on its way is not silence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from collector_services import FakeTime, config, eventually
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401

from carbonflow.center.alarms import AlarmEngine, parse_rules
from carbonflow.center.alarms.checks import Observed
from carbonflow.center.store import alarms as alarm_store
from carbonflow.collector.pollers import make_poller
from carbonflow.collector.validate import RawValue
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.iec104_rtu import plant_rtu

T0 = datetime(2026, 6, 1, 0, 0, 30, tzinfo=UTC)
INTERVAL = timedelta(minutes=1)
RULE = {"id": "quiet", "kind": "stuck_value", "quantities": ["p_mw"], "intervals": 2, "same_value": False}
POINT = {"id": "RTU/p", "device_id": "RTU", "device_kind": "plant_rtu", "element_kind": "generator",
         "element_id": "G1", "quantity": "p_mw", "end": "-", "region": "AH", "bus_id": "P01",
         "scale": None}  # fmt: skip


def steady_rtu(time: FakeTime):
    """A unit at a steady 300 MW that sends on change only (no background scan)."""
    clock = DeviceClock(now_fn=time, _epoch=time.now)
    source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
    return plant_rtu("rtu", source, clock=clock, cycle_s=0.02)


def output_readings(tmp_path, minutes: int, **device) -> list[RawValue]:
    """What the collector sends of the unit's output, its poller run once a minute on a hand-set clock."""
    time = FakeTime()
    time.now = T0
    rtu = steady_rtu(time)
    points = [{"name": "p", "ioa": 0x4001}, {"name": "e", "ioa": 0x6401, "kind": "counter"}]
    delivered: list[RawValue] = []

    async def scenario():
        await rtu.start()
        cfg = config(
            [dict(id="RTU", protocol="iec104", endpoint=f"127.0.0.1:{rtu.port}", common_address=1,
                  points=points, **device)], tmp_path,
        )  # fmt: skip
        poller = make_poller(cfg.devices[0], cfg, lambda _, values: delivered.extend(values), clock=time)
        try:
            await poller.open()  # the general interrogation at the start: every value once
            await eventually(lambda: any(v.point == "p" for v in delivered), 5)
            for minute in range(1, minutes + 1):
                time.now = T0 + minute * INTERVAL
                await poller.poll()
                await eventually(
                    lambda m=minute: any(v.point == "p" and v.ts >= T0 + m * INTERVAL for v in delivered), 1
                )
        finally:
            await poller.close()
            await rtu.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    return [v for v in delivered if v.point == "p"]


def evaluate(target, readings: list[RawValue], minutes: int, heard_after_s: float = 1.0) -> list[int]:
    """The rule over the intervals (T0 + k - 1 min, T0 + k min]; the collector reports the device online
    ``heard_after_s`` after each interval's end (a status).  Returns the minutes an alarm was raised."""
    engine = AlarmEngine(target, rules=parse_rules([RULE]), interval_s=60)
    raised = []
    for minute in range(0, minutes + 1):
        end = T0 + minute * INTERVAL
        inside = [r for r in readings if end - INTERVAL < r.ts <= end]
        observed = Observed(
            end, points={"RTU/p": POINT},
            devices=[{"id": "RTU", "kind": "plant_rtu", "online": True,
                      "last_seen": end + timedelta(seconds=heard_after_s)}],
        )  # fmt: skip
        if inside:
            observed.point_values = {"RTU/p": float(inside[-1].value)}
            observed.point_times = {"RTU/p": inside[-1].ts}
        raised += [minute] * len(engine.evaluate(observed, ("stuck_value",)).raised)
    return raised


@pytest.mark.parametrize("refresh_s", [None, 60.0])
def test_a_steady_value_that_the_collector_asks_for_again_is_not_stuck(store, tmp_path, refresh_s):  # noqa: F811
    device = {} if refresh_s is None else {"refresh_s": refresh_s}
    readings = output_readings(tmp_path, 4, **device)
    raised = evaluate(store, readings, 4)
    if refresh_s is None:  # sent on change only: silent after the first interrogation; "stuck" after two
        assert [r.ts for r in readings] == [T0] and raised == [2]
    else:  # interrogated once a minute of silence: alive, no alarm
        assert [r.ts for r in readings] == [T0 + k * INTERVAL for k in range(5)] and raised == []
        assert alarm_store.list_alarms(store, state="all") == []


def test_an_interval_counts_as_silent_only_once_the_collector_reported_the_device_after_it(store):  # noqa: F811
    first = [RawValue("p", 300.0, T0)]  # one reading, then nothing: the collector is late (a loaded machine)
    assert evaluate(store, first, 4, heard_after_s=-30.0) == []  # last heard before each interval's end
    assert evaluate(store, first, 4, heard_after_s=1.0) == [2]  # reported after: silent for two intervals

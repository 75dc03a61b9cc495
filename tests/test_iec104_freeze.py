"""Boundary-aligned energy over IEC 104: the simulated RTU freezes its integrated totals at every
freeze_period_s boundary of its own clock and reports them as M_IT_TB_1 tagged with the boundary; the
collector sends them with ts = that boundary (or, beyond the clock tolerance, the corrected time and
quality 'estimated').  Read through our client, the collector's poller and the independent c104."""

# no "from __future__ import annotations": c104 checks callback annotations as real types

import asyncio
import datetime as dt
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from collector_services import FakeTime, config, eventually, fake_clock

from carbonflow.collector.clients.errors import RetryPolicy
from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.collector.pollers import make_poller
from carbonflow.collector.validate import RawValue
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.freeze import last_boundary, next_boundary
from carbonflow.devices.iec104_rtu import FREEZE_LOG, plant_rtu
from carbonflow.protocols.iec104.link import LinkConfig

FAST = RetryPolicy(timeout_s=1.0, retries=1, backoff_s=0.02)
QUICK_LINK = LinkConfig(t1_s=0.5, t2_s=0.05, t3_s=0.1)
T0 = datetime(2026, 6, 1, 0, 0, 30, tzinfo=UTC)  # half a minute after a boundary
ENERGY, CARBON = 0x6401, 0x6402


def at_t0(**kwargs):
    """True time at T0 and an RTU on it."""
    time = FakeTime()
    time.now = T0
    return time, rtu_on(time, **kwargs)


def client_for(rtu) -> Iec104Client:
    return Iec104Client("127.0.0.1", rtu.port, policy=FAST, link_config=QUICK_LINK)


def rtu_on(time: FakeTime, offset_s: float = 0.0, **kwargs):
    """A 300 MW / 850 g/kWh unit freezing every minute on a clock at true time + offset_s."""
    clock = DeviceClock(offset_s=offset_s, now_fn=time, _epoch=time.now)
    source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
    return plant_rtu(
        "rtu", source, clock=clock, freeze_period_s=60, cycle_s=0.02, link_config=QUICK_LINK, **kwargs
    )


def minute(n: float) -> datetime:
    return datetime(2026, 6, 1, 0, 0, tzinfo=UTC) + timedelta(minutes=n)


def test_boundaries_are_multiples_of_the_period_since_the_epoch():
    t = datetime(2026, 6, 1, 0, 7, 12, 500000, tzinfo=UTC)
    assert next_boundary(t, 900) == minute(15) and last_boundary(t, 900) == minute(0)
    assert next_boundary(minute(15), 900) == minute(15) == last_boundary(minute(15), 900)
    east = t.astimezone(dt.timezone(timedelta(hours=8)))  # the zone does not move the boundaries
    assert next_boundary(east, 60) == minute(8)


def test_rtu_freezes_at_each_boundary_of_its_clock_and_sends_it_spontaneously():
    time, rtu = at_t0()

    async def scenario():
        async with rtu, client_for(rtu) as client:
            before = await client.counter_interrogation()  # no freeze yet: the registers now, tagged now
            time.now = minute(3) + timedelta(seconds=5)  # three boundaries pass at once
            got = []
            while len(got) < 6:
                reading = await asyncio.wait_for(client.readings.get(), 5)
                if reading.type_id == 37 and reading.cot == 3:
                    got.append(reading)
            last = await client.counter_interrogation()  # FRZ=0: the last freeze, with its time
            return before, got, last

    before, spontaneous, last = asyncio.run(scenario())
    assert (before[ENERGY].timestamp, before[ENERGY].value, before[ENERGY].type_id) == (T0, 0, 37)
    energy = [(r.timestamp, r.value, r.sequence) for r in spontaneous if r.ioa == ENERGY]
    # 300 MW: 2 500 kWh in the first half minute, 5 000 kWh a minute after; one sequence number each
    assert energy == [(minute(1), 2500, 1), (minute(2), 7500, 2), (minute(3), 12500, 3)]
    carbon = [r.value for r in spontaneous if r.ioa == CARBON]
    assert carbon == [2125, 6375, 10625]  # 300 MW x 850 g/kWh = 255 000 kg/h
    assert (last[ENERGY].timestamp, last[ENERGY].value, last[ENERGY].cot) == (minute(3), 12500, 37)
    assert [f.time for f in rtu.freezes] == [minute(1), minute(2), minute(3)]


def test_freezes_made_while_no_master_listens_are_sent_when_one_starts():
    time, rtu = at_t0()

    async def scenario():
        async with rtu:
            async with client_for(rtu) as client:
                await client.counter_interrogation()  # the registers start counting
            time.now = minute(2) + timedelta(seconds=1)
            async with client_for(rtu) as client:
                got = set()
                while len(got) < 2:
                    reading = await asyncio.wait_for(client.readings.get(), 5)
                    if reading.ioa == ENERGY and reading.cot == 3:
                        got.add((reading.timestamp, reading.value))
                return got

    assert asyncio.run(scenario()) == {(minute(1), 2500), (minute(2), 7500)}
    assert rtu.freezes.maxlen == FREEZE_LOG


def test_commanded_freeze_then_read_gives_the_moment_of_the_command():
    time, rtu = at_t0()

    async def scenario():
        async with rtu, client_for(rtu) as client:
            await client.counter_interrogation()
            time.now = T0 + timedelta(seconds=12)
            assert await client.counter_interrogation(freeze=1) == {}
            time.now = T0 + timedelta(seconds=20)  # still before the next boundary
            return await client.counter_interrogation()

    frozen = asyncio.run(scenario())
    assert (frozen[ENERGY].timestamp, frozen[ENERGY].value) == (T0 + timedelta(seconds=12), 1000)


def test_c104_freezes_and_reads_our_rtu_and_receives_the_periodic_freeze():
    c104 = pytest.importorskip("c104")
    time, rtu = at_t0(energy_start_kwh="1000")

    async def scenario():
        async with rtu:
            client = c104.Client(tick_rate_ms=50, command_timeout_ms=1000)
            connection = client.add_connection(ip="127.0.0.1", port=rtu.port, init=c104.Init.NONE)
            station = connection.add_station(common_address=1)
            energy = station.add_point(io_address=ENERGY, type=c104.Type.M_IT_TB_1)
            seen: list[tuple[int, dt.datetime | None, int]] = []

            def on_receive(
                point: c104.Point, previous_info: c104.Information, message: c104.IncomingMessage
            ) -> c104.ResponseState:
                seen.append((point.info.value, point.info.recorded_at, int(message.cot)))
                return c104.ResponseState.SUCCESS

            energy.on_receive(callable=on_receive)
            client.start()
            try:
                await eventually(lambda: connection.is_connected, 5)
                assert await asyncio.to_thread(connection.unmute)
                time.now = T0 + timedelta(seconds=18)
                freeze = c104.Frz.FREEZE_WITHOUT_RESET
                assert await asyncio.to_thread(connection.counter_interrogation, 1, freeze=freeze)
                time.now = T0 + timedelta(seconds=24)
                assert await asyncio.to_thread(connection.counter_interrogation, 1)  # FRZ=0: read
                assert await eventually(lambda: any(c == 37 for *_, c in seen), 5)
                time.now = minute(1) + timedelta(seconds=2)  # the periodic freeze, spontaneously
                assert await eventually(lambda: any(c == 3 for *_, c in seen), 5)
            finally:
                await asyncio.to_thread(client.stop)
            return seen

    seen = asyncio.run(scenario())
    # the commanded freeze was the first read of the registers (they start at 1000 kWh)
    read = next(s for s in seen if s[2] == 37)
    periodic = next(s for s in seen if s[2] == 3)
    assert read[0] == 1000 and read[1] == (T0 + timedelta(seconds=18)).replace(tzinfo=None)
    assert periodic[0] == 1000 + 1000 and periodic[1] == minute(1).replace(tzinfo=None)  # 12 s x 300 MW


POINTS = [  # output, and the two totals: energy frozen by the device's period, carbon by the point
    {"name": "p", "ioa": 0x4001},
    {"name": "e", "ioa": ENERGY, "kind": "counter"},
    {"name": "c", "ioa": CARBON, "kind": "counter", "frozen": True},
]


def poller_config(rtu, tmp_path, **device):
    endpoint = f"127.0.0.1:{rtu.port}"
    rtu_device = dict(id="RTU", protocol="iec104", endpoint=endpoint, common_address=1, points=POINTS)
    return config([{**rtu_device, **device}], tmp_path)


async def run_poller(rtu, time: FakeTime, tmp_path, steps, **device) -> list[RawValue]:
    delivered: list[RawValue] = []
    await rtu.start()
    cfg = poller_config(rtu, tmp_path, **device)
    poller = make_poller(cfg.devices[0], cfg, lambda _, values: delivered.extend(values), clock=time)
    try:
        await poller.open()
        for step in steps:
            await step(poller, delivered)
        return delivered
    finally:
        await poller.close()
        await rtu.stop()


def counters_of(delivered: list[RawValue]) -> list[tuple[str, datetime, Decimal, str]]:
    return [(v.point, v.ts, v.value, v.quality) for v in delivered if v.point in ("e", "c")]


def test_the_collector_sends_each_freeze_once_at_its_boundary(tmp_path):
    time, rtu = at_t0()

    async def first_poll(poller, delivered):
        await poller.poll()  # CI before any freeze: the registers now, tagged now
        await eventually(lambda: len(counters_of(delivered)) == 2, 5)

    async def boundary(poller, delivered):
        time.now = minute(1) + timedelta(seconds=3)
        await eventually(lambda: len(counters_of(delivered)) == 4, 5)  # spontaneous M_IT_TB_1
        await poller.poll()  # the CI returns the same freeze: not sent twice
        await poller.poll()

    delivered = asyncio.run(run_poller(rtu, time, tmp_path, [first_poll, boundary], freeze_period_s=60))
    assert counters_of(delivered) == [
        ("e", T0, Decimal(0), "good"),
        ("c", T0, Decimal(0), "good"),
        ("e", minute(1), Decimal(2500), "good"),
        ("c", minute(1), Decimal(2125), "good"),
    ]


def test_a_skewed_rtu_clock_gives_estimated_values_at_the_corrected_time(tmp_path):
    time, rtu = at_t0(offset_s=20.0)  # 20 s fast: its 00:01:00 is 00:00:40 true time
    source = rtu.source

    async def measure_offset(poller, delivered):
        await poller.poll()
        source.set("p_mw", 300.5)  # beyond the deadband: a spontaneous, time-tagged M_ME_TF_1
        await eventually(lambda: poller.clock_offset_s is not None, 5)

    async def boundary(poller, delivered):
        source.set("p_mw", 300.0)
        time.now = minute(1) - timedelta(seconds=15)  # the RTU's clock is past its boundary
        await eventually(lambda: any(v.point == "e" and v.value > 0 for v in delivered), 5)

    delivered = asyncio.run(run_poller(rtu, time, tmp_path, [measure_offset, boundary], freeze_period_s=60))
    frozen = [v for v in delivered if v.point == "e" and v.value > 0]
    assert len(frozen) == 1
    # the value is the register at the true moment of the freeze (10 s at 300 MW after the first read:
    # the RTU read its registers at 00:00:50 of its clock), stamped with that true moment
    assert frozen[0].ts == minute(1) - timedelta(seconds=20)
    assert frozen[0].value == Decimal(833) and frozen[0].quality == "estimated"
    measured = [v for v in delivered if v.point == "p" and v.value == Decimal("300.5")]
    assert measured and measured[0].quality == "estimated" and measured[0].ts == T0


def test_a_small_clock_offset_keeps_the_freeze_on_its_boundary(tmp_path):
    time, rtu = at_t0(offset_s=0.8)  # within the 2 s default tolerance
    source = rtu.source

    async def steps(poller, delivered):
        await poller.poll()
        source.set("p_mw", 300.5)
        await eventually(lambda: poller.clock_offset_s is not None, 5)
        time.now = minute(1)
        await eventually(lambda: any(v.point == "e" and v.value > 0 for v in delivered), 5)

    delivered = asyncio.run(run_poller(rtu, time, tmp_path, [steps], freeze_period_s=60))
    frozen = next(v for v in delivered if v.point == "e" and v.value > 0)
    assert (frozen.ts, frozen.quality) == (minute(1), "good")


def test_untagged_counter_readings_of_frozen_points_are_not_sent(tmp_path):
    """An RTU that does not freeze answers the CI with untagged M_IT_NA_1 read at an unknown moment:
    for a point configured as frozen they are left out, for the others sent at reception time."""
    time = FakeTime()
    time.now = T0
    rtu = plant_rtu("rtu", clock=fake_clock(time), cycle_s=0.02, link_config=QUICK_LINK)  # no freezing

    async def steps(poller, delivered):
        await poller.poll()
        await eventually(lambda: any(v.point == "e" for v in delivered), 5)

    delivered = asyncio.run(run_poller(rtu, time, tmp_path, [steps]))
    assert [(v.point, v.ts) for v in delivered if v.point in ("e", "c")] == [("e", T0)]

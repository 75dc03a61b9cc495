"""Polling the simulated devices over real TCP on 127.0.0.1: exact Decimal values from all four
protocols, IEC 104 spontaneous data with clock-offset correction, counter roll-over and reset through a
real meter, and online/offline status through the running collector."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from collector_services import (  # noqa: F401 - fixture
    FakeTime,
    HttpCenter,
    config,
    eventually,
    fake_clock,
    http_center,
)

from carbonflow.collector.clients.iec104 import Reading
from carbonflow.collector.pollers import make_poller, read_stamp
from carbonflow.collector.service import Collector
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.devices.iec104_rtu import plant_rtu
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.protocols.modbus import builtin_map


def test_each_protocol_yields_the_meters_exact_decimals(tmp_path):
    time = FakeTime()
    m645 = Dlt645Meter("m645", "110100000001", StaticSource({"p_kw": 36.0}), clock=fake_clock(time))
    m698 = Dlt698Meter("m698", "220100000001", StaticSource({"p_kw": -72.0}), clock=fake_clock(time))
    rtu = plant_rtu(
        "rtu", StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.5}), clock=fake_clock(time)
    )
    modbus = ModbusMeter(
        "mb",
        builtin_map("cf-3ph-meter"),
        StaticSource({"p_kw": 10.5, "q_kvar": 2.0}),
        unit_id=3,
        clock=fake_clock(time),
    )
    delivered: list[tuple[str, RawValue]] = []

    async def main():
        for device in (m645, m698, rtu, modbus):
            await device.start()
        cfg = config(
            [
                {
                    "id": "M645",
                    "protocol": "dlt645",
                    "endpoint": f"127.0.0.1:{m645.port}",
                    "address": "110100000001",
                    "points": [
                        {"name": "e", "di": "00010000", "kind": "counter"},
                        {"name": "p", "di": "02030000"},
                    ],
                },
                {
                    "id": "M698",
                    "protocol": "dlt698",
                    "endpoint": f"127.0.0.1:{m698.port}",
                    "address": "220100000001",
                    "points": [
                        {"name": "e", "oad": "00200200", "kind": "counter"},
                        {"name": "p", "oad": "20040200"},
                    ],
                },
                {
                    "id": "RTU",
                    "protocol": "iec104",
                    "endpoint": f"127.0.0.1:{rtu.port}",
                    "common_address": 1,
                    "points": [
                        {"name": "p", "ioa": 0x4001},
                        {"name": "e", "ioa": 0x6401, "kind": "counter"},
                        {"name": "i", "ioa": 0x4002},
                    ],
                },
                {
                    "id": "MB",
                    "protocol": "modbus-tcp",
                    "endpoint": f"127.0.0.1:{modbus.port}",
                    "unit_id": 3,
                    "model": "cf-3ph-meter",
                    "points": [
                        {"name": "p", "register": "p_kw"},
                        {"name": "e", "register": "import_energy_kwh"},
                    ],
                },
            ],
            tmp_path,
        )
        pollers = [
            make_poller(d, cfg, lambda device_id, values: delivered.extend((device_id, v) for v in values))
            for d in cfg.devices
        ]
        try:
            for poller in pollers:
                await poller.open()
                await poller.poll()  # the registers start integrating at the first read
            time.advance(hours=2)
            results = {}
            for poller in pollers:
                delivered.clear()
                values = await poller.poll()
                await asyncio.sleep(0.05)  # IEC 104 values arrive through the callback
                results[poller.device.id] = {v.point: v.value for v in values + [v for _, v in delivered]}
            return results
        finally:
            for poller in pollers:
                await poller.close()
            for device in (m645, m698, rtu, modbus):
                await device.stop()

    results = asyncio.run(main())
    assert results["M645"] == {"e": Decimal("72.00"), "p": Decimal("36.0000")}  # 36 kW x 2 h
    assert results["M698"] == {"e": Decimal("144.00"), "p": Decimal("-72000.0")}  # reverse kWh; W
    assert results["RTU"]["e"] == Decimal(600000)  # counter interrogation: 300 MW x 2 h in kWh
    assert results["MB"] == {"p": Decimal("10.5"), "e": Decimal("21.00")}
    assert all(isinstance(v, Decimal) for r in results.values() for v in r.values())


def test_iec104_general_interrogation_then_spontaneous_data_with_the_clock_offset_removed(tmp_path):
    source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
    rtu = plant_rtu("rtu", source, cycle_s=0.05, clock=DeviceClock(offset_s=120.0))  # RTU clock 2 min fast
    delivered: list[RawValue] = []

    async def main():
        await rtu.start()
        cfg = config(
            [
                {
                    "id": "RTU",
                    "protocol": "iec104",
                    "endpoint": f"127.0.0.1:{rtu.port}",
                    "common_address": 1,
                    "points": [{"name": "p", "ioa": 0x4001}, {"name": "i", "ioa": 0x4002}],
                }
            ],
            tmp_path,
        )
        poller = make_poller(cfg.devices[0], cfg, lambda _, values: delivered.extend(values))
        try:
            await poller.open()  # GI at start
            await eventually(lambda: len(delivered) >= 2)
            by_gi = {v.point: v.value for v in delivered}
            delivered.clear()
            source.set("p_mw", 312.5)  # moves beyond the deadband: sent spontaneously, time-tagged
            assert await eventually(lambda: any(v.point == "p" for v in delivered))
            return by_gi, next(v for v in delivered if v.point == "p"), poller.clock_offset_s
        finally:
            await poller.close()
            await rtu.stop()

    by_gi, spontaneous, offset = asyncio.run(main())
    assert by_gi == {"p": Decimal(300), "i": Decimal(850)}
    # 2 min off is beyond the 2 s clock tolerance: the value is right, its time corrected but not sure
    assert spontaneous.value == Decimal("312.5") and spontaneous.quality == "estimated"
    assert offset is not None and 119.0 < offset <= 120.5  # measured from the time tags
    assert abs((spontaneous.ts - datetime.now(UTC)).total_seconds()) < 30  # device time - offset


def test_counter_roll_over_and_reset_of_a_real_meter(tmp_path):
    time = FakeTime()
    meter = Dlt645Meter("m645", "110100000001", StaticSource({"p_kw": 36.0}), clock=fake_clock(time))
    point = {"name": "e", "di": "00010000", "kind": "counter", "rollover": "1000000", "min": "0"}

    async def main():
        await meter.start()
        cfg = config(
            [
                {
                    "id": "M",
                    "protocol": "dlt645",
                    "endpoint": f"127.0.0.1:{meter.port}",
                    "address": "110100000001",
                    "points": [point],
                }
            ],
            tmp_path,
        )
        poller = make_poller(cfg.devices[0], cfg, lambda *_: None)
        validator = Validator()
        sent = []

        async def poll():
            for raw in await poller.poll():
                reading = validator.check("M/e", cfg.devices[0].points[0], raw).reading
                sent.append((reading.value, reading.quality))
                await asyncio.sleep(0.002)  # distinct timestamps

        try:
            meter.forward.add(Decimal("999990"))  # near the end of the XXXXXX.XX register
            time.advance(minutes=10)
            await poll()
            time.advance(hours=1)  # +36 kWh: the register wraps at 10^6
            await poll()
            meter.forward.add(-meter.forward.exact)  # cleared on site
            time.advance(minutes=1)
            await poll()
            return sent
        finally:
            await poller.close()
            await meter.stop()

    sent = asyncio.run(main())
    assert sent[0] == ("999996.00", "good")  # 999990 + 36 kW x 10 min
    assert sent[1] == ("1000032.00", "good")  # shown 32.00, corrected across the wrap
    assert sent[2][1] == "invalid"  # went backwards: a reset, flagged


def test_a_device_goes_offline_after_failed_polls_and_comes_back(tmp_path, http_center: HttpCenter):  # noqa: F811
    meter = Dlt645Meter("m645", "110100000001", StaticSource({"p_kw": 5.0}))

    async def main():
        await meter.start()
        cfg = config(
            [
                {
                    "id": "M645",
                    "protocol": "dlt645",
                    "endpoint": f"127.0.0.1:{meter.port}",
                    "address": "110100000001",
                    "points": [{"name": "p", "di": "02030000"}],
                }
            ],
            tmp_path,
            http_center.url,
        )
        collector = Collector(cfg)
        await collector.start()
        try:
            runner = collector.runners["M645"]
            assert await eventually(lambda: runner.state.online is True)
            meter.faults.offline = True  # drops the link and refuses new connections
            assert await eventually(lambda: runner.state.online is False)
            assert runner.state.failures >= 2 and "M645" in (runner.state.last_error or "")
            meter.faults.offline = False
            assert await eventually(lambda: runner.state.online is True)
            assert await eventually(lambda: status_changes() == [True, False, True])  # at the center
        finally:
            await collector.stop(flush=True)
            await meter.stop()

    def status_changes() -> list[bool]:
        transitions = [s["online"] for s in http_center.record.statuses if s["device"] == "M645"]
        return transitions[:1] + [b for a, b in zip(transitions, transitions[1:]) if a != b]

    asyncio.run(main())
    offline = next(s for s in http_center.record.statuses if s["device"] == "M645" and not s["online"])
    assert offline["error"] and offline["last_seen"] is not None


def test_a_polled_value_is_stamped_at_the_middle_of_its_exchange_and_marked_when_it_straddles_a_boundary():
    start = datetime(2026, 12, 4, 8, 0, 58, tzinfo=UTC)
    ts, quality = read_stamp(start, start + timedelta(seconds=1), 60)
    assert (ts, quality) == (start + timedelta(seconds=0.5), "good")
    ts, quality = read_stamp(start, start + timedelta(seconds=4), 60)  # 08:01:00 lies in the exchange
    assert (ts, quality) == (start + timedelta(seconds=2), "estimated")
    assert read_stamp(start, start + timedelta(seconds=4), None)[1] == "good"  # no interval: nothing to miss


def test_an_untagged_iec104_value_is_stamped_within_the_window_it_was_taken_in(tmp_path):
    """A GI answer was taken between the GI and its arrival; a value the RTU sent unasked (background
    scan) at most the link's latency before it arrived, as the tagged frames' delays show.  One taken
    just before a boundary and arriving after it must not count, as good, in the next interval."""
    boundary = datetime(2026, 12, 4, 8, 1, 0, tzinfo=UTC)
    time = FakeTime()
    cfg = config(
        [dict(id="RTU", protocol="iec104", endpoint="127.0.0.1:9", common_address=1, freeze_period_s=60,
              points=[{"name": "p", "ioa": 0x4001}])], tmp_path,
    )  # fmt: skip
    delivered: list[RawValue] = []
    poller = make_poller(cfg.devices[0], cfg, lambda _, values: delivered.extend(values), clock=time)

    def arrives(at: datetime, cot: int, tag: datetime | None = None) -> RawValue:
        time.now = at
        poller._on_reading(
            Reading(0x4001, Decimal("300.5"), frozenset(), tag or at, tag is not None, 13, cot, 1)
        )
        poller._flush()
        return delivered[-1]

    async def scenario() -> None:
        poller._interrogated_at = boundary - timedelta(seconds=0.4)  # GI sent just before the boundary
        answer = arrives(boundary + timedelta(seconds=0.2), cot=20)
        assert (answer.ts, answer.quality) == (boundary - timedelta(seconds=0.1), "estimated")
        poller._interrogated_at = boundary + timedelta(seconds=5)
        answer = arrives(boundary + timedelta(seconds=5.5), cot=20)
        assert (answer.ts, answer.quality, answer.value) == (
            boundary + timedelta(seconds=5.25),
            "good",
            Decimal("300.5"),
        )
        # tagged spontaneous frames arrive 0.5 to 3.5 s after their tags: latency spreads over 3 s
        for delay_s in (0.5, 3.5, 1.0):
            sent = boundary + timedelta(seconds=10)
            arrives(sent + timedelta(seconds=delay_s), cot=3, tag=sent)
        background = arrives(boundary + timedelta(seconds=61), cot=2)  # 08:02:00 within 3 s before it
        assert (background.ts, background.quality) == (boundary + timedelta(seconds=59.5), "estimated")
        background = arrives(boundary + timedelta(seconds=90), cot=2)
        assert (background.ts, background.quality) == (boundary + timedelta(seconds=88.5), "good")

    asyncio.run(scenario())

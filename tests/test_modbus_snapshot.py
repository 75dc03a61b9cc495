"""Boundary-aligned energy over Modbus TCP: the simulated meter snapshots its counters at every
freeze_period_s boundary of its own clock into the map's interval snapshot registers; the collector
reads the block in one request and sends the snapshot with ts = its time.  Read through the collector's
poller and through pymodbus (an independent master)."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from collector_services import FakeTime, config
from pymodbus.client import AsyncModbusTcpClient
from test_collector_config import DEVICE_MAP

from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.pollers import make_poller
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.from_map import device_from_entry
from carbonflow.devices.modbus_gateway import ModbusGateway
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.messages.collector_config import PointConfig
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus import builtin_map, register_map_from_dict

T0 = datetime(2026, 6, 1, 0, 0, 30, tzinfo=UTC)


def minute(n: float) -> datetime:
    return datetime(2026, 6, 1, 0, 0, tzinfo=UTC) + timedelta(minutes=n)


def meter_on(time: FakeTime, offset_s: float = 0.0, p_kw: float = 360.0) -> ModbusMeter:
    clock = DeviceClock(offset_s=offset_s, now_fn=time, _epoch=time.now)
    source = StaticSource({"p_kw": p_kw, "q_kvar": 10.0, "u_a_v": 230.0})
    return ModbusMeter(
        "mb",
        builtin_map("cf-3ph-meter"),
        source,
        unit_id=3,
        clock=clock,
        derive_phases=True,
        freeze_period_s=60,
    )


def modbus_config(meter: ModbusMeter, tmp_path, frozen: bool = True, **device):
    return config(
        [
            {
                "id": "MB",
                "protocol": "modbus-tcp",
                "endpoint": f"127.0.0.1:{meter.port}",
                "unit_id": 3,
                "model": "cf-3ph-meter",
                "points": [
                    {"name": "p", "register": "p_kw"},
                    {"name": "e", "register": "import_energy_kwh", "kind": "counter", "frozen": frozen},
                    {"name": "c", "register": "carbon_kg", "kind": "counter", "frozen": frozen},
                ],
                **device,
            }
        ],
        tmp_path,
    )


async def polls(meter: ModbusMeter, time: FakeTime, tmp_path, moments, frozen=True) -> list[list[RawValue]]:
    """One poll at each moment; what each returned."""
    await meter.start()
    cfg = modbus_config(meter, tmp_path, frozen, freeze_period_s=60)
    poller = make_poller(cfg.devices[0], cfg, lambda *_: None, clock=time)
    out = []
    try:
        for moment in moments:
            time.now = moment
            out.append(await poller.poll())
        return out
    finally:
        await poller.close()
        await meter.stop()


def snapshot_values(values: list[RawValue]) -> dict[str, tuple[datetime, Decimal, str]]:
    return {v.point: (v.ts, v.value, v.quality) for v in values if v.ts.second == 0 and v.point != "p"}


def test_the_poller_sends_the_interval_snapshot_at_its_time_once(tmp_path):
    time = FakeTime()
    time.now = T0
    meter = meter_on(time)
    moments = [T0, minute(1) + timedelta(seconds=7), minute(1) + timedelta(seconds=20), minute(2.5)]
    first, second, third, fourth = asyncio.run(polls(meter, time, tmp_path, moments))
    # the first poll: the snapshot of 00:00:00, when the meter first read its registers, then live reads
    assert snapshot_values(first) == {
        "e": (minute(0), Decimal("0.00"), "good"),
        "c": (minute(0), Decimal(0), "good"),
    }
    # 360 kW for a minute: 6 kWh; x 581 g/kWh (the map's initial factor) = 3.486 kg
    assert snapshot_values(second) == {
        "e": (minute(1), Decimal("6.00"), "good"),
        "c": (minute(1), Decimal("3.486"), "good"),
    }
    assert {v.point: v.ts for v in second if v.ts != minute(1)} == dict.fromkeys(
        ("p", "e", "c"), second[-1].ts
    )
    assert snapshot_values(third) == {}  # the same snapshot is not sent again
    assert snapshot_values(fourth)["e"] == (minute(2), Decimal("12.00"), "good")
    # every reading of the run passes the collector's order check (none is behind the last one)
    validator = Validator()
    kinds = {"e": "counter", "c": "counter", "p": "instant"}
    for value in first + second + third + fourth:
        point = PointConfig(name=value.point, register=value.point, kind=kinds[value.point])
        assert validator.check(f"MB/{value.point}", point, value).reading is not None, value


def test_a_meter_clock_off_by_more_than_the_tolerance_gives_estimated_snapshots_at_the_true_time(tmp_path):
    time = FakeTime()
    time.now = T0
    meter = meter_on(time, offset_s=-20.0)  # 20 s slow: its 00:01:00 is 00:01:20 true time
    moments = [T0, minute(1) + timedelta(seconds=25.5)]  # (a clock in whole seconds: read mid-second)
    _first, second = asyncio.run(polls(meter, time, tmp_path, moments))
    snap = {v.point: v for v in second if v.point in ("e", "c") and v.quality == "estimated"}
    # the register at the true moment of the snapshot: 6 kWh a minute after the one at 00:00:20 true time
    assert snap["e"].value == Decimal("6.00") and snap["e"].ts == minute(1) + timedelta(seconds=20)
    assert [v.quality for v in second if v.point == "p"] == ["good"]  # a live read carries the true time


def test_points_not_marked_frozen_are_read_live_only(tmp_path):
    time = FakeTime()
    time.now = T0
    meter = meter_on(time)
    moments = [T0, minute(1) + timedelta(seconds=5)]
    (first, second) = asyncio.run(polls(meter, time, tmp_path, moments, frozen=False))
    assert [v.ts for v in first + second] == [T0] * 3 + [minute(1) + timedelta(seconds=5)] * 3


def test_pymodbus_reads_the_snapshot_block_behind_a_gateway():
    time = FakeTime()
    time.now = T0
    meter = meter_on(time)
    gateway = ModbusGateway("gw", {3: meter})

    async def scenario():
        await gateway.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=gateway.port, timeout=2)
        try:
            assert await client.connect()
            await client.read_holding_registers(0x0100, count=4, device_id=3)  # the registers count from now
            time.now = minute(1) + timedelta(seconds=1)
            response = await client.read_holding_registers(0x0300, count=10, device_id=3)
            return response.registers
        finally:
            client.close()
            await gateway.stop()

    words = asyncio.run(scenario())
    longs = [words[i] << 16 | words[i + 1] for i in range(0, 10, 2)]
    clock, taken, imported, exported, carbon = longs
    assert clock == int((minute(1) + timedelta(seconds=1)).timestamp())
    assert taken == int(minute(1).timestamp())
    assert (imported, exported, carbon) == (600, 0, 3486)  # 6.00 kWh, 0 kWh, 3.486 kg at their scales


def test_register_maps_check_snapshot_registers():
    base = {"name": "e", "address": 0, "type": "uint32", "kind": "counter", "quantity": "p_kw"}
    when = {"name": "t", "address": 4, "type": "uint32", "kind": "snapshot_time"}
    good = {
        "model": "m",
        "points": [
            base,
            when,
            {"name": "s", "address": 2, "type": "uint32", "kind": "snapshot", "snapshot_of": "e"},
        ],
    }
    assert register_map_from_dict(good).point("s").snapshot_of == "e"
    no_source = {
        "model": "m",
        "points": [base, when, {"name": "s", "address": 2, "type": "uint32", "kind": "snapshot"}],
    }
    with pytest.raises(ProtocolError, match="snapshot_of"):
        register_map_from_dict(no_source)
    no_time = {"model": "m", "points": [base, good["points"][2]]}
    with pytest.raises(ProtocolError, match="snapshot_time"):
        register_map_from_dict(no_time)
    float_clock = {"model": "m", "points": [{"name": "c", "address": 0, "type": "float32", "kind": "clock"}]}
    with pytest.raises(ProtocolError, match="UNIX seconds"):
        register_map_from_dict(float_clock)


def test_device_map_freeze_period_reaches_devices_and_collector_configuration(tmp_path):
    device_map = copy.deepcopy(DEVICE_MAP)
    rtu_entry, modbus_entry = device_map["devices"][:2]
    modbus_entry["freeze_period_s"] = 900
    modbus_entry["points"][1]["frozen"] = True
    rtu_entry["points"][2]["frozen"] = True  # the RTU's period is its own business
    generated = config_from_device_map(device_map, secret_file=str(tmp_path / "s"))
    rtu, modbus = generated["devices"][:2]
    assert modbus["freeze_period_s"] == 900 and [p.get("frozen") for p in modbus["points"]] == [None, True]
    assert "freeze_period_s" not in rtu and [p.get("frozen") for p in rtu["points"]] == [None, None, True]
    (tmp_path / "s").write_text("secret-0123456789")
    loaded = config_from_dict(generated, "generated", tmp_path)
    assert loaded.devices[1].freeze_period_s == 900 and loaded.devices[0].points[2].frozen
    assert device_from_entry(modbus_entry).server.freeze_period_s == 900
    assert device_from_entry(rtu_entry).server.freeze_period_s is None


class SlowTime(FakeTime):
    """A busy machine: every look at the clock finds it ``step_s`` later, so one exchange lasts
    seconds and its window can straddle an interval boundary."""

    def __init__(self, step_s: float) -> None:
        super().__init__()
        self.step = timedelta(seconds=step_s)

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def test_on_a_busy_machine_the_counters_never_run_backwards_across_a_boundary(tmp_path):
    time = SlowTime(0.7)
    time.now = T0
    # 1 kWh a second: a second's misplacement shows at once; the meter's clock 1.5 s ahead (within the
    # tolerance: its snapshot times stand as they are), so it snapshots a boundary before the collector's
    meter = meter_on(time, offset_s=1.5, p_kw=3600.0)

    async def run() -> list[RawValue]:
        await meter.start()
        cfg = modbus_config(meter, tmp_path, freeze_period_s=60)
        poller = make_poller(cfg.devices[0], cfg, lambda *_: None, clock=time)
        try:
            return [value for _ in range(60) for value in await poller.poll()]
        finally:
            await poller.close()
            await meter.stop()

    values = asyncio.run(run())
    assert time.now > minute(3)  # the polls crossed several boundaries
    validator = Validator()
    series: list[tuple[datetime, Decimal]] = []
    for value in values:
        if value.point != "e":
            continue
        point = PointConfig(name="e", register="import_energy_kwh", kind="counter", frozen=True)
        if validator.check("MB/e", point, value).reading is not None:  # what the collector would send
            series.append((value.ts, value.value))
    boundaries = [ts for ts, _ in series if ts.second == 0 and ts.microsecond == 0]
    assert len(boundaries) >= 3, series  # every boundary's snapshot got through
    steps = [later[1] - earlier[1] for earlier, later in zip(series, series[1:])]
    assert all(step >= 0 for step in steps), series

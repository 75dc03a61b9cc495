"""Units and signs end to end: the truth -> a simulated device's register (secondary side behind CT/VT,
in the device's unit and scaler) -> the real protocol on localhost -> the collector's poller -> the
center's point mapping -> the primary value, equal to the truth within the register's resolution.

One convention (docs/metering.md §units): a meter shows power positive in the direction of its forward
register, so a plant outlet meter (on-grid energy on its reverse register) and a user's gateway meter
(import into the user's bus forward) show the branch end's / unit's positive power as negative.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import pytest
from simfield import START, grid_and_map, make_field

from carbonflow.center.metering.measurements import PointMapping
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import Store, metrology_problems, register_devices, upsert_collector
from carbonflow.collector import pollers
from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.validate import RawValue
from carbonflow.devices.base import REVERSE_ENERGY, DeviceClock
from carbonflow.devices.from_map import device_from_entry
from carbonflow.messages.device_map import DeviceMap
from carbonflow.sim.bindings import DeviceFactory, TruthCounter
from carbonflow.sim.device_map import build_device_map
from carbonflow.sim.metrology import instrument_transformers, metering_at, power_sign
from carbonflow.sim.serve import DeviceFarm, ManualClock

FLOAT32 = 1e-6
ROUND_TRIP = {  # device -> the sign of the power it shows relative to the truth's p_mw, and why
    "EM-U04": (1, "DL/T 645 user meter: import positive"),
    "ECM-U01": (1, "DL/T 698.45 user electric-carbon meter at 110 kV: import positive"),
    "GM-U04-T037": (-1, "DL/T 698.45 gateway meter: import into the user's bus positive"),
    "ECM-G3-1": (-1, "DL/T 698.45 plant outlet meter: export negative"),
    "RTU-P03": (1, "IEC 104 plant RTU: engineering units, no ratio, the truth's sign"),
    "MB-S057-2": (1, "Modbus multifunction meter: CT/VT programmed, primary values, out of the bus"),
}


@pytest.fixture(scope="module")
def field():
    return make_field(count=12)


def _mappings(tmp_path, devices: list[dict]) -> tuple[Store, dict[str, PointMapping]]:
    """What the center multiplies each point's value by: the registered devices, as metering reads them."""
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    upsert_collector(store, "C1", "secret-0123456789")
    register_devices(store, devices, "C1")
    service = MeteringService(store, {}, 60)
    return store, {m.point_id: m for m in service.points}


async def _poll(device_map: dict, device_id: str, clock) -> list[RawValue]:
    config = config_from_dict(config_from_device_map(device_map, devices=[device_id], period_s=60.0))
    delivered: list[RawValue] = []
    poller = pollers.make_poller(
        config.devices[0], config, lambda _d, values: delivered.extend(values), clock
    )
    try:
        await poller.open()
        values = await poller.poll()
        await asyncio.sleep(0)  # IEC 104 values arrive through deliver, flushed on the next loop tick
        for _ in range(50):
            if values or delivered:
                break
            await asyncio.sleep(0.01)
        return [*values, *delivered]
    finally:
        await poller.close()


def _truth_of(field, point: dict, now: datetime) -> tuple[float, float]:
    """(truth in the element's unit, the flooring a counter register may take off it: 0 for instants)."""
    kind, element, quantity, end = (point[k] for k in ("element_kind", "element_id", "quantity", "end"))
    if not quantity.endswith("_energy_kwh") and quantity != "carbon_kg":
        return field.feed.at(now).value(kind, element, quantity, end), 0.0
    direction = {"import_energy_kwh": -1.0 if kind == "branch" else 1.0, "export_energy_kwh": 1.0}
    sign = direction[quantity] if kind in ("branch", "generator", "load") else 1.0
    return 1000 * field.integral(kind, element, "p_mw", now, end, sign), 1.0


@pytest.mark.parametrize("device_id", list(ROUND_TRIP))
def test_each_device_kind_gives_the_primary_truth_through_its_protocol_collector_and_center(
    field, tmp_path, device_id
):
    entry = field.entry(device_id)

    async def scenario():
        field.at(0)
        farm = DeviceFarm(field.device_map, field.feed, field.clock.now, only=[device_id])
        await farm.start(base_port=0)
        try:
            now = field.at(7.25)
            return now, await _poll(farm.device_map(), device_id, field.clock.now)
        finally:
            await farm.stop()

    now, values = asyncio.run(scenario())
    store, mappings = _mappings(tmp_path, [entry])
    store.close()
    points = {p["id"]: p for p in entry["points"]}
    checked = 0
    for value in values:
        point_id = f"{device_id}/{value.point}"
        point, mapping = points[point_id], mappings[point_id]
        if value.value is None or point["quantity"] in ("carbon_kg", "intensity_g_per_kwh"):
            continue  # carbon depends on the factor downloaded (test_meter_check); factors are set values
        primary = float(value.value * mapping.scale_to_element)
        truth, floors = _truth_of(field, point, now)
        resolution = mapping.resolution_in_element_units()
        slack = abs(truth) * FLOAT32 + 1e-9
        if floors:  # a register shows its value floored: truth - one digit < shown <= truth
            assert truth - resolution - slack <= primary <= truth + slack, (point_id, primary, truth)
        else:  # an instant value is rounded to its last digit
            assert abs(primary - truth) <= resolution / 2 + slack, (point_id, primary, truth)
        checked += 1
    assert checked >= 2
    sign = ROUND_TRIP[device_id][0]
    for value in values:
        point = points[f"{device_id}/{value.point}"]
        if point["quantity"] == "p_mw" and value.value:  # the register's own sign, by the convention
            truth = field.feed.at(now).value(point["element_kind"], point["element_id"], "p_mw", point["end"])
            assert math.copysign(1, value.value) == sign * math.copysign(1, truth), point["id"]
    if entry.get("ct_ratio") and entry["protocol"] != "modbus-tcp":  # the register shows the secondary side
        power = next(v for v in values if points[f"{device_id}/{v.point}"]["quantity"] == "p_mw")
        truth = field.feed.at(now).value(
            *(
                points[f"{device_id}/{power.point}"][k]
                for k in ("element_kind", "element_id", "quantity", "end")
            )
        )
        ratio = entry["ct_ratio"] * entry["vt_ratio"]
        per_mw = 1000.0 if entry["protocol"] == "dlt645" else 1e6
        assert abs(float(power.value)) == pytest.approx(abs(truth) * per_mw / ratio, rel=1e-3)


def test_power_signs_follow_the_forward_register_at_every_meter():
    _, device_map = grid_and_map()
    sign_of = {}
    for device in device_map["devices"]:
        for point in device["points"]:
            if point["quantity"] == "p_mw" and device["protocol"] in ("dlt645", "dlt698"):
                sign_of[device["id"]] = math.copysign(1.0, point["scale_to_device"])
    assert all(
        sign_of[d] == -1.0 for d in sign_of if d.startswith(("ECM-G", "GM-"))
    )  # export / branch import
    assert all(sign_of[d] == 1.0 for d in sign_of if d.startswith(("EM-", "ECM-U", "PVM-", "SM-")))
    assert power_sign("generator", None, "export_energy_kwh") == -1.0
    assert power_sign("branch", "import_energy_kwh", "export_energy_kwh") == -1.0
    assert (
        power_sign("load", "import_energy_kwh", None)
        == power_sign("storage", "charge_energy_kwh", None)
        == 1.0
    )


def test_every_meter_has_metrology_and_its_largest_secondary_value_fits_its_register():
    net, device_map = grid_and_map()
    rated = {**dict(zip(net.gen.name, net.gen.max_p_mw, strict=True))}
    parsed = DeviceMap.parse(device_map)
    for device in parsed.devices:
        if device.protocol in ("dlt645", "dlt698"):
            assert device.ct_ratio and device.vt_ratio, device.id
            vn_kv = device.vt_ratio * 100 / 1000
            assert device.accuracy_class == (
                "0.2S" if vn_kv >= 110 or device.id.startswith("ECM-G") else "0.5S"
            )
            ratio = device.ct_ratio * device.vt_ratio
            for point in device.points:
                assert point.resolution is not None, point.id
                counter = point.quantity.endswith("_energy_kwh") or point.quantity == "carbon_kg"
                assert bool(point.frozen) == counter, point.id
                if point.quantity != "intensity_g_per_kwh":  # the factor is no secondary value
                    per_unit = {"kW": 1e3, "W": 1e6, "kWh": 1.0, "kg": 1.0}[point.unit]
                    assert point.secondary and math.isclose(abs(point.scale_to_device) * ratio, per_unit)
        elif device.protocol == "iec104":
            assert device.accuracy_class == "0.5" and device.ct_ratio is None
    # the largest unit of the grid at its rated output: 1000 MW on 500 kV
    ct, vt = instrument_transformers(500.0, max(rated.values()))
    secondary_kw = max(rated.values()) * 1000 / (ct * vt)
    assert secondary_kw <= 79.9999 and secondary_kw * 1000 * 10 < 2**31  # 645 XX.XXXX kW; 698 0.1 W
    assert 0.5 < secondary_kw < 1.2  # a 5 A / 100 V secondary near its rating, not lost in the last digit


class _Constant:
    """A value source for one element held at constant power from START (counters its exact integral)."""

    def __init__(self, refs: dict, p_mw: float) -> None:
        self.refs, self.p_mw = refs, p_mw

    def read(self, quantity: str, t: datetime) -> float:
        ref = self.refs[quantity]
        hours = (t - START).total_seconds() / 3600
        primary = self.p_mw if ref.quantity == "p_mw" else self.p_mw * 1000 * hours  # MW, kWh
        return primary * ref.scale


@pytest.mark.parametrize("protocol", ["dlt645", "dlt698"])
def test_a_600_mw_unit_behind_ct_vt_round_trips_without_overflow(tmp_path, protocol):
    from carbonflow.sim.device_map import _meter_points  # the map's own point builder

    metering = metering_at(220.0, 600 * 1.2, plant=True)  # CT sized with the unit's 20 % overload
    points = _meter_points(protocol, "generator", "G600", metering, reverse="export_energy_kwh")
    for k, point in enumerate(points):
        point["id"] = f"M600/{k + 1}"
    address = {"address": "110199999999"} if protocol == "dlt645" else {"sa": "220199999999"}
    entry = {
        "id": "M600", "kind": "carbon_meter", "protocol": protocol, "bus": "P99", "address": address,
        "endpoint": {"host": "127.0.0.1", "port": 0}, "points": points, **metering.device_fields(),
    }  # fmt: skip
    clock = ManualClock(START)
    mapped = device_from_entry(entry)
    factory = DeviceFactory(feed=None, now_fn=clock.now)
    refs = {i.name: factory.ref_of(i) for i in mapped.inputs if i.point is not None}
    source = _Constant(refs, 600.0)
    server = mapped.server
    server.bind(source, DeviceClock(now_fn=clock.now))
    old = server.counter_registers()[REVERSE_ENERGY]
    server.bind_counters({REVERSE_ENERGY: TruthCounter(source, REVERSE_ENERGY, old.resolution, old.rollover)})

    async def scenario():
        port = await server.start()
        try:
            clock.advance(3600)  # one hour at 600 MW: 600 000 kWh
            served = {**entry, "endpoint": {"host": "127.0.0.1", "port": port}}
            return await _poll({"devices": [served]}, "M600", clock.now)
        finally:
            await server.stop()

    values = {v.point: v.value for v in asyncio.run(scenario())}
    store, mappings = _mappings(tmp_path, [entry])
    store.close()
    energy, power = (values["1"], mappings["M600/1"]), (values["2"], mappings["M600/2"])
    assert power[0] < 0  # export on the reverse register: negative power
    assert float(power[0] * power[1].scale_to_element) == pytest.approx(
        600.0, abs=power[1].resolution_in_element_units()
    )
    kwh = float(energy[0] * energy[1].scale_to_element)
    assert 600_000 - energy[1].resolution_in_element_units() - 1e-6 <= kwh <= 600_000 + 1e-6


def test_a_secondary_point_without_a_ct_ratio_is_a_named_device_problem_never_x1(tmp_path):
    entry = next(d for d in build_device_map(grid_and_map()[0])["devices"] if d["id"] == "EM-U04")
    broken = {k: v for k, v in entry.items() if k != "ct_ratio"}
    store, mappings = _mappings(tmp_path, [broken])
    try:
        problems = metrology_problems(store)
        assert list(problems) == ["EM-U04"]
        assert "EM-U04" in problems["EM-U04"] and "ct_ratio" in problems["EM-U04"]
        assert not [p for p in mappings if p.startswith("EM-U04/")]  # not used at x1
        register_devices(store, [entry], "C1")  # the map gives it: the problem is gone
        assert metrology_problems(store) == {}
        assert len(MeteringService(store, {}, 60).points) == len(entry["points"])
    finally:
        store.close()


@pytest.mark.parametrize("device_id", ["EM-U04", "ECM-U01", "ECM-G3-1"])
def test_frozen_secondary_counters_give_the_primary_truth_at_each_boundary(field, tmp_path, device_id):
    net, _ = grid_and_map()
    frozen_map = build_device_map(net, freeze_period_s=60)  # every meter freezes each minute
    entry = next(d for d in frozen_map["devices"] if d["id"] == device_id)

    async def scenario():
        field.at(0)
        farm = DeviceFarm(frozen_map, field.feed, field.clock.now, only=[device_id])
        await farm.start(base_port=0)
        try:
            field.at(7.25)
            return await _poll(farm.device_map(), device_id, field.clock.now)
        finally:
            await farm.stop()

    values = asyncio.run(scenario())
    store, mappings = _mappings(tmp_path, [entry])
    store.close()
    points = {p["id"]: p for p in entry["points"]}
    at_boundaries = [v for v in values if v.ts.second == 0 and v.ts.microsecond == 0 and v.value is not None]
    energy = [
        v for v in at_boundaries if points[f"{device_id}/{v.point}"]["quantity"].endswith("_energy_kwh")
    ]
    assert len({v.ts for v in energy}) >= 5  # the freeze records of the minutes before the poll
    for value in energy:
        point, mapping = points[f"{device_id}/{value.point}"], mappings[f"{device_id}/{value.point}"]
        primary = float(value.value * mapping.scale_to_element)
        truth, _ = _truth_of(field, point, value.ts)
        digit = mapping.resolution_in_element_units()
        assert truth - digit - 1e-6 <= primary <= truth + 1e-6, (point["id"], value.ts, primary, truth)


def test_the_collector_configuration_records_each_meters_ct_and_vt_ratio():
    _, device_map = grid_and_map()
    config = config_from_dict(config_from_device_map(device_map, devices=["ECM-G1-1", "RTU-P01"]))
    meter, rtu = sorted(config.devices, key=lambda d: d.id)
    assert (meter.ct_ratio, meter.vt_ratio) == (300, 5000) and rtu.ct_ratio is None


def test_a_secondary_value_carries_the_errors_of_its_ct_and_vt_as_well_as_the_meters(tmp_path):
    """Class I metering point: 0.2S meter, 0.2S CT, 0.2 VT → √(3 × 0.2²) ≈ 0.346 % on a secondary value;
    the plant RTU's primary transducer values keep their own class; a factor register has none."""
    device_map = build_device_map(grid_and_map()[0], freeze_period_s=60)
    plant_meter = next(d for d in device_map["devices"] if d["id"] == "ECM-G1-1")
    rtu = next(d for d in device_map["devices"] if d["id"] == "RTU-P01")
    assert (plant_meter["accuracy_class"], plant_meter["ct_class"], plant_meter["vt_class"]) == (
        "0.2S",
        "0.2S",
        "0.2",
    )
    store, mappings = _mappings(tmp_path, [plant_meter, rtu])
    try:
        by_quantity = {(m.point_id.split("/")[0], m.quantity): m for m in mappings.values()}
        energy = by_quantity[("ECM-G1-1", "export_energy_kwh")]
        assert energy.mpe_percent == pytest.approx(math.sqrt(3) * 0.2)
        assert by_quantity[("ECM-G1-1", "intensity_g_per_kwh")].mpe_percent == 0.0
        assert by_quantity[("RTU-P01", "p_mw")].mpe_percent == pytest.approx(0.5)
    finally:
        store.close()

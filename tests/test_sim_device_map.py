"""The device map as data: coverage of units, branch ends, users; unique addresses; points the truth knows."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from datetime import UTC, datetime

import pytest

from carbonflow.messages.device_map import DeviceMap
from carbonflow.sim.device_map import build_device_map
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation, element_ids
from carbonflow.sim.timeseries import SimConfig
from carbonflow.sim.truth import PointRef

warnings.filterwarnings("ignore", module="pandapower")


@pytest.fixture(scope="module")
def net():
    return reference_grid()


@pytest.fixture(scope="module")
def device_map(net):
    return json.loads(json.dumps(build_device_map(net), allow_nan=False))


def points_of(device_map):
    """(device, point) records of the JSON document, checked against the contract on the way."""
    pairs = DeviceMap.parse(device_map).points()
    return [(device.document(), point.document()) for device, point in pairs]


def _targets(device_map, kind=None):
    return {
        (p["element_kind"], p["element_id"], p["quantity"], p["end"])
        for d, p in points_of(device_map)
        if kind is None or d["kind"] == kind
    }


def test_every_plant_unit_has_rtu_points_and_an_outlet_carbon_meter(net, device_map):
    units = [name for name in net.gen.name] + [
        n for n, plant in zip(net.sgen.name, net.sgen.plant, strict=True) if plant.startswith("P")
    ]
    rtu = _targets(device_map, "plant_rtu")
    meters = _targets(device_map, "carbon_meter")
    for unit in units:
        for quantity in ("p_mw", "export_energy_kwh", "carbon_kg", "intensity_g_per_kwh"):
            assert ("generator", unit, quantity, "-") in rtu
        assert ("generator", unit, "export_energy_kwh", "-") in meters
    assert sum(d["kind"] == "plant_rtu" for d in device_map["devices"]) == 10


def test_every_branch_end_at_a_substation_is_measured(net, device_map):
    ids = element_ids(net)
    kind = dict(zip(net.bus.index, net.bus.kind, strict=True))
    measured = {
        (p["element_id"], p["end"])
        for _, p in points_of(device_map)
        if p["element_kind"] == "branch" and p["quantity"] == "p_mw"
    }
    for table, columns in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
        for index, row in net[table].iterrows():
            for end, column in zip(("from", "to"), columns, strict=True):
                if kind[row[column]] == "substation":
                    assert (ids[f"{table}:{index}"], end) in measured


def test_every_user_has_an_energy_meter_and_a_carbon_meter(net, device_map):
    energy = _targets(device_map, "energy_meter")
    carbon = _targets(device_map, "carbon_meter")
    for user in net.bus[net.bus.kind == "user"].name:
        assert ("load", user, "import_energy_kwh", "-") in energy
        assert ("load", user, "carbon_kg", "-") in carbon
        assert ("load", user, "intensity_g_per_kwh", "-") in carbon
    assert ("generator", "U04-PV", "export_energy_kwh", "-") in _targets(device_map, "generation_meter")
    assert ("storage", "U10-BESS", "discharge_energy_kwh", "-") in _targets(device_map, "storage_meter")


def test_addresses_are_unique(device_map):
    devices = device_map["devices"]
    assert len({d["id"] for d in devices}) == len(devices)
    meters_645 = [d["address"]["address"] for d in devices if d["protocol"] == "dlt645"]
    assert len(set(meters_645)) == len(meters_645) and all(len(a) == 12 and a.isdigit() for a in meters_645)
    sa_698 = [d["address"]["sa"] for d in devices if d["protocol"] == "dlt698"]
    assert len(set(sa_698)) == len(sa_698)
    common = [d["address"]["common_address"] for d in devices if d["protocol"] == "iec104"]
    assert len(set(common)) == len(common)
    for d in devices:
        if d["protocol"] == "iec104":
            ioas = [p["address"]["ioa"] for p in d["points"]]
            assert len(set(ioas)) == len(ioas)
    endpoints = Counter(
        (d["endpoint"]["host"], d["endpoint"]["port"]) for d in devices if d["protocol"] != "modbus-tcp"
    )
    assert max(endpoints.values()) == 1
    modbus = [
        (d["endpoint"]["port"], d["address"]["unit_id"]) for d in devices if d["protocol"] == "modbus-tcp"
    ]
    assert len(set(modbus)) == len(modbus)
    point_ids = [p["id"] for _, p in points_of(device_map)]
    assert len(set(point_ids)) == len(point_ids)


def test_every_point_reads_a_value_from_the_truth(net, device_map):
    start = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)
    truth = next(Simulation(net, SimConfig(start=start, interval_s=3600, count=1)).chunks()).interval(0)
    for _device, point in points_of(device_map):
        ref = PointRef.from_point(point)
        value = truth.value(ref.element_kind, ref.element_id, ref.quantity, ref.end)
        assert value == value or ref.quantity == "intensity_g_per_kwh"  # NaN only for an unpowered bus

"""Interval snapshot assembly from measurements, checked against the simulator's truth."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from carbonflow.center.metering.assemble import Measurements, assemble_snapshot
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

COUNTERS = (
    "export_energy_kwh",
    "import_energy_kwh",
    "carbon_kg",
    "charge_energy_kwh",
    "discharge_energy_kwh",
)


@pytest.fixture(scope="module")
def world():
    net = reference_grid()
    config = SimConfig(start=datetime(2026, 6, 1, 3, 0, tzinfo=UTC), interval_s=900, count=3, seed=1)
    truths = list(Simulation(net, config).intervals())
    return grid_document(net), build_device_map(net), truths


def measured(device_map, before, after, drop=lambda point: False) -> Measurements:
    """What the device map's points would report over the interval ``after``, read exactly."""
    counters, instants = {}, {}
    for device in device_map["devices"]:
        for point in device["points"]:
            if drop(point):
                continue
            key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
            if point["quantity"] in COUNTERS:
                start = Decimal(repr(before.value(*key))) if before else Decimal(0)
                counters[key] = (start, Decimal(repr(after.value(*key))))
            else:
                instants.setdefault(key, []).append(Decimal(repr(after.value(*key))))
    return Measurements(interval_s=after.interval_s, counters=counters, instants=instants)


def intensities(document):
    return {b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]}


def test_fully_measured_interval_reproduces_the_truth(world):
    topology, device_map, truths = world
    before, after = truths[1], truths[2]
    assembled = assemble_snapshot(topology, measured(device_map, before, after))
    # the device map measures every element; what is estimated are the unmetered ends of branches
    # metered at one end only and the factor of units without a carbon counter (PV, wind)
    methods = {e.method for e in assembled.estimates}
    assert methods <= {"other end", "configured intensity"}, assembled.estimates
    result = solve(snapshot_from_dict(assembled.snapshot))
    truth = after.result()
    measured_e = dict(zip(result.snapshot.bus_ids, result.bus_intensity_g_per_kwh))
    truth_e = dict(zip(truth.snapshot.bus_ids, truth.bus_intensity_g_per_kwh))
    for bus, value in truth_e.items():
        if np.isnan(value):
            continue
        # counters average the interval; the truth is the interval's own flow, so they agree closely
        assert measured_e[bus] == pytest.approx(value, rel=0.02, abs=2.0), bus
    assert result.totals["generation_carbon_t_per_h"] == pytest.approx(
        truth.totals["generation_carbon_t_per_h"], rel=0.02
    )


def test_missing_branch_ends_are_estimated_and_named(world):
    topology, device_map, truths = world
    branch = topology["branches"][3]["id"]

    def drop(point):
        return point["element_kind"] == "branch" and point["element_id"] == branch

    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], drop))
    methods = {(e.element_id, e.method) for e in assembled.estimates if e.element_kind == "branch"}
    assert (
        (branch, "kcl") in methods or (branch, "previous interval") in methods or (branch, "zero") in methods
    )
    record = next(b for b in assembled.snapshot["branches"] if b["id"] == branch)
    true_from = truths[2].value("branch", branch, "p_mw", "from")
    if (branch, "kcl") in methods:
        assert record["p_from_mw"] == pytest.approx(true_from, abs=0.05 * abs(true_from) + 1.0)


def test_a_unit_without_counters_falls_back_to_its_meter_factor_then_to_its_configured_intensity(world):
    topology, device_map, truths = world
    unit = topology["generators"][1]

    def no_counters(point):
        return point["element_id"] == unit["id"] and point["quantity"] in ("carbon_kg", "export_energy_kwh")

    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], no_counters))
    record = next(g for g in assembled.snapshot["generators"] if g["id"] == unit["id"])
    assert record["intensity_g_per_kwh"] == pytest.approx(unit["intensity_g_per_kwh"])
    assert record["p_mw"] == pytest.approx(truths[2].value("generator", unit["id"], "p_mw"), rel=1e-9)

    def nothing(point):
        return point["element_id"] == unit["id"]

    previous = {"generators": {unit["id"]: 123.0}}
    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], nothing), previous)
    record = next(g for g in assembled.snapshot["generators"] if g["id"] == unit["id"])
    assert record["p_mw"] == 123.0
    methods = {(e.quantity, e.method) for e in assembled.estimates if e.element_id == unit["id"]}
    assert methods == {("p_mw", "previous interval"), ("intensity_g_per_kwh", "configured intensity")}

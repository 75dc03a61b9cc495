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
    # every element is measured; what is not is fixed by a law: the unmetered ends of branches metered
    # at one end by the balance at their bus, the factor of zero-emission units without a carbon meter
    assert assembled.estimates == []
    assert {e.method for e in assembled.derived} <= {"kcl", "declared zero-emission unit"}
    result = solve(snapshot_from_dict(assembled.snapshot))
    truth = after.result()
    measured_e = dict(zip(result.snapshot.bus_ids, result.bus_intensity_g_per_kwh))
    truth_e = dict(zip(truth.snapshot.bus_ids, truth.bus_intensity_g_per_kwh))
    for bus, value in truth_e.items():
        if not np.isnan(value):
            assert abs(measured_e[bus] - value) <= 0.5, bus
    totals, true_totals = result.totals, truth.totals
    generation = true_totals["generation_carbon_t_per_h"]
    assert abs(totals["residual_t_per_h"]) <= 0.001 * generation
    for name in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert totals[name] == pytest.approx(true_totals[name], rel=0.002), name


def test_a_branch_without_meters_is_derived_from_the_balance_at_its_bus(world):
    topology, device_map, truths = world
    branch = topology["branches"][3]["id"]

    def drop(point):
        return point["element_kind"] == "branch" and point["element_id"] == branch

    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], drop))
    assert not [e for e in assembled.estimates if e.element_kind == "branch"]
    assert {(e.element_id, e.method, e.kind) for e in assembled.derived if e.element_id == branch} == {
        (branch, "kcl", "derived")
    }
    record = next(b for b in assembled.snapshot["branches"] if b["id"] == branch)
    for end in ("from", "to"):
        true_value = truths[2].value("branch", branch, "p_mw", end)
        assert record[f"p_{end}_mw"] == pytest.approx(true_value, rel=1e-6, abs=1e-6), end


def test_a_branch_end_without_a_balance_to_close_is_estimated_lossless_and_named(world):
    topology, device_map, truths = world
    branch = topology["branches"][3]
    bus = branch["to_bus"]

    def drop(point):  # the 'to' end, and a second unknown at its bus, so the balance cannot close
        at_bus = point["element_kind"] == "branch" and point["end"] == "to" and point["element_id"] != ""
        return (point["element_id"] == branch["id"] and point["end"] == "to") or (
            at_bus
            and any(b["to_bus"] == bus and b["id"] == point["element_id"] for b in topology["branches"])
        )

    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], drop))
    methods = {(e.element_id, e.method) for e in assembled.estimates if e.element_kind == "branch"}
    assert (branch["id"], "other end") in methods
    record = next(b for b in assembled.snapshot["branches"] if b["id"] == branch["id"])
    assert record["p_to_mw"] == pytest.approx(-record["p_from_mw"])
    assert assembled.uncertainty["branches_to"][branch["id"]] > 0


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

    # nothing of the unit measured: its output is the balance of its bus, whose branches are measured
    previous = {"generators": {unit["id"]: 123.0}}
    assembled = assemble_snapshot(topology, measured(device_map, truths[1], truths[2], nothing), previous)
    record = next(g for g in assembled.snapshot["generators"] if g["id"] == unit["id"])
    assert record["p_mw"] == pytest.approx(truths[2].value("generator", unit["id"], "p_mw"), rel=1e-6)
    assert {(e.quantity, e.method) for e in assembled.derived if e.element_id == unit["id"]} == {
        ("p_mw", "kcl")
    }
    methods = {(e.quantity, e.method) for e in assembled.estimates if e.element_id == unit["id"]}
    assert methods == {("intensity_g_per_kwh", "configured intensity")}

    plant_branches = {b["id"] for b in topology["branches"] if unit["bus"] in (b["from_bus"], b["to_bus"])}

    def nothing_at_the_plant(point):
        return nothing(point) or point["element_id"] in plant_branches

    assembled = assemble_snapshot(
        topology, measured(device_map, truths[1], truths[2], nothing_at_the_plant), previous
    )
    # nor its branches: their far ends give the power it sends out, losses unknown: an estimate, and a
    # better one than holding the previous interval's 123 MW
    record = next(g for g in assembled.snapshot["generators"] if g["id"] == unit["id"])
    assert record["p_mw"] == pytest.approx(truths[2].value("generator", unit["id"], "p_mw"), rel=0.01)
    methods = {(e.quantity, e.method) for e in assembled.estimates if e.element_id == unit["id"]}
    assert methods == {("p_mw", "kcl"), ("intensity_g_per_kwh", "configured intensity")}


def test_an_element_nothing_can_fix_is_held_at_the_previous_interval(world):
    topology, device_map, truths = world
    plant = topology["generators"][1]["bus"]
    at_plant = {g["id"] for g in topology["generators"] if g["bus"] == plant} | {
        b["id"] for b in topology["branches"] if plant in (b["from_bus"], b["to_bus"])
    }
    # the plant's far-end substations are not measured either: no balance closes around the plant
    far = {
        b["from_bus"] if b["to_bus"] == plant else b["to_bus"]
        for b in topology["branches"]
        if b["id"] in at_plant
    }

    def blind(point):
        return (
            point["element_id"] in at_plant
            or point["element_id"] in far
            or (
                point["element_kind"] == "branch"
                and any(
                    b["id"] == point["element_id"] and {b["from_bus"], b["to_bus"]} & far
                    for b in topology["branches"]
                )
            )
        )

    unit = topology["generators"][1]["id"]
    assembled = assemble_snapshot(
        topology, measured(device_map, truths[1], truths[2], blind), {"generators": {unit: 123.0}}
    )
    record = next(g for g in assembled.snapshot["generators"] if g["id"] == unit)
    assert record["p_mw"] == 123.0
    methods = {(e.quantity, e.method) for e in assembled.estimates if e.element_id == unit}
    assert ("p_mw", "previous interval") in methods
    assert assembled.uncertainty["generators"][unit] == pytest.approx(12.3)


def test_a_carbon_register_that_did_not_move_is_no_exact_zero_intensity():
    """A secondary-side carbon register (0.01 kg x CT x VT = 15 t a digit at a 500 kV unit) may not move
    in a minute: Δcarbon/Δenergy is then 0 ± a digit / energy, and the unit's RTU factor (790) wins."""
    from carbonflow.center.metering.assemble import _unit_intensity

    unit = ("generator", "G1-1", "-")
    energy, carbon, factor = (
        (unit[0], unit[1], q, unit[2]) for q in ("export_energy_kwh", "carbon_kg", "intensity_g_per_kwh")
    )
    data = Measurements(
        interval_s=60,
        counters={energy: (Decimal("6600"), Decimal("10800")), carbon: (Decimal("0"), Decimal("0"))},
        instants={factor: [Decimal("790")]},
        uncertainty={energy: 150 / 6**0.5, carbon: 15000 / 6**0.5},
    )
    chosen = _unit_intensity({"id": "G1-1", "intensity_g_per_kwh": 790.0}, data)
    assert chosen.value == 790.0


def _tie_world(p_from: list[str], p_to: list[str]) -> tuple[dict, Measurements]:
    """Two buses, a unit at one, a load at the other, one branch metered at both ends by samples."""
    topology = {
        "buses": [{"id": "B1"}, {"id": "B2"}],
        "generators": [{"id": "G1", "bus": "B1", "intensity_g_per_kwh": 800.0}],
        "loads": [{"id": "D2", "bus": "B2"}],
        "branches": [{"id": "L1", "from_bus": "B1", "to_bus": "B2"}],
    }
    key_from, key_to = ("branch", "L1", "p_mw", "from"), ("branch", "L1", "p_mw", "to")
    instants = {
        ("generator", "G1", "p_mw", "-"): [Decimal("0.3")],
        ("load", "D2", "p_mw", "-"): [Decimal("0.3")],
        key_from: [Decimal(v) for v in p_from],
        key_to: [Decimal(v) for v in p_to],
    }
    spread = {key: float(np.std([float(v) for v in values], ddof=1) / len(values) ** 0.5)
              for key, values in instants.items() if len(values) > 1}  # fmt: skip
    return topology, Measurements(interval_s=60, instants=instants, uncertainty=spread)


def test_two_branch_ends_both_delivering_within_their_uncertainty_are_reconciled():
    """A flow passing zero, its ends sampled at other moments: both means deliver power (impossible on
    a passive branch).  Within 3 combined 1σ the branch carries their inverse-variance mean, lossless,
    derived — the interval meters; far outside it the engine still names the branch."""
    topology, data = _tie_world(["0.7", "-0.1", "-0.9"], ["-0.4", "-0.3", "-0.2"])  # means -0.1, -0.3
    assembled = assemble_snapshot(topology, data)
    [branch] = assembled.snapshot["branches"]
    assert branch["p_from_mw"] == pytest.approx(-branch["p_to_mw"])
    assert -0.1 < branch["p_from_mw"] < 0.3  # between the two ends' readings, nearer the surer one
    assert branch["p_from_mw"] > 0.25
    assert {(e.element_id, e.method) for e in assembled.derived} >= {("L1", "reconciled ends")}
    assert not [e for e in assembled.estimates if e.element_id == "L1"]
    solve(snapshot_from_dict(assembled.snapshot), "receiving")

    topology, data = _tie_world(["-5.0", "-5.1", "-4.9"], ["-5.0", "-4.9", "-5.1"])  # a swapped CT
    assembled = assemble_snapshot(topology, data)
    [branch] = assembled.snapshot["branches"]
    assert branch["p_from_mw"] == pytest.approx(-5.0) and branch["p_to_mw"] == pytest.approx(-5.0)
    with pytest.raises(Exception, match="both ends deliver power"):
        solve(snapshot_from_dict(assembled.snapshot), "receiving")


def test_an_estimated_end_that_contradicts_the_measured_one_is_reconciled_not_refused():
    """The 'from' end's reading is an estimate (taken before the boundary, when the flow was reversed) and
    'delivers' as the measured 'to' end does: the estimate explains it, so the interval meters (the
    measured end, far surer, decides the flow) and the branch is named as estimated.  The same numbers
    both measured are refused, as the swapped CT above."""
    from dataclasses import replace

    topology, data = _tie_world(["-0.3", "-0.31", "-0.29"], ["-0.3", "-0.31", "-0.29"])
    with pytest.raises(Exception, match="both ends deliver power"):
        solve(snapshot_from_dict(assemble_snapshot(topology, data).snapshot), "receiving")

    key_from = ("branch", "L1", "p_mw", "from")
    data = replace(data, estimated={key_from: "read before the boundary"})
    assembled = assemble_snapshot(topology, data)
    [branch] = assembled.snapshot["branches"]
    assert branch["p_from_mw"] == pytest.approx(0.3)  # the measured end's flow
    assert branch["p_to_mw"] == pytest.approx(-branch["p_from_mw"])
    assert ("L1", "reconciled ends") in {(e.element_id, e.method) for e in assembled.estimates}
    solve(snapshot_from_dict(assembled.snapshot), "receiving")

"""The center's interval metering on a real store: readings of the device map's points, as the field
devices would report them for the simulated grid, become stored results equal to the simulator's truth,
and each consumer's electric-carbon meter gets its nodal factor queued for download."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

import pytest

from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import (
    Store,
    ingest_batch,
    interval_results,
    interval_versions,
    list_commands,
    register_devices,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.topology import topology_rows
from carbonflow.messages.c4 import Batch, Reading
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
START = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
INTERVAL_S = 900


@pytest.fixture(scope="module")
def world():
    net = reference_grid()
    truths = list(Simulation(net, SimConfig(start=START, interval_s=INTERVAL_S, count=3, seed=2)).intervals())
    return grid_document(net), build_device_map(net), truths


def readings_at(device_map, truth, ts) -> list[Reading]:
    """Every point read at ``ts`` as the device shows it (device units via scale_to_device)."""
    readings = []
    for device in device_map["devices"]:
        for point in device["points"]:
            key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
            value = 0.0 if truth is None else truth.value(*key)
            if truth is None and point["quantity"] not in COUNTERS:
                continue
            shown = Decimal(repr(value)) * Decimal(repr(point["scale_to_device"]))
            readings.append(Reading(point=point["id"], ts=ts, value=str(shown)))
    return readings


def center_store(tmp_path, topology, device_map) -> Store:
    """A center's store with the reference grid and its devices registered under collector col-1."""
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    upsert_topology(store, topology_rows(topology))
    upsert_collector(store, "col-1", "secret")
    register_devices(store, device_map["devices"], collector_id="col-1")
    return store


def ingest(store, readings):
    batch = Batch(collector_id="col-1", batch_id=uuid.uuid4().hex, seq=0, created_at=START, readings=readings)
    return ingest_batch(store, batch)


def test_metered_interval_matches_the_truth_and_queues_factor_downloads(tmp_path, world):
    topology, device_map, truths = world
    store = center_store(tmp_path, topology, device_map)
    # counters at the start of interval 2 (= end of interval 1) and everything at its end
    ingest(store, readings_at(device_map, truths[0], truths[0].ts))
    ingest(store, readings_at(device_map, truths[1], truths[1].ts))
    service = MeteringService(store, topology, INTERVAL_S)
    outcome = service.meter_interval(truths[1].ts)
    assert outcome.stored, outcome.error
    truth_totals = truths[1].totals()
    for name in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert outcome.totals[name] == pytest.approx(truth_totals[name], rel=0.002), name
    assert abs(outcome.totals["residual_t_per_h"]) <= 0.001 * truth_totals["generation_carbon_t_per_h"]
    assert outcome.complete and outcome.estimates == 0 and outcome.version == 1
    rows = interval_results(store, "bus", truths[1].ts - timedelta(seconds=1), truths[1].ts)
    stored = {row["element_id"]: row["intensity_g_per_kwh"] for row in rows}
    truth_doc = truths[1].result_document()
    compared = 0
    for bus in truth_doc["buses"]:
        if bus["intensity_g_per_kwh"] is not None and stored.get(bus["id"]) is not None:
            true_value = bus["intensity_g_per_kwh"]
            assert abs(stored[bus["id"]] - true_value) <= 0.5, bus["id"]
            band = outcome.bands[bus["id"]]  # value ± band holds the truth, and is narrow
            assert abs(stored[bus["id"]] - true_value) <= band + 1e-9, bus["id"]
            assert band <= 0.02 * max(true_value, 1.0), bus["id"]
            compared += 1
    assert compared >= 90
    commands = list_commands(store, collector_id="col-1")
    factor_commands = [c for c in commands if c["kind"] == "set_carbon_factor"]
    user_meters = {
        d["id"] for d in device_map["devices"] if d["kind"] == "carbon_meter" and d["bus"].startswith("U")
    }
    assert {c["device_id"] for c in factor_commands} == user_meters
    assert outcome.factors_queued == len(user_meters)


def test_an_interval_without_data_is_reported_not_stored(tmp_path, world):
    topology, device_map, truths = world
    store = center_store(tmp_path, topology, device_map)
    outcome = MeteringService(store, topology, INTERVAL_S).meter_interval(truths[1].ts)
    assert not outcome.stored and re.fullmatch(
        r"only \d+% of generators, loads and branches measured", outcome.error
    )
    assert interval_results(store, "bus", truths[1].ts - timedelta(seconds=1), truths[1].ts) == []


def test_an_interval_metered_before_its_readings_arrived_is_metered_again_as_a_new_version(tmp_path, world):
    topology, device_map, truths = world
    store = center_store(tmp_path, topology, device_map)
    ingest(store, readings_at(device_map, truths[0], truths[0].ts))
    at_end = readings_at(device_map, truths[1], truths[1].ts)
    ingest(store, at_end[: len(at_end) * 2 // 3])  # a third is late
    service = MeteringService(store, topology, INTERVAL_S)
    first = service.meter_interval(truths[1].ts)
    assert first.stored and not first.complete and first.estimates > 0
    assert service.readings_available(truths[1].ts) == first.readings
    # the loop can see what is still on its way: the late third's counters read at the start, not at the end
    counters = {p["id"] for d in device_map["devices"] for p in d["points"] if p["quantity"] in COUNTERS}
    late_counters = {r.point for r in at_end[len(at_end) * 2 // 3 :]} & counters
    assert late_counters and service.counters_awaited(truths[1].ts) == len(late_counters)
    ingest(store, at_end[len(at_end) * 2 // 3 :])
    assert service.counters_awaited(truths[1].ts) == 0
    assert service.readings_available(truths[1].ts) > first.readings
    second = service.meter_interval(truths[1].ts, reason="late readings")
    assert second.complete and second.version == 2 and second.factors_queued == 0
    versions = interval_versions(store, truths[1].ts)
    assert [(v.version, v.reason, v.superseded_at is None) for v in versions] == [
        (1, "late readings", False),
        (2, None, True),
    ]
    assert versions[0].estimation["estimates"] and not versions[1].estimation["estimates"]
    assert versions[0].hash != versions[1].hash


def quantized_readings(device_map, truth, ts, keep) -> list[Reading]:
    """Every kept point as its device shows it: in its unit, secondary side included, a counter floored and
    a sample rounded to the register's last digit."""
    readings = []
    for device in device_map["devices"]:
        for point in device["points"]:
            if not keep(point):
                continue
            key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
            exact = Decimal(repr(truth.value(*key))) * Decimal(repr(point["scale_to_device"] or 1.0))
            digit = Decimal(point.get("resolution") or "0")
            if digit > 0:
                rounding = ROUND_FLOOR if point["quantity"] in COUNTERS else ROUND_HALF_EVEN
                exact = (exact / digit).to_integral_value(rounding) * digit
            readings.append(Reading(point=point["id"], ts=ts, value=str(exact)))
    return readings


@pytest.mark.parametrize("source", ["samples", "counters", "both"])
def test_the_reference_grid_meters_to_the_truth_from_samples_counters_or_both(tmp_path, world, source):
    """Power samples alone, energy counters alone (every element that has one), or both — as the devices
    show them (secondary side, register resolution): every bus within 0.5 g/kWh of the truth, totals
    within 0.2 %, residual within 0.1 %, nothing estimated, the truth inside the band."""
    topology, device_map, truths = world
    counted: dict[tuple, set[str]] = {}
    for device in device_map["devices"]:
        for p in device["points"]:
            if p["quantity"] in COUNTERS:
                counted.setdefault((p["element_kind"], p["element_id"], p["end"]), set()).add(p["quantity"])
    # a one-way counter cannot see a flow that reverses: a branch end counts alone only with both registers
    with_counter = {
        key
        for key, quantities in counted.items()
        if key[0] != "branch" or {"import_energy_kwh", "export_energy_kwh"} <= quantities
    }

    def keep(point) -> bool:
        if point["quantity"] in COUNTERS:
            return source != "samples"
        has_counter = (point["element_kind"], point["element_id"], point["end"]) in with_counter
        return not (source == "counters" and point["quantity"] == "p_mw" and has_counter)

    store = center_store(tmp_path, topology, device_map)
    for truth in truths[:2]:
        ingest(store, quantized_readings(device_map, truth, truth.ts, keep))
    service = MeteringService(store, topology, INTERVAL_S)
    outcome = service.meter_interval(truths[1].ts, download_factors=False)
    store.close()
    assert outcome.stored and outcome.estimates == 0, outcome.error
    true_totals = truths[1].totals()
    for name in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert outcome.totals[name] == pytest.approx(true_totals[name], rel=0.002), name
    assert abs(outcome.totals["residual_t_per_h"]) <= 0.001 * true_totals["generation_carbon_t_per_h"]
    inside = pairs = 0
    for bus in truths[1].result_document()["buses"]:
        value, true_value = outcome.intensities.get(bus["id"]), bus["intensity_g_per_kwh"]
        if value is None or true_value is None:
            continue
        assert abs(value - true_value) <= 0.5, (bus["id"], value, true_value)
        pairs += 1
        inside += abs(value - true_value) <= outcome.bands[bus["id"]] + 1e-9
        assert outcome.bands[bus["id"]] <= 0.02 * max(true_value, 1.0), bus["id"]
    assert pairs >= 90 and inside >= 0.95 * pairs


def test_a_device_registered_while_the_center_runs_is_metered_from_its_first_readings(tmp_path, world):
    """`carbonflow center load` of one more RTU while the center runs: the running service reads its
    point mapping again as soon as readings of the new points arrive (no restart)."""
    topology, device_map, truths = world
    late = [d for d in device_map["devices"] if d["id"] == "RTU-P01"]
    early = {**device_map, "devices": [d for d in device_map["devices"] if d["id"] != "RTU-P01"]}
    store = center_store(tmp_path, topology, early)
    ingest(store, readings_at(early, truths[0], truths[0].ts))
    ingest(store, readings_at(early, truths[1], truths[1].ts))
    service = MeteringService(store, topology, INTERVAL_S)
    first = service.meter_interval(truths[1].ts, download_factors=False)
    assert first.stored and first.estimates > 0  # the plant's unit without its RTU: estimated
    register_devices(store, late, collector_id="col-1")
    ingest(store, readings_at({"devices": late}, truths[1], truths[1].ts + timedelta(seconds=1)))
    ingest(store, readings_at(device_map, truths[2], truths[2].ts))
    second = service.meter_interval(truths[2].ts, download_factors=False)
    assert second.stored and second.complete and second.estimates == 0
    assert {p["id"] for p in late[0]["points"]} <= {p.point_id for p in service.points}
    # runs of point ids found known are remembered (compared as lists next time), forgotten on a refresh
    assert service._known_runs == []  # (the refresh of the second interval)
    service._catch_up_points(service.readings_for(truths[2].ts))
    assert service._known_runs and all(set(run) <= service._known_points for run in service._known_runs)
    service.refresh_points()
    assert service._known_runs == []

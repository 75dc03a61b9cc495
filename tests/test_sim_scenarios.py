"""Scenarios as data: device faults through Faults/DeviceClock/value-source wrappers, line outages in the
power flow."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from simfield import QUICK, START, close_to, make_field, register_ok

from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.errors import DeviceError
from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.collector.clients.modbus import ModbusClient
from carbonflow.protocols.modbus.registers import builtin_map
from carbonflow.sim.scenarios import Scenario, ScenarioError, parse_time
from carbonflow.sim.serve import DeviceFarm

SCENARIO = [
    {"kind": "offline", "device": "EM-U04", "start": "00:02", "end": "00:04"},
    {"kind": "drift", "device": "MB-S057-4", "percent": 2.0, "start": "3m", "end": "6m"},
    {"kind": "clock_skew", "device": "EM-U04", "seconds": 30, "start": 360},
    {"kind": "stuck", "device": "RTU-S001", "point": "p_mw", "start": "00:03", "end": "00:07"},
    {"kind": "tamper", "device": "RTU-S001", "point": "RTU-S001/1", "offset": 5.0, "start": "00:03"},
    {"kind": "camera_offline", "camera": "CAM-P01", "start": "00:01", "end": "00:05"},
    {"kind": "line_outage", "branch": "L008", "start": "00:04", "end": "00:08"},
]


@pytest.fixture(scope="module")
def field():
    return make_field(count=10, scenario=Scenario.from_data(SCENARIO, START))


def _farm(field, *ids):
    field.at(0)
    return DeviceFarm(field.device_map, field.feed, field.clock.now, field.simulation.scenario, only=ids)


def test_scenario_files_in_toml_and_json_give_the_same_events(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[events]]\nkind = "drift"\ndevice = "EM-*"\npercent = -1.5\nstart = "1h"\nend = "01:30"\n'
        '[[events]]\nkind = "line_outage"\nbranch = "L009"\nstart = 2025-06-01T17:00:00Z\n'
    )
    records = [
        {"kind": "drift", "device": "EM-*", "percent": -1.5, "start": 3600, "end": "90m"},
        {"kind": "line_outage", "branch": "L009", "start": "2025-06-02T01:00:00+08:00"},
    ]
    (tmp_path / "s.json").write_text(json.dumps({"events": records}))
    from_toml, from_json = Scenario.load(toml, START), Scenario.load(tmp_path / "s.json", START)
    assert [(e.kind, e.start, e.end) for e in from_toml.events] == [
        (e.kind, e.start, e.end) for e in from_json.events
    ]
    drift, outage = from_toml.events
    assert drift.end - drift.start == timedelta(minutes=30) and drift.hits_device("EM-U04")
    assert outage.end is None and from_toml.outages_at(START + timedelta(days=3)) == {"L009"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"kind": "melt", "device": "X"}], "kind must be one of"),
        ([{"kind": "drift", "device": "X"}], "missing percent"),
        ([{"kind": "offline", "device": "X", "start": "00:10", "end": "00:05"}], "is not after start"),
        ([{"kind": "offline", "device": "X", "start": "soon"}], "not a time"),
        ([{"kind": "offline", "device": "X", "colour": "red"}], "unknown field"),
    ],
)
def test_bad_events_are_refused_with_the_event_named(records, message):
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_data(records, START)
    with pytest.raises(ScenarioError, match="give the time zone"):
        parse_time("2025-06-01T17:00:00", START, "x")


def test_events_for_unknown_devices_or_branches_are_refused(field):
    with pytest.raises(ScenarioError, match=r"event 1 .*no device 'EM-U99'"):
        Scenario.from_data([{"kind": "offline", "device": "EM-U99"}], START).check(["EM-U04"])
    with pytest.raises(ScenarioError, match="no branch 'L999'"):
        Scenario.from_data([{"kind": "line_outage", "branch": "L999"}], START).check(branch_ids=["L009"])


def test_offline_window_times_out_the_client_and_the_device_answers_again_after(field):
    entry = field.entry("EM-U04")
    address, ratio = entry["address"]["address"], entry["ct_ratio"] * entry["vt_ratio"]  # secondary side

    async def scenario():
        async with _farm(field, "EM-U04") as farm:
            host, port = farm.endpoint_of("EM-U04")
            async with Dlt645Client(host, port, policy=QUICK) as client:
                field.at(1.5)
                assert await client.read(address, "02030000") > 0  # the load's power, secondary kW
                field.at(3.0)
                with pytest.raises(DeviceError):
                    await client.read(address, "00010000")
                now = field.at(4.5)
                energy = await client.read(address, "00010000")
                assert register_ok(energy, 1000 * field.integral("load", "U04", "p_mw", now) / ratio)

    asyncio.run(scenario())


def test_clock_skew_moves_the_meter_clock_but_not_its_energy(field):
    entry = field.entry("EM-U04")
    address, ratio = entry["address"]["address"], entry["ct_ratio"] * entry["vt_ratio"]  # secondary side

    async def scenario():
        async with _farm(field, "EM-U04") as farm:
            host, port = farm.endpoint_of("EM-U04")
            tz = farm.device("EM-U04").server.tz
            async with Dlt645Client(host, port, policy=QUICK) as client:
                now = field.at(7.0)
                shown = str(await client.read(address, "04000102"))
                assert shown == (now + timedelta(seconds=30)).astimezone(tz).strftime("%H:%M:%S")
                energy = await client.read(address, "00010000")
                assert register_ok(energy, 1000 * field.integral("load", "U04", "p_mw", now) / ratio)

    asyncio.run(scenario())


def test_drift_scales_power_and_speeds_up_the_counter_inside_the_window(field):
    register_map = builtin_map("cf-3ph-meter")

    async def scenario():
        async with _farm(field, "MB-S057-4") as farm:
            host, port = farm.endpoint_of("MB-S057-4")
            async with ModbusClient(host, port, register_map, unit_id=4, policy=QUICK) as client:
                for minutes, factor in ((2.5, 1.0), (4.5, 1.02), (7.5, 1.0)):
                    now = field.at(minutes)
                    values = await client.read_points(["p_kw", "import_energy_kwh"])
                    p_kw = 1000 * field.feed.at(now).value("load", "S057-LD", "p_mw")
                    assert close_to(values["p_kw"].value, p_kw * factor, p_kw * 1e-6)
                    energy = 1000 * field.integral("load", "S057-LD", "p_mw", now)
                    window = min(now, START + timedelta(minutes=6)) - (START + timedelta(minutes=3))
                    if window > timedelta(0):
                        start_energy = 1000 * field.integral(
                            "load", "S057-LD", "p_mw", START + timedelta(minutes=3)
                        )
                        upto = min(now, START + timedelta(minutes=6))
                        energy += 0.02 * (
                            1000 * field.integral("load", "S057-LD", "p_mw", upto) - start_energy
                        )
                    assert register_ok(values["import_energy_kwh"].value, energy)

    asyncio.run(scenario())


def test_stuck_and_tampered_points_of_a_substation_rtu(field):
    entry = field.entry("RTU-S001")
    p_points = {p["address"]["ioa"]: p for p in entry["points"] if p["quantity"] == "p_mw"}
    voltage_ioa = entry["points"][0]["address"]["ioa"]

    async def scenario():
        async with _farm(field, "RTU-S001") as farm:
            host, port = farm.endpoint_of("RTU-S001")
            async with Iec104Client(host, port, common_address=101, policy=QUICK) as client:
                await client.connect()
                at_start = field.feed.at(field.at(3.0))
                for minutes in (5.5, 8.5):
                    truth = field.feed.at(field.at(minutes))
                    values = await client.general_interrogation()
                    stuck = minutes < 7
                    for ioa, point in p_points.items():
                        source = at_start if stuck else truth
                        expected = source.value("branch", point["element_id"], "p_mw", point["end"])
                        assert close_to(values[ioa].value, expected, abs(expected) * 1e-6 + 1e-6)
                    u_kv = truth.value("bus", "S001", "u_kv")
                    assert close_to(values[voltage_ioa].value, u_kv + 5.0, 1e-3)

    asyncio.run(scenario())


def test_line_outage_changes_the_topology_and_the_flows_still_balance(field):
    for truth in field.truths:
        begin = truth.ts - timedelta(seconds=truth.interval_s)
        out = START + timedelta(minutes=4) <= begin < START + timedelta(minutes=8)
        p_from, p_to = (truth.value("branch", "L008", "p_mw", end) for end in ("from", "to"))
        if out:
            assert p_from == 0.0 and p_to == 0.0
        else:
            assert abs(p_from) > 1.0
        totals = truth.totals()
        assert abs(totals["residual_t_per_h"]) < 1e-6
        assert 0 < totals["loss_mw"] < 0.06 * totals["load_mw"]
    assert field.simulation.out_of_service == frozenset()  # restored after the window


def test_camera_offline_is_recorded_in_the_journal(field):
    scenario = field.simulation.scenario
    assert scenario.cameras_offline(START + timedelta(minutes=2)) == {"CAM-P01"}
    assert scenario.cameras_offline(START + timedelta(minutes=5)) == frozenset()
    lines = [text for _, text in scenario.transitions(START, START + timedelta(minutes=10))]
    assert "start camera_offline CAM-P01" in lines and "end camera_offline CAM-P01" in lines
    assert "start line_outage L008" in lines

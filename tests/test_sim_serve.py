"""`sim serve`: devices of the device map answer real protocol requests with the truth's values."""

from __future__ import annotations

import ast
import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from simfield import QUICK, START, close_to, make_field, register_ok

from carbonflow.cli import main
from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceRejected
from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.collector.clients.modbus import ModbusClient
from carbonflow.protocols.dlt698.types import Ti, TimeUnit
from carbonflow.protocols.modbus.registers import builtin_map
from carbonflow.sim.serve import DeviceFarm, ManualClock, SimClock, TruthDriver
from carbonflow.sim.truth import TruthFeed

FLOAT32 = 1e-6  # relative precision of a short float


@pytest.fixture(scope="module")
def field():
    return make_field(count=12)


def _farm(field, *ids):
    field.at(0)  # devices are switched on at the start of the run
    return DeviceFarm(field.device_map, field.feed, field.clock.now, only=ids or None)


def test_all_177_devices_start_on_free_ports_and_the_map_carries_their_endpoints(field):
    async def scenario():
        farm = _farm(field)
        updated = await farm.start(base_port=0)
        try:
            ports = [e.port for e in farm.endpoints]
            assert len(farm.devices) == 177 and len(farm.endpoints) == 133
            assert all(port > 0 for port in ports) and len(set(ports)) == len(ports)
            for device in updated["devices"]:
                assert (device["endpoint"]["host"], device["endpoint"]["port"]) == farm.endpoint_of(
                    device["id"]
                )
            gateways = {d["endpoint"]["port"] for d in updated["devices"] if d["protocol"] == "modbus-tcp"}
            assert len(gateways) == 24  # one per 35 kV busbar, several unit ids each
            assert len(farm.lines()) == 177
        finally:
            await farm.stop()

    asyncio.run(scenario())


def test_plant_rtu_gi_and_ci_give_the_truth_and_the_integrals_of_unit_output(field):
    entry = field.entry("RTU-P03")

    async def scenario():
        async with _farm(field, "RTU-P03") as farm:
            host, port = farm.endpoint_of("RTU-P03")
            async with Iec104Client(host, port, common_address=3, policy=QUICK) as client:
                await client.connect()
                for minutes in (5.5, 9.25):
                    now = field.at(minutes)
                    truth = field.feed.at(now)
                    measured = await client.general_interrogation()
                    counters = await client.counter_interrogation()
                    for point in entry["points"]:
                        ioa = point["address"]["ioa"]
                        if point["address"]["type"] == "M_ME_NC_1":
                            expected = truth.value(
                                point["element_kind"], point["element_id"], point["quantity"], point["end"]
                            )
                            assert close_to(measured[ioa].value, expected, abs(expected) * FLOAT32 + 1e-6)
                    for unit, energy_ioa, carbon_ioa in (("G3-1", 25601, 25602), ("G3-2", 25603, 25604)):
                        energy_kwh = 1000 * field.integral("generator", unit, "p_mw", now)
                        assert register_ok(counters[energy_ioa].value, energy_kwh, 1.0)
                        intensity = truth.value("generator", unit, "intensity_g_per_kwh")
                        carbon_kg = energy_kwh * intensity / 1000  # kWh x g/kWh = g; /1000 = kg
                        assert register_ok(counters[carbon_ioa].value, carbon_kg, 1.0)

    asyncio.run(scenario())


def test_dlt698_unit_carbon_meter_counts_energy_and_carbon_with_the_factor_downloaded_last(field):
    entry = field.entry("ECM-G3-1")
    address, ratio = entry["address"]["sa"], entry["ct_ratio"] * entry["vt_ratio"]  # secondary side

    async def scenario():
        async with _farm(field, "ECM-G3-1") as farm:
            host, port = farm.endpoint_of("ECM-G3-1")
            async with Dlt698Client(host, port, address, policy=QUICK) as client:
                now = field.at(4.5)
                energy = (await client.get("00200400")).value[0]
                carbon = (await client.get("20900200")).value
                expected_kwh = 1000 * field.integral("generator", "G3-1", "p_mw", now) / ratio
                assert register_ok(energy, expected_kwh, 0.0001)
                assert (await client.get("00100400")).value[0] == 0  # a unit outlet only exports
                factor = Decimal("0.929")  # the unit's own intensity, the model default
                assert energy * factor - Decimal("0.011") < carbon <= energy * factor + Decimal("0.001")
                await client.set_carbon_factor(START, Ti(TimeUnit.DAY, 1), ["0.5"])
                later = field.at(11.9)
                energy_later = (await client.get("00200400")).value[0]
                carbon_later = (await client.get("20900200")).value
                expected_later = 1000 * field.integral("generator", "G3-1", "p_mw", later) / ratio
                assert register_ok(energy_later, expected_later, 0.0001)
                added = (energy_later - energy) * Decimal("0.5")
                assert abs(carbon_later - carbon - added) <= Decimal("0.02")
                power_w = (await client.get("20040200")).value[0]  # export shows negative
                expected_w = -1e6 * field.feed.at(later).value("generator", "G3-1", "p_mw") / ratio
                assert close_to(power_w, expected_w, 0.05)

    asyncio.run(scenario())


def test_dlt645_user_meter_energy_is_the_integral_of_the_load_within_its_resolution(field):
    entry = field.entry("EM-U04")
    address, ratio = entry["address"]["address"], entry["ct_ratio"] * entry["vt_ratio"]  # secondary side

    async def scenario():
        async with _farm(field, "EM-U04") as farm:
            host, port = farm.endpoint_of("EM-U04")
            async with Dlt645Client(host, port, policy=QUICK) as client:
                for minutes in (0.5, 3.0, 7.75, 11.9):
                    now = field.at(minutes)
                    energy = await client.read(address, "00010000")
                    expected = 1000 * field.integral("load", "U04", "p_mw", now) / ratio
                    assert register_ok(energy, expected)
                    p_kw = 1000 * field.feed.at(now).value("load", "U04", "p_mw") / ratio
                    assert close_to(await client.read(address, "02030000"), p_kw, 0.00005)
                    assert await client.read(address, "00020000") == 0
                    local = now.astimezone(farm.device("EM-U04").server.tz).strftime("%H:%M:%S")
                    assert str(await client.read(address, "04000102")) == local

    asyncio.run(scenario())


def test_modbus_gateway_serves_the_35kv_circuits_by_unit_id(field):
    ids = ("MB-S057-1", "MB-S057-4")
    register_map = builtin_map("cf-3ph-meter")

    async def scenario():
        async with _farm(field, *ids) as farm:
            assert len(farm.endpoints) == 1
            host, port = farm.endpoint_of(ids[0])
            now = field.at(6.5)
            truth = field.feed.at(now)
            for device_id in ids:
                entry = field.entry(device_id)
                kind, element, end = (entry["points"][0][k] for k in ("element_kind", "element_id", "end"))
                energy_quantity = entry["points"][3]["quantity"]
                unit = entry["address"]["unit_id"]
                async with ModbusClient(host, port, register_map, unit_id=unit, policy=QUICK) as client:
                    values = await client.read_points()
                p_kw = 1000 * truth.value(kind, element, "p_mw", end)
                assert close_to(values["p_kw"].value, p_kw, abs(p_kw) * FLOAT32)
                sign = 1.0 if energy_quantity in ("export_energy_kwh", "import_energy_kwh") else -1.0
                expected = 1000 * field.integral(kind, element, "p_mw", now, end, sign)
                assert register_ok(values["import_energy_kwh"].value, expected)
                u_v = truth.value("bus", "S057", "u_kv") * 1000 / 3**0.5
                assert close_to(values["u_b_v"].value, u_v, u_v * FLOAT32)
            async with ModbusClient(host, port, register_map, unit_id=9, policy=QUICK) as stranger:
                with pytest.raises(DeviceRejected, match="exception 10"):
                    await stranger.read_points(["p_kw"])

    asyncio.run(scenario())


def test_the_driver_keeps_the_truth_ahead_of_the_clock_and_stops_at_the_end(field):
    simulation = make_field(count=3).simulation  # a fresh run (the field's generator is consumed)
    feed, clock = TruthFeed(), ManualClock(START)
    driver = TruthDriver(simulation, feed, clock, lookahead_s=60.0)
    lines: list[str] = []
    driver.on_line = lines.append
    driver.publish_until(clock.now() + timedelta(seconds=driver.lookahead_s))
    assert driver.published == 2 and feed.latest.ts == START + timedelta(minutes=2)
    clock.set(START + timedelta(minutes=3))
    asyncio.run(driver.run(tick_s=0.0))
    assert driver.done and driver.finished() and feed.latest.ts == START + timedelta(minutes=3)
    accelerated = SimClock(START, speed=60.0, monotonic=iter([10.0, 12.5]).__next__)
    accelerated.begin()
    assert accelerated.now() == START + timedelta(seconds=150)


def test_cli_serve_runs_the_simulated_hours_and_writes_the_device_map(tmp_path, capsys):
    out = tmp_path / "served.json"
    arguments = ["sim", "serve", "--hours", "0.0334", "--speed", "100000", "--base-port", "0"]
    code = main([*arguments, "--device-map-out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "177 devices on 133 endpoints" in text and "simulated hours ended" in text
    assert "RTU-P01            iec104     127.0.0.1:" in text
    served = json.loads(out.read_text())
    assert len(served["devices"]) == 177 and all(d["endpoint"]["port"] > 0 for d in served["devices"])


def _imports(package: str) -> dict[str, set[str]]:
    """Every ``carbonflow`` module a package's modules import, at module level or inside functions."""
    folder = Path(__file__).resolve().parent.parent / "carbonflow" / package
    found: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        names = found.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return {module: {n for n in names if n.startswith("carbonflow.")} for module, names in found.items()}


def test_sim_binds_devices_without_knowing_a_protocol_and_devices_never_import_the_simulator():
    for module, names in _imports("sim").items():
        assert not {n for n in names if n.startswith("carbonflow.protocols")}, module
    for module, names in _imports("devices").items():
        parts = {n.split(".")[1] for n in names}
        assert parts <= {"devices", "protocols"}, module


def test_no_sim_module_imports_another_inside_a_function():
    # grid_import's local import of matpower helpers dodges no cycle (it imports matpower at the top too)
    folder = Path(__file__).resolve().parent.parent / "carbonflow" / "sim"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and node.module and path.stem != "grid_import":
                        assert not node.module.startswith("carbonflow.sim"), f"{path.name}: {node.module}"

"""Freezes of simulated devices bound to the simulator's truth: the IEC 104 plant RTU's frozen totals and
the Modbus meter's interval snapshot equal the truth's integrals at the boundary (floored to the
register), however late after the boundary they are read."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from simfield import QUICK, START, make_field, register_ok

from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.collector.clients.modbus import ModbusClient
from carbonflow.protocols.modbus.registers import builtin_map
from carbonflow.sim.serve import DeviceFarm

RTU, METER = "RTU-P03", "MB-S057-1"


def test_frozen_registers_of_simulated_devices_are_the_truth_at_the_boundary():
    field = make_field(count=6)
    for device_id in (RTU, METER):
        field.entry(device_id)["freeze_period_s"] = 60
    meter_entry = field.entry(METER)
    kind, element, end = (meter_entry["points"][0][k] for k in ("element_kind", "element_id", "end"))
    sign = 1.0 if meter_entry["points"][3]["quantity"] in ("export_energy_kwh", "import_energy_kwh") else -1.0

    async def scenario():
        field.at(0)
        async with DeviceFarm(field.device_map, field.feed, field.clock.now, only=[RTU, METER]) as farm:
            host, port = farm.endpoint_of(RTU)
            async with Iec104Client(host, port, common_address=3, policy=QUICK) as client:
                await client.counter_interrogation()  # at 00:00: the registers start at the truth's
                field.at(3 + 41 / 60)  # three boundaries passed, noticed 41 s after the last
                frozen = await client.counter_interrogation()
            host, port = farm.endpoint_of(METER)
            unit = meter_entry["address"]["unit_id"]
            register_map = builtin_map("cf-3ph-meter")
            async with ModbusClient(host, port, register_map, unit_id=unit, policy=QUICK) as meter:
                snapshot = await meter.read_points(["interval_end_time", "interval_import_energy_kwh"])
            return frozen, snapshot

    frozen, snapshot = asyncio.run(scenario())
    boundary = START + timedelta(minutes=3)
    energy = frozen[25601]
    assert energy.timestamp == boundary and energy.type_id == 37
    assert register_ok(energy.value, 1000 * field.integral("generator", "G3-1", "p_mw", boundary), 1.0)
    assert int(snapshot["interval_end_time"].value) == int(boundary.timestamp())
    expected = 1000 * field.integral(kind, element, "p_mw", boundary, end, sign)
    assert register_ok(snapshot["interval_import_energy_kwh"].value, expected)

"""The simulated Modbus meter and the Modbus client over real TCP, with pymodbus as the independent
peer on either side, register accumulation, the carbon register and fault injection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy
from carbonflow.collector.clients.modbus import ModbusClient
from carbonflow.devices.base import DeviceClock, Faults, StaticSource
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.protocols.modbus import builtin_map, register_map_from_dict

FAST = RetryPolicy(timeout_s=0.3, retries=1, backoff_s=0.01)
VALUES = {
    "u_a_v": 230.1,
    "u_b_v": 229.8,
    "u_c_v": 231.4,
    "i_a_a": 4.999,
    "i_b_a": 5.0,
    "i_c_a": 5.01,
    "p_kw": 3.45,
    "q_kvar": -0.52,
    "pf": 0.988,
    "f_hz": 50.01,
    "u_v": 220.4,
    "i_a": 1.5,
}


class ManualTime:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def meter(model: str = "cf-3ph-meter", faults: Faults | None = None, source=None, time=None) -> ModbusMeter:
    clock = DeviceClock(now_fn=time) if time else None
    return ModbusMeter(
        "meter-1", builtin_map(model), source or StaticSource(VALUES), faults=faults, clock=clock
    )


def run(coroutine):
    return asyncio.run(coroutine)


def test_client_reads_every_point_of_the_map_as_the_meter_shows_it():
    async def scenario():
        async with (
            meter() as device,
            ModbusClient("127.0.0.1", device.port, device.map, policy=FAST) as client,
        ):
            return await client.read_points()

    values = run(scenario())
    shown = {name: (str(v.value), v.unit) for name, v in values.items()}
    assert shown["u_a_v"] == ("230.1", "V") and shown["i_a_a"] == ("4.999", "A")
    assert shown["q_kvar"] == ("-0.52", "kvar") and shown["pf"] == ("0.988", "")
    assert shown["f_hz"] == ("50.01", "Hz") and shown["carbon_factor_g_per_kwh"] == ("581.0", "g/kWh")
    assert set(values) == {p.name for p in builtin_map("cf-3ph-meter").points}


def test_energy_and_carbon_registers_accumulate_with_the_factor_in_force():
    time = ManualTime()
    source = StaticSource(dict(VALUES, p_kw=120.0))

    async def scenario():
        device = meter(source=source, time=time)
        async with device, ModbusClient("127.0.0.1", device.port, device.map, policy=FAST) as client:
            first = await client.read_points(["import_energy_kwh", "carbon_kg"])
            time.advance(minutes=30)  # 60 kWh at 581.0 g/kWh
            middle = await client.read_points(["import_energy_kwh", "carbon_kg", "export_energy_kwh"])
            await client.write_point("carbon_factor_g_per_kwh", "300.5")
            time.advance(minutes=15)  # 30 kWh at 300.5 g/kWh
            last = await client.read_points(["import_energy_kwh", "carbon_kg"])
            return first, middle, last

    first, middle, last = run(scenario())
    assert first["import_energy_kwh"].value == 0 and first["carbon_kg"].value == 0
    assert str(middle["import_energy_kwh"].value) == "60.00" and middle["export_energy_kwh"].value == 0
    assert str(middle["carbon_kg"].value) == "34.860"  # 60 x 581.0 / 1000
    assert str(last["import_energy_kwh"].value) == "90.00"
    assert str(last["carbon_kg"].value) == "43.875"  # + 30 x 300.5 / 1000


def test_export_counter_runs_on_reverse_power_and_little_endian_words():
    time = ManualTime()
    source = StaticSource(dict(VALUES, p_kw=-8.0))

    async def scenario():
        device = meter("cf-meter-le", source=source, time=time)
        async with device, ModbusClient("127.0.0.1", device.port, device.map, policy=FAST) as client:
            await client.read_points()
            time.advance(hours=2)
            return await client.read_points()

    values = run(scenario())
    assert str(values["export_energy_kwh"].value) == "16.0" and values["import_energy_kwh"].value == 0
    assert str(values["p_kw"].value) == "-8.000" and str(values["u_v"].value) == "220.4"


def test_pymodbus_client_reads_our_meter_and_gets_exception_2_for_an_unmapped_address():
    async def scenario():
        async with meter() as device:
            client = AsyncModbusTcpClient("127.0.0.1", port=device.port, timeout=1, retries=0)
            await client.connect()
            try:
                volts = await client.read_holding_registers(0, count=2, device_id=1)
                energy = await client.read_holding_registers(0x100, count=2, device_id=1)
                missing = await client.read_holding_registers(0x0C, count=2, device_id=1)
                written = await client.write_register(0x210, 6000, device_id=1)
                factor = await client.read_holding_registers(0x210, count=1, device_id=1)
            finally:
                client.close()
            return volts, energy, missing, written, factor

    volts, energy, missing, written, factor = run(scenario())
    as_float = AsyncModbusTcpClient.convert_from_registers(
        volts.registers, AsyncModbusTcpClient.DATATYPE.FLOAT32
    )
    assert round(as_float, 3) == 230.1
    assert energy.registers == [0, 0]
    assert missing.isError() and missing.exception_code == 2
    assert not written.isError() and factor.registers == [6000]


def test_our_client_reads_a_pymodbus_simulated_meter():
    """The reference notes' SimDevice meter: float32 voltage, uint32 energy x100 and carbon kg x1000."""
    document = {
        "model": "vendor-x",
        "points": [
            {"name": "u_a_v", "address": 0, "type": "float32", "unit": "V"},
            {"name": "i_a_a", "address": 6, "type": "float32", "unit": "A"},
            {"name": "import_energy_kwh", "address": 256, "type": "uint32", "scale": "0.01", "unit": "kWh"},
            {"name": "carbon_kg", "address": 512, "type": "uint32", "scale": "0.001", "unit": "kg"},
        ],
    }

    async def scenario():
        device = SimDevice(
            id=1,
            simdata=[
                SimData(0x0000, values=230.1, datatype=SimType.FLOAT32),
                SimData(0x0006, values=4.999, datatype=SimType.FLOAT32),
                SimData(0x0100, values=120642, datatype=SimType.UINT32),
                SimData(0x0200, values=693869, datatype=SimType.UINT32),
            ],
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", 0))
        task = asyncio.create_task(server.serve_forever())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if server.transport is not None:
                break
        port = server.transport.sockets[0].getsockname()[1]
        try:
            async with ModbusClient(
                "127.0.0.1", port, register_map_from_dict(document), policy=FAST
            ) as client:
                return await client.read_points()
        finally:
            await server.shutdown()
            task.cancel()

    values = run(scenario())
    assert {k: str(v.value) for k, v in values.items()} == {
        "u_a_v": "230.1",
        "i_a_a": "4.999",
        "import_energy_kwh": "1206.42",
        "carbon_kg": "693.869",
    }


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        (Faults(delay_s=1.0), DeviceTimeout, "no answer after 2 attempts"),
        (Faults(silent=True), DeviceTimeout, "after 2 attempts"),
        (Faults(garbage=True), DeviceTimeout, "after 2 attempts"),
        (Faults(bad_checksum=True), DeviceTimeout, "after 2 attempts"),
        (Faults(offline=True), DeviceError, "meter-9"),
    ],
)
def test_faults_become_clear_device_errors(faults, error, message):
    async def scenario():
        async with meter(faults=faults) as device:
            client = ModbusClient("127.0.0.1", device.port, device.map, policy=FAST, name="meter-9")
            async with client:
                await client.read_points(["u_a_v"])

    with pytest.raises(error, match=message):
        run(scenario())


def test_a_meter_recovers_after_an_outage():
    async def scenario():
        device = meter()
        async with device, ModbusClient("127.0.0.1", device.port, device.map, policy=FAST) as client:
            device.faults.offline = True
            with pytest.raises(DeviceError):
                await client.read_points(["u_a_v"])
            device.faults.offline = False
            return await client.read_points(["u_a_v"])

    assert str(run(scenario())["u_a_v"].value) == "230.1"


def test_writing_a_read_only_point_or_an_out_of_range_value_is_refused():
    async def scenario():
        async with (
            meter() as device,
            ModbusClient("127.0.0.1", device.port, device.map, policy=FAST) as client,
        ):
            with pytest.raises(DeviceError, match="not writable"):
                await client.write_point("carbon_kg", "1")
            with pytest.raises(DeviceRejected, match="exception 2"):
                await client.read_registers(device.map.points[0].table, 0x0C, 2)

    run(scenario())

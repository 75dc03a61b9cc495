"""The simulated IEC 104 RTU and our asyncio master, over real TCP on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy
from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.iec104_rtu import Iec104Rtu, PointSpec, plant_rtu, points_from_table, substation_rtu
from carbonflow.protocols.iec104 import apci, asdu
from carbonflow.protocols.iec104.apci import IFrame, SFrame, UFrame, UFunction
from carbonflow.protocols.iec104.link import LinkConfig

FAST = RetryPolicy(timeout_s=0.4, retries=1, backoff_s=0.02)
GI_ACT = bytes.fromhex("680E0000000064010600010000000014")  # 104-3
GI_ACTCON = bytes.fromhex("680E0000020064010700010000000014")  # 104-4


class FakeTime:
    """A settable 'true time' for DeviceClock, so counters integrate over a known interval."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def client_for(device, **kwargs) -> Iec104Client:
    kwargs.setdefault("policy", FAST)
    return Iec104Client("127.0.0.1", device.port, name=device.name, **kwargs)


class RawMaster:
    """A hand-driven 104 master on a socket, for frame-level checks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()

    @classmethod
    async def open(cls, port: int) -> RawMaster:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def frames(self, count: int, timeout: float = 1.0) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < count:
            out.extend(apci.split(self.buffer))
            if len(out) >= count:
                break
            self.buffer += await asyncio.wait_for(self.reader.read(4096), timeout)
        return out

    async def nothing_more(self, wait: float = 0.2) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(4096), wait)
        except TimeoutError:
            return True
        self.buffer += data
        return False

    def close(self) -> None:
        self.writer.close()


def test_raw_handshake_and_gi_answer_match_reference_frames():
    async def scenario():
        async with plant_rtu(send_end_of_init=False, cycle_s=30) as rtu:
            master = await RawMaster.open(rtu.port)
            await master.send(apci.encode_u(UFunction.STARTDT_ACT))
            assert await master.frames(1) == [apci.encode_u(UFunction.STARTDT_CON)]
            await master.send(apci.encode_u(UFunction.TESTFR_ACT))
            assert await master.frames(1) == [apci.encode_u(UFunction.TESTFR_CON)]
            await master.send(GI_ACT)
            actcon, data, actterm = await master.frames(3)
            assert actcon == GI_ACTCON
            unit = asdu.decode(apci.decode(data).asdu)
            assert (unit.type_name, unit.cot) == ("M_ME_NC_1", 20)
            assert {obj.ioa: obj.value for obj in unit.objects} == {
                0x4001: Decimal("300.0"),
                0x4002: Decimal("850.0"),
            }
            assert asdu.decode(apci.decode(actterm).asdu).cot == 10
            master.close()

    asyncio.run(scenario())


def test_gi_ci_and_counters_integrate_over_device_time():
    async def scenario():
        fake = FakeTime()
        rtu = plant_rtu(clock=DeviceClock(now_fn=fake), energy_start_kwh="1000", cycle_s=30)
        async with rtu, client_for(rtu) as client:
            points = await client.general_interrogation()
            assert points[0x4001].value == Decimal("300.0") and points[0x4001].cot == 20
            first = await client.counter_interrogation()
            assert first[0x6401].value == Decimal(1000) and first[0x6401].cot == 37
            fake.now += timedelta(hours=1)
            second = await client.counter_interrogation()
            assert second[0x6401].value == Decimal(1000 + 300_000)  # 300 MW for 1 h = 300 000 kWh
            assert second[0x6402].value == Decimal(300 * 850)  # MW x g/kWh = kg per hour

    asyncio.run(scenario())


def test_counter_freeze_then_read_returns_frozen_values_with_next_sequence_number():
    async def scenario():
        fake = FakeTime()
        rtu = plant_rtu(clock=DeviceClock(now_fn=fake), energy_start_kwh="5", cycle_s=30)
        async with rtu, client_for(rtu) as client:
            await client.counter_interrogation()
            assert await client.counter_interrogation(freeze=1) == {}
            fake.now += timedelta(hours=1)
            frozen = await client.counter_interrogation()
            assert frozen[0x6401].value == Decimal(5) and rtu.freeze_sequence == 1
            live = await client.counter_interrogation()
            assert live[0x6401].value == Decimal(300_005)

    asyncio.run(scenario())


def test_clock_sync_sets_the_device_clock():
    async def scenario():
        async with plant_rtu(cycle_s=30) as rtu, client_for(rtu) as client:
            target = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
            confirmed = await client.clock_sync(target)
            assert abs(rtu.clock.now() - target) < timedelta(seconds=5)
            assert confirmed is not None and confirmed.year == 2030 and rtu.clock_syncs == 1

    asyncio.run(scenario())


def test_spontaneous_time_tagged_values_respect_the_deadband():
    async def scenario():
        source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
        async with plant_rtu(source=source, cycle_s=0.02) as rtu, client_for(rtu) as client:
            await client.general_interrogation()
            source.set("p_mw", 300.05)  # inside the 0.1 MW deadband
            source.set("intensity_g_per_kwh", 812.5)
            reading = await asyncio.wait_for(_next_spontaneous(client), 1.0)
            assert (reading.ioa, reading.value, reading.type_id) == (0x4002, Decimal("812.5"), 36)
            assert reading.time_tagged
            source.set("p_mw", 301.25)
            reading = await asyncio.wait_for(_next_spontaneous(client), 1.0)
            assert (reading.ioa, reading.value) == (0x4001, Decimal("301.25"))

    asyncio.run(scenario())


def test_the_background_scan_repeats_a_steady_value_untagged_and_a_change_resets_its_age():
    async def scenario():
        fake = FakeTime()
        source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
        rtu = plant_rtu(source=source, clock=DeviceClock(now_fn=fake), cycle_s=0.02, background_s=60)
        async with rtu, client_for(rtu) as client:
            await client.general_interrogation()  # both points sent at 12:00
            fake.now += timedelta(seconds=30)
            source.set("intensity_g_per_kwh", 812.5)  # sent spontaneously at 12:00:30
            assert (await asyncio.wait_for(_next_spontaneous(client), 1.0)).ioa == 0x4002
            fake.now += timedelta(seconds=40)  # 12:01:10: p_mw unsent for 70 s, the factor for 40 s
            reading = await asyncio.wait_for(_next_with_cause(client, 2), 1.0)
            assert (reading.ioa, reading.value, reading.type_id, reading.time_tagged) == (
                0x4001, Decimal(300), 13, False
            )  # fmt: skip
            assert await _nothing_with_cause(client, 2, 0.2)  # the factor's turn comes at 12:01:30
            fake.now += timedelta(seconds=20)
            assert (await asyncio.wait_for(_next_with_cause(client, 2), 1.0)).ioa == 0x4002

    asyncio.run(scenario())


async def _next_with_cause(client: Iec104Client, cot: int):
    while True:
        reading = await client.readings.get()
        if reading.cot == cot:
            return reading


async def _nothing_with_cause(client: Iec104Client, cot: int, wait_s: float) -> bool:
    try:
        await asyncio.wait_for(_next_with_cause(client, cot), wait_s)
    except TimeoutError:
        return True
    return False


async def _next_spontaneous(client: Iec104Client):
    while True:
        reading = await client.readings.get()
        if reading.cot == 3:
            return reading


def test_large_interrogation_needs_the_window_and_acknowledgements():
    async def scenario():
        points = [PointSpec(0x4001 + i, "M_ME_NC_1", f"q{i}", "MW") for i in range(400)]
        source = StaticSource({f"q{i}": i / 4 for i in range(400)})
        rtu = Iec104Rtu("big", points, source, cycle_s=30)
        async with rtu, client_for(rtu) as client:
            readings = await client.general_interrogation()
            assert len(readings) == 400  # 14 data ASDUs + con + term > k = 12: needs our S-acks (w = 8)
            assert readings[0x4001 + 399].value == Decimal("99.75")

    asyncio.run(scenario())


def test_k_window_holds_frames_until_the_master_acknowledges():
    async def scenario():
        points = [PointSpec(0x4001 + i, "M_ME_NC_1", f"q{i}", "MW") for i in range(100)]
        source = StaticSource({f"q{i}": float(i) for i in range(100)})
        rtu = Iec104Rtu(
            "k2", points, source, link_config=LinkConfig(k=2, w=2), send_end_of_init=False, cycle_s=30
        )
        async with rtu:
            master = await RawMaster.open(rtu.port)
            await master.send(apci.encode_u(UFunction.STARTDT_ACT))
            await master.frames(1)
            await master.send(GI_ACT)
            first = await master.frames(2)
            assert await master.nothing_more()  # actcon + 1 data ASDU, then the window is full
            await master.send(apci.encode_s(2))
            rest = await master.frames(2)
            assert [apci.decode(f).send_seq for f in first + rest] == [0, 1, 2, 3]
            master.close()

    asyncio.run(scenario())


def test_stopdt_ends_spontaneous_transmission():
    async def scenario():
        source = StaticSource({"p_mw": 1.0, "intensity_g_per_kwh": 800.0})
        async with plant_rtu(source=source, send_end_of_init=False, cycle_s=0.02) as rtu:
            master = await RawMaster.open(rtu.port)
            await master.send(apci.encode_u(UFunction.STARTDT_ACT))
            await master.frames(2)  # con + the first spontaneous ASDU
            await master.send(apci.encode_s(1))
            await master.send(apci.encode_u(UFunction.STOPDT_ACT))
            frames = await master.frames(1)
            assert apci.decode(frames[-1]) == UFrame(UFunction.STOPDT_CON)
            source.set("p_mw", 50.0)
            assert await master.nothing_more(0.2)
            master.close()

    asyncio.run(scenario())


def test_unknown_common_address_is_rejected_clearly():
    async def scenario():
        async with plant_rtu(common_address=7, cycle_s=30) as rtu, client_for(rtu) as client:
            with pytest.raises(DeviceRejected, match="unknown common address"):
                await client.general_interrogation()

    asyncio.run(scenario())


def test_unsupported_command_is_mirrored_with_unknown_type():
    async def scenario():
        async with plant_rtu(send_end_of_init=False, cycle_s=30) as rtu:
            master = await RawMaster.open(rtu.port)
            await master.send(apci.encode_u(UFunction.STARTDT_ACT))
            await master.frames(1)
            await master.send(apci.encode_i(0, 0, bytes.fromhex("2D01060001000160000 1".replace(" ", ""))))
            (reply,) = await master.frames(1)
            unit = asdu.decode(apci.decode(reply).asdu)
            assert (unit.type_id, unit.cot, unit.negative) == (45, 44, True)
            master.close()

    asyncio.run(scenario())


def test_substation_preset_serves_branch_flows_and_scaled_voltage():
    async def scenario():
        source = StaticSource({"L1.p_mw": 120.5, "L1.q_mvar": -15.25, "B1.u_kv": 221.37})
        rtu = substation_rtu(source=source, branches=["L1"], buses=["B1"], cycle_s=30)
        async with rtu, client_for(rtu, scales={0x4101: Decimal("0.1")}) as client:
            readings = await client.general_interrogation()
            assert readings[0x4001].value == Decimal("120.5")
            assert readings[0x4002].value == Decimal("-15.25")
            assert readings[0x4101].value == Decimal("221.4") and readings[0x4101].type_id == 11

    asyncio.run(scenario())


def test_unreadable_quantity_is_sent_invalid():
    async def scenario():
        row = {"ioa": "0x4001", "type": "M_ME_NC_1", "quantity": "missing", "unit": "MW"}
        points = points_from_table([row])
        async with Iec104Rtu("iv", points, StaticSource(), cycle_s=30) as rtu, client_for(rtu) as client:
            reading = (await client.general_interrogation())[0x4001]
            assert "IV" in reading.quality and not reading.valid

    asyncio.run(scenario())


# -- faults -----------------------------------------------------------------------------------------
def test_offline_device_gives_a_clear_device_error():
    async def scenario():
        async with plant_rtu(cycle_s=30) as rtu:
            rtu.faults.offline = True
            with pytest.raises(DeviceTimeout, match="connect"):
                await client_for(rtu).connect()

    asyncio.run(scenario())


def test_slow_device_times_out_and_is_retried():
    async def scenario():
        async with plant_rtu(cycle_s=30) as rtu, client_for(rtu) as client:
            rtu.faults.delay_s = 1.0
            accepted = rtu.connections_accepted
            with pytest.raises(DeviceTimeout, match=r"general interrogation.*no answer after 2 attempts"):
                await client.general_interrogation()
            assert rtu.connections_accepted > accepted  # the retry reconnected to the device
            rtu.faults.delay_s = 0.0
            assert 0x4001 in await client.general_interrogation()  # and the client recovers

    asyncio.run(scenario())


@pytest.mark.parametrize("fault", ["garbage", "bad_checksum"])
def test_broken_frames_give_a_clear_device_error(fault):
    async def scenario():
        async with plant_rtu(cycle_s=30) as rtu, client_for(rtu) as client:
            setattr(rtu.faults, fault, True)
            with pytest.raises(DeviceError, match="general interrogation"):
                await client.general_interrogation()
            assert client.last_error

    asyncio.run(scenario())


def test_t1_expiry_closes_the_link_and_the_client_reconnects():
    async def scenario():
        config = LinkConfig(t1_s=0.2, t2_s=0.05, t3_s=0.1)
        async with plant_rtu(cycle_s=30) as rtu:
            client = client_for(rtu, link_config=config, policy=RetryPolicy(0.4, 20, 0.05))
            await client.connect()
            rtu.faults.silent = True  # TESTFR after t3 gets no confirmation within t1
            await _wait_for(lambda: client.last_error and "t1" in client.last_error)
            rtu.faults.silent = False
            await _wait_for(lambda: client.reconnects >= 1 and client.connected)
            assert 0x4001 in await client.general_interrogation()
            await client.close()

    asyncio.run(scenario())


async def _wait_for(condition, limit: float = 3.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), limit)


def test_sequence_error_from_master_closes_the_outstation_link():
    async def scenario():
        async with plant_rtu(send_end_of_init=False, cycle_s=30) as rtu:
            master = await RawMaster.open(rtu.port)
            await master.send(apci.encode_u(UFunction.STARTDT_ACT))
            await master.frames(1)
            await master.send(apci.encode(IFrame(5, 0, asdu.encode(asdu.command(100, 6, 1, qualifier=20)))))
            assert await asyncio.wait_for(master.reader.read(4096), 1.0) == b""  # closed
            assert apci.decode(apci.encode_s(0)) == SFrame(0)

    asyncio.run(scenario())

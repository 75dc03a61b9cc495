"""Client <-> simulated DL/T 645 meter over real TCP on 127.0.0.1, including fault injection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.protocols import dlt645

ADDRESS = "000102030425"
FAST = RetryPolicy(timeout_s=0.3, retries=1, backoff_s=0.01)
START = datetime(2024, 1, 1, 4, 0, tzinfo=UTC)  # 12:00 Beijing time: tariff 2 in the default schedule


class FakeTime:
    """The meter's true time, moved by the test (energy integrates over it)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_meter(time: FakeTime | None = None, **kwargs) -> Dlt645Meter:
    source = kwargs.pop("source", None) or StaticSource(
        {"p_kw": 12.5, "q_kvar": 3.0, "u_a_v": 230.1, "u_b_v": 229.8, "u_c_v": 231.0}
    )
    clock = DeviceClock(now_fn=time or FakeTime())
    return Dlt645Meter("m1", kwargs.pop("address", ADDRESS), source, clock=clock, **kwargs)


async def serve(meter: Dlt645Meter, policy: RetryPolicy = FAST) -> Dlt645Client:
    port = await meter.start()
    return Dlt645Client("127.0.0.1", port, policy=policy, name="meter-1")


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


# -- reading ---------------------------------------------------------------------------------------
def test_energy_registers_integrate_power_over_the_meters_clock() -> None:
    async def scenario() -> None:
        time = FakeTime()
        meter = make_meter(time)
        async with meter, await serve(meter) as client:
            assert await client.read(ADDRESS, "00010000") == Decimal("0.00")
            time.advance(hours=2)
            assert await client.read(ADDRESS, "00010000") == Decimal("25.00")
            block = await client.read(ADDRESS, "0001FF00")
            assert block == [
                Decimal("25.00"),
                Decimal("0.00"),
                Decimal("25.00"),
                Decimal("0.00"),
                Decimal("0.00"),
            ]
            assert await client.read(ADDRESS, "00020000") == Decimal("0.00")
            assert await client.read(ADDRESS, "00000000") == Decimal("25.00")  # forward + reverse
            assert await client.read(ADDRESS, "00030000") == Decimal("6.00")  # reactive import

    run(scenario)


def test_export_counts_reverse_energy_and_gives_negative_current_power_and_power_factor() -> None:
    async def scenario() -> None:
        time = FakeTime()
        source = StaticSource({"p_kw": -6.0, "q_kvar": 0.0, "u_v": 220.0})
        meter = make_meter(time, source=source)
        async with meter, await serve(meter) as client:
            time.advance(minutes=30)
            values = await client.read_many(
                ADDRESS, ["00010000", "00020000", "02030000", "02020100", "02060000"]
            )
            assert values == {
                "00010000": Decimal("0.00"),
                "00020000": Decimal("3.00"),
                "02030000": Decimal("-6.0000"),
                "02020100": Decimal("-9.091"),  # 2 kW per phase / 220 V
                "02060000": Decimal("-1.000"),
            }

    run(scenario)


def test_instantaneous_values_dates_and_address() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter, await serve(meter) as client:
            assert await client.read_address() == ADDRESS
            assert await client.read(ADDRESS, "0201FF00") == [
                Decimal("230.1"),
                Decimal("229.8"),
                Decimal("231.0"),
            ]
            assert await client.read(ADDRESS, "02030000") == Decimal("12.5000")
            assert await client.read(ADDRESS, "02040000") == Decimal("3.0000")
            assert await client.read(ADDRESS, "02050000") == Decimal("12.8550")
            assert await client.read(ADDRESS, "02060000") == Decimal("0.972")
            assert await client.read(ADDRESS, "02800002") == Decimal("50.00")
            assert await client.read(ADDRESS, "04000101") == "2024-01-01"  # Beijing local date
            assert await client.read(ADDRESS, "04000102") == "12:00:00"
            assert await client.read(ADDRESS, "04000401") == ADDRESS
            assert await client.read("AAAAAAAAAAAA", "02010200") == Decimal("229.8")  # wildcard address

    run(scenario)


def test_single_phase_meter_reports_absent_phases() -> None:
    async def scenario() -> None:
        meter = make_meter(phases=1, source=StaticSource({"p_kw": 2.2, "u_v": 220.0}))
        async with meter, await serve(meter) as client:
            assert await client.read(ADDRESS, "0201FF00") == [Decimal("220.0"), None, None]
            assert await client.read(ADDRESS, "02020100") == Decimal("10.000")
            with pytest.raises(DeviceRejected, match=r"read 02010200 \(phase B voltage\).*no requested data"):
                await client.read(ADDRESS, "02010200")
            with pytest.raises(DeviceRejected, match="no requested data"):
                await client.read(ADDRESS, "00030000")  # no q_kvar in the source

    run(scenario)


def test_unknown_di_gets_an_error_reply_and_read_many_can_skip_it() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter, await serve(meter) as client:
            with pytest.raises(DeviceRejected, match=r"meter-1: read 00900200 \(remaining money\) at meter "
                               r"000102030425: meter answered error 02 \(no requested data\)"):  # fmt: skip
                await client.read(ADDRESS, "00900200")
            values = await client.read_many(ADDRESS, ["00900200", "02800002"], skip_rejected=True)
            assert values == {"02800002": Decimal("50.00")}
            with pytest.raises(DeviceError, match="not in the client's DI table"):
                await client.read(ADDRESS, "0E0E0E0E")
            assert await client.read_raw(ADDRESS, "04000409") == bytes.fromhex("001200")

    run(scenario)


def test_long_reply_comes_in_follow_up_frames_and_is_joined() -> None:
    async def scenario() -> None:
        time = FakeTime()
        meter = make_meter(time, max_payload=8, tariffs=4)
        async with meter, await serve(meter) as client:
            time.advance(hours=1)
            block = await client.read(ADDRESS, "0001FF00")
            assert block == [
                Decimal("12.50"),
                Decimal("0.00"),
                Decimal("12.50"),
                Decimal("0.00"),
                Decimal("0.00"),
            ]
            assert meter.requests_served == 3  # 11H, then 12H seq 1 and seq 2

    run(scenario)


# -- writing, time sync, freeze, carbon --------------------------------------------------------------
def test_carbon_factor_write_and_carbon_registers() -> None:
    async def scenario() -> None:
        time = FakeTime()
        meter = make_meter(time, carbon_factor="0.5000")
        async with meter, await serve(meter) as client:
            time.advance(hours=1)  # 12.5 kWh at 0.5 kg/kWh
            await client.write(ADDRESS, "F0030000", Decimal("0.8000"), operator="12345678")
            assert await client.read(ADDRESS, "F0030000") == Decimal("0.8000")
            assert meter.last_operator == "12345678"
            time.advance(hours=1)  # 12.5 kWh at 0.8 kg/kWh
            assert await client.read(ADDRESS, "F0010000") == Decimal("16.25")
            assert await client.read(ADDRESS, "F0040000") == Decimal("10.0000")  # kgCO2/h now
            with pytest.raises(DeviceRejected, match="unauthorised"):
                await client.write(ADDRESS, "F0030000", "0.1", password="02999999")
            with pytest.raises(DeviceRejected, match="unauthorised"):
                await client.write(ADDRESS, "02800002", "50.00")  # read-only DI
            with pytest.raises(DeviceError, match="more decimals"):
                await client.write(ADDRESS, "F0030000", "0.12345")
            assert await client.read(ADDRESS, "F0030000") == Decimal("0.8000")

    run(scenario)


def test_broadcast_time_sync_and_date_write_set_the_meter_clock() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter, await serve(meter) as client:
            await client.time_sync(datetime(2025, 6, 30, 23, 59, 50))
            await client.read(ADDRESS, "02800002")  # the broadcast has no reply: wait for a later exchange
            assert await client.read(ADDRESS, "04000101") == "2025-06-30"
            assert await client.read(ADDRESS, "04000102") == "23:59:50"
            await client.write(ADDRESS, "04000101", "2026-01-02")
            assert await client.read(ADDRESS, "04000101") == "2026-01-02"
            assert await client.read_raw(ADDRESS, "04000101") == bytes.fromhex("05 02 01 26")  # Friday

    run(scenario)


def test_freeze_now_records_the_energy_registers() -> None:
    async def scenario() -> None:
        time = FakeTime()
        meter = make_meter(time)
        async with meter, await serve(meter) as client:
            time.advance(hours=1)
            await client.freeze(ADDRESS)
            time.advance(hours=1)
            await client.freeze()  # broadcast: no reply
            await client.read(ADDRESS, "02800002")
            assert await client.read(ADDRESS, "05010001") == "2024-01-01 14:00"  # instant freeze
            assert (await client.read(ADDRESS, "05010101"))[0] == Decimal("25.00")
            assert (await client.read(ADDRESS, "05010102"))[0] == Decimal("12.50")
            with pytest.raises(DeviceRejected, match="no requested data"):
                await client.read(ADDRESS, "05010103")
            with pytest.raises(DeviceRejected, match="no requested data"):
                await client.read(ADDRESS, "05040001")  # no hourly freeze configured
            await client.freeze(ADDRESS, "99990030")
            assert meter.freeze_schedule == ["99990030"]

    run(scenario)


# -- link behaviour and faults ---------------------------------------------------------------------
def test_another_address_gets_no_answer() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter, await serve(meter) as client:
            with pytest.raises(
                DeviceTimeout, match=r"read 00010000 .* at meter 000102030426: no answer after 2"
            ):
                await client.read("000102030426", "00010000")

    run(scenario)


class NoisyMeter(Dlt645Meter):
    """A serial server that also delivers noise, an echo of the request and another meter's reply."""

    async def handle(self, frame, connection):
        reply = await super().handle(frame, connection)
        if reply is None:
            return None
        other = dlt645.read_reply("999999999998", "00010000", bytes(4))
        return [b"\x00\x68\x12\xfe", frame, other, b"\xfe\xfe\xfe\xfe" + reply[:5], reply[5:]]


def test_client_skips_preambles_echoes_and_stray_bytes() -> None:
    async def scenario() -> None:
        meter = NoisyMeter("noisy", ADDRESS, StaticSource({"p_kw": 1.0, "u_v": 220.0}), reply_preamble=2)
        async with meter, await serve(meter) as client:
            assert await client.read(ADDRESS, "02010100") == Decimal("220.0")
            assert await client.read(ADDRESS, "02010300") == Decimal("220.0")

    run(scenario)


def test_offline_meter_raises_device_timeout_naming_the_request() -> None:
    async def scenario() -> None:
        meter = make_meter()
        meter.faults.offline = True
        async with meter, await serve(meter) as client:
            with pytest.raises(
                DeviceTimeout,
                match=r"meter-1: read 00010000 .*(connection closed|Connection reset).*after 2 attempts",
            ):
                await client.read(ADDRESS, "00010000")

    run(scenario)


def test_slow_answer_times_out_then_the_retry_succeeds_on_a_new_connection() -> None:
    async def scenario() -> None:
        meter = make_meter()
        meter.faults.delay_s = 2.0
        async with meter, await serve(meter, RetryPolicy(timeout_s=0.3, retries=2, backoff_s=0.01)) as client:

            async def heal_after_first_request() -> None:
                while meter.requests_served == 0:
                    await asyncio.sleep(0.005)
                meter.faults.delay_s = 0.0

            healer = asyncio.create_task(heal_after_first_request())
            assert await client.read(ADDRESS, "02800002") == Decimal("50.00")
            await healer
            assert meter.requests_served == 2

    run(scenario)


def test_permanent_delay_garbage_and_bad_checksum_end_in_clear_errors() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter, await serve(meter) as client:
            meter.faults.delay_s = 1.0
            with pytest.raises(DeviceTimeout, match="no answer after 2 attempts"):
                await client.read(ADDRESS, "02800002")
            meter.faults.delay_s = 0.0
            meter.faults.garbage = True
            with pytest.raises(DeviceTimeout, match=r"read 02800002 \(grid frequency\)"):
                await client.read(ADDRESS, "02800002")
            meter.faults.garbage = False
            meter.faults.bad_checksum = True
            with pytest.raises(DeviceTimeout, match=r"bad checksum in frame 68 25 04 03 02 01 00 68 91"):
                await client.read(ADDRESS, "02800002")
            meter.faults.bad_checksum = False
            assert await client.read(ADDRESS, "02800002") == Decimal("50.00")  # and it recovers

    run(scenario)


def test_meter_ignores_broken_frames_and_refuses_unsupported_functions() -> None:
    async def scenario() -> None:
        meter = make_meter()
        async with meter:
            reader, writer = await asyncio.open_connection("127.0.0.1", meter.port)
            max_demand_reset = dlt645.encode_frame(ADDRESS, 0x19, bytes(8))
            writer.write(
                b"\x11\x22" + dlt645.read_request(ADDRESS, "02800002")[:-2] + b"\x00\x16" + max_demand_reset
            )
            await writer.drain()
            buffer = bytearray()
            while (raw := dlt645.take_frame(buffer)) is None:
                buffer.extend(await asyncio.wait_for(reader.read(4096), 2))
            document = dlt645.describe(raw)
            assert document["control"] == "D9" and document["error"]["flags"] == ["other error"]
            writer.close()

    run(scenario)


def test_corrupt_checksum_breaks_only_the_cs_byte() -> None:
    meter = make_meter()
    frame = dlt645.read_reply(ADDRESS, "02800002", bytes.fromhex("0050"))
    broken = meter.corrupt_checksum(frame)
    assert broken[-1] == 0x16 and broken[:-2] == frame[:-2] and broken[-2] != frame[-2]
    with pytest.raises(dlt645.ProtocolError, match="bad checksum"):
        dlt645.parse_frame(broken)

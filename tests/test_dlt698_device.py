"""Simulated DL/T 698.45 (electric-carbon) meter <-> our asyncio client over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy
from carbonflow.devices.base import Counter, DeviceClock, StaticSource
from carbonflow.devices.dlt698_meter import CHINA_TIME, Dlt698Meter, MeterModel
from carbonflow.protocols.dlt698.apdu import LinkRequest, LinkResponse
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.frame import decode_frame
from carbonflow.protocols.dlt698.objects import CarbonItems, ObjectItem
from carbonflow.protocols.dlt698.requests import date_time
from carbonflow.protocols.dlt698.types import Data, DataType, DateTimeS, Oad, Ti, TimeUnit

ADDRESS = "012503200001"
FAST = RetryPolicy(timeout_s=0.3, retries=1, backoff_s=0.01)
START = datetime(2026, 10, 7, 0, 0, tzinfo=CHINA_TIME).astimezone(UTC)


class FakeTime:
    """True time the test moves by hand, so energy and carbon are deterministic."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_meter(p_kw: float = 10.0, model: MeterModel | None = None, **kwargs) -> tuple[Dlt698Meter, FakeTime]:
    time = FakeTime()
    source = StaticSource({"p_kw": p_kw, "u_v": 224.1, "f_hz": 50.02})
    clock = DeviceClock(now_fn=time, _epoch=time.now)
    return Dlt698Meter("m1", ADDRESS, source, model=model, clock=clock, **kwargs), time


def run(scenario, meter: Dlt698Meter, policy: RetryPolicy = FAST, **client_kwargs):
    async def main():
        async with (
            meter,
            Dlt698Client("127.0.0.1", meter.port, ADDRESS, policy=policy, **client_kwargs) as client,
        ):
            return await scenario(client)

    return asyncio.run(main())


def test_reads_energy_voltage_current_power_frequency_and_power_factor():
    meter, time = make_meter(p_kw=12.5)

    async def scenario(client):
        await client.get("00100200")  # first read starts the registers
        time.advance(hours=2)
        readings = await client.get_many(
            ["00100200", "00100400", "20000200", "20010200", "20040200", "200F0200"]
        )
        pf = await client.get("200A0200")
        return readings, pf

    (energy, extended, voltage, current, power, frequency), pf = run(scenario, meter)
    assert energy.value == [Decimal("25.00"), Decimal("25.00"), 0, 0, 0] and energy.unit == "kWh"
    assert extended.text.startswith("25.0000") and energy.text.startswith("25.00, 25.00, 0.00")
    assert voltage.value == [Decimal("224.1")] * 3 and voltage.unit == "V"
    assert current.value[0] == Decimal("18.593") and current.unit == "A"
    assert power.value[0] == Decimal("12500.0") and power.unit == "W"
    assert frequency.value == Decimal("50.02") and frequency.unit == "Hz"
    assert pf.value[0] == Decimal("1.000")


def test_negative_power_counts_as_reverse_energy():
    meter, time = make_meter(p_kw=-4.0)

    async def scenario(client):
        await client.get("00200200")
        time.advance(minutes=30)
        return await client.get_many(["00100200", "00200200"])

    forward, reverse = run(scenario, meter)
    assert forward.value[0] == Decimal("0.00") and reverse.value[0] == Decimal("2.00")


def test_element_index_and_scaler_unit_attribute():
    meter, _ = make_meter()

    async def scenario(client):
        return await client.get("20000201"), await client.read_scaler_unit("00100200")

    voltage_a, scaler_unit = run(scenario, meter)
    assert voltage_a.value == Decimal("224.1")
    assert scaler_unit == (-2, "kWh")


def test_time_sync_sets_the_meter_clock_and_reads_back():
    meter, _ = make_meter()
    target = datetime(2026, 10, 7, 14, 16, 26, tzinfo=CHINA_TIME)

    async def scenario(client):
        await client.sync_time(target)
        return await client.read_time()

    assert run(scenario, meter) == target
    assert meter.local_time() == datetime(2026, 10, 7, 14, 16, 26)


def test_broadcast_time_action():
    meter, _ = make_meter()

    async def scenario(client):
        await client.action("40007F00", Data(DataType.DATE_TIME_S, DateTimeS(2027, 1, 1, 0, 0, 0)))
        return await client.read_time()

    assert run(scenario, meter).year == 2027


def test_carbon_factor_download_reads_back_and_bad_downloads_are_refused():
    meter, _ = make_meter()

    async def scenario(client):
        schedule = await client.set_carbon_factor(
            datetime(2026, 10, 7), Ti(TimeUnit.MINUTE, 15), ["0.5366", "0.58"]
        )
        with pytest.raises(DeviceRejected, match=r"SET 41200200 refused: DAR 7 \(type mismatch\)"):
            await client.set("41200200", Data(DataType.LONG_UNSIGNED, 5366))
        month = Data.structure(
            [
                Data(DataType.DATE_TIME_S, DateTimeS(2026, 10, 1, 0, 0, 0)),
                Data(DataType.TI, Ti(TimeUnit.MONTH, 1)),
                Data.array([Data(DataType.LONG_UNSIGNED, 5366)]),
            ]
        )
        with pytest.raises(DeviceRejected, match=r"DAR 8 \(out of range\)"):
            await client.set("41200200", month)
        with pytest.raises(DeviceError, match="resolution"):
            await client.set_carbon_factor(datetime(2026, 10, 7), Ti(TimeUnit.DAY, 1), ["0.53661"])
        return schedule, await client.read_carbon_factor()

    written, read_back = run(scenario, meter)
    assert written == read_back
    assert read_back.factors == (Decimal("0.5366"), Decimal("0.5800")) and read_back.interval == Ti(1, 15)


def test_carbon_register_equals_the_platform_sum_of_energy_times_factor():
    """§8.2 item 8: the meter's 2080 register = Σ(ΔkWh per factor interval × factor) read by the platform."""
    meter, time = make_meter(p_kw=37.3)
    factors = ["0.5366", "0.6012", "0.4988", "0.7001"]

    async def scenario(client):
        await client.set_carbon_factor(datetime(2026, 10, 7), Ti(TimeUnit.MINUTE, 15), factors)
        carbon_before = (await client.read_carbon())["forward"].value
        energies = [(await client.get("00100401")).value]
        for step in range(5):  # four factor intervals and 15 minutes past the schedule (last factor holds)
            meter.source.set("p_kw", 37.3 + 11 * step)
            time.advance(minutes=15)
            energies.append((await client.get("00100401")).value)
        return carbon_before, energies, (await client.read_carbon())["forward"].value

    before, energies, after = run(scenario, meter)
    in_force = [Decimal(f) for f in factors] + [Decimal(factors[-1])]
    platform = sum((energies[k + 1] - energies[k]) * in_force[k] for k in range(5))
    assert before == Decimal("0.00") and after > Decimal("40")
    assert after <= platform < after + Decimal("0.01")  # the meter floors to its resolution
    assert meter.forward_carbon.exact == platform


def test_carbon_objects_are_configurable_per_meter_model():
    carbon = CarbonItems(
        forward=ObjectItem(0x2081, 2, "forward carbon", -3, "kgCO2", DataType.DOUBLE_LONG_UNSIGNED),
        reverse=ObjectItem(0x2091, 2, "reverse carbon", -3, "kgCO2", DataType.DOUBLE_LONG_UNSIGNED),
        factor=ObjectItem(0x4121, 2, "carbon factor", 0, "gCO2/kWh", DataType.LONG_UNSIGNED),
    )
    meter, time = make_meter(p_kw=10.0, model=MeterModel(carbon=carbon))

    async def scenario(client):
        await client.set_carbon_factor(datetime(2026, 10, 6), Ti(TimeUnit.DAY, 1), ["537"])
        time.advance(hours=1)
        return (await client.read_carbon())["forward"], await client.get("20810300")

    forward, scaler_unit = run(scenario, meter, carbon=carbon)
    assert (forward.value, forward.unit, forward.name) == (Decimal("5.370"), "kgCO2", "forward carbon")
    assert scaler_unit.data.value.scaler == -3

    async def default_client(client):
        with pytest.raises(DeviceRejected, match=r"GET 20800200 refused: DAR 6 \(object does not exist\)"):
            await client.read_carbon()

    run(default_client, make_meter(model=MeterModel(carbon=carbon))[0])


def test_daily_frozen_record_selector_9():
    meter, time = make_meter(p_kw=8.0)

    async def scenario(client):
        await client.get("00100200")
        time.advance(hours=1)
        meter.freeze()
        time.advance(hours=1)
        meter.freeze()
        latest = await client.get_record("50040200", ["20210200", "00100200"], last=1)
        previous = await client.get_record("50040200", ["20210200", "00100200"], last=2)
        missing = await client.get_record("50040200", ["00100200"], last=9)
        return latest, previous, missing

    latest, previous, missing = run(scenario, meter)
    assert latest[0]["00100200"][0] == Decimal("16.00") and latest[0]["20210200"] == "2026-10-07 02:00:00"
    assert previous[0]["00100200"][0] == Decimal("8.00")
    assert missing == []


def test_meter_dialling_in_logs_in_and_the_client_answers():
    meter, _ = make_meter(login_on_connect=True)

    async def scenario(client):
        reading = await client.get("20000200")
        await asyncio.sleep(0.05)  # let the meter process the LINK-Response that came before the GET
        return reading, client.reports

    reading, reports = run(scenario, meter)
    assert reading.value[0] == Decimal("224.1")
    assert isinstance(reports[0], LinkRequest) and reports[0].kind == 0
    assert len(meter.link_responses) == 1 and meter.link_responses[0].request_time == reports[0].time


def test_meter_answers_a_link_request_and_ignores_other_addresses():
    meter, _ = make_meter()

    async def main():
        async with meter:
            reader, writer = await asyncio.open_connection("127.0.0.1", meter.port)
            request = meter.link_request(1)  # a heartbeat, as if from a peer
            writer.write(request)
            reply = decode_frame(await asyncio.wait_for(reader.read(256), 1))
            writer.close()
            return reply

    reply = asyncio.run(main())
    apdu = decode_apdu(reply.apdu)
    assert isinstance(apdu, LinkResponse) and apdu.result & 0x80

    other, _ = make_meter()
    other.address = type(other.address)("999999999999")

    async def unanswered(client):
        with pytest.raises(DeviceTimeout, match="no answer after 2 attempts"):
            await client.get("00100200")

    run(unanswered, other)


# -- faults ---------------------------------------------------------------------------------------------
def test_offline_meter_is_a_device_timeout():
    meter, _ = make_meter()
    meter.faults.offline = True

    async def scenario(client):
        with pytest.raises(DeviceTimeout, match=f"{ADDRESS}.*GET 00100200"):
            await client.get("00100200")

    run(scenario, meter)


def test_delay_beyond_the_timeout_then_retry_succeeds():
    meter, _ = make_meter()
    original = meter.handle
    calls = []

    async def first_answer_late(frame, connection):
        calls.append(frame)
        meter.faults.delay_s = 0.5 if len(calls) == 1 else 0.0
        return await original(frame, connection)

    meter.handle = first_answer_late

    async def scenario(client):
        return await client.get("20000200")

    reading = run(scenario, meter, RetryPolicy(timeout_s=0.2, retries=2, backoff_s=0.01))
    assert reading.value[0] == Decimal("224.1") and len(calls) == 2


def test_silent_and_garbage_meters_time_out_with_a_clear_message():
    for fault in ("silent", "garbage"):
        meter, _ = make_meter()
        setattr(meter.faults, fault, True)

        async def scenario(client):
            with pytest.raises(DeviceTimeout, match=r"GET 20000200: no answer after 2 attempts"):
                await client.get("20000200")

        run(scenario, meter)


def test_bad_checksum_reply_is_a_device_error_naming_the_fcs():
    meter, _ = make_meter()
    meter.faults.bad_checksum = True

    async def scenario(client):
        with pytest.raises(DeviceTimeout, match="bad FCS"):
            await client.get("20000200")

    run(scenario, meter)
    assert meter.corrupt_checksum(b"\x68\x01\x02\x03\x16")[-1] == 0x16


def test_unknown_object_is_rejected_with_the_oad_and_dar():
    meter, _ = make_meter()

    async def scenario(client):
        with pytest.raises(DeviceRejected, match=r"GET 99990200 refused: DAR 6"):
            await client.get("99990200")
        with pytest.raises(DeviceRejected, match=r"SET 20000200 refused: DAR 3 \(read/write refused\)"):
            await client.set("20000200", Data(DataType.LONG_UNSIGNED, 1))

    run(scenario, meter)


def test_link_request_carries_the_meter_clock():
    meter, _ = make_meter()
    apdu = decode_apdu(decode_frame(meter.link_request(0)).apdu)
    assert apdu.time == date_time(datetime(2026, 10, 7, 0, 0))
    assert decode_frame(meter.link_request(0)).control.to_byte() == 0x81
    assert Oad.parse("40000200") == Oad(0x4000, 2, 0)


def test_a_value_its_data_type_cannot_hold_is_refused_out_of_range_and_the_link_stays_up():
    meter, _ = make_meter(p_kw=250_000.0)  # 250 MW: above double-long in 0.1 W

    async def scenario(client):
        with pytest.raises(DeviceRejected, match=r"DAR 8 \(out of range\)"):
            await client.get("20040200")
        return await client.get("00100200")  # the same link still answers

    assert run(scenario, meter).value is not None


def test_bound_energy_registers_restart_the_carbon_registers_from_now():
    meter, time = make_meter(p_kw=10.0, model=MeterModel(initial_factor=Decimal("0.5")))
    forward = Counter(lambda t: 0.0, "100", meter.forward_energy.resolution)
    meter.bind_counters({"energy_forward_kwh": forward})
    assert meter.forward_energy is forward and meter.counter_registers()["energy_forward_kwh"] is forward
    time.advance(hours=1)
    forward.add(Decimal(4))
    meter.advance()
    assert meter.forward_carbon.value() == Decimal("2.00")  # 4 kWh x 0.5 kg/kWh, not the 100 before
    with pytest.raises(KeyError, match="no counter"):
        meter.bind_counters({"reactive_kvarh": forward})

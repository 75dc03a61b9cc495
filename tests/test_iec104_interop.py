"""Interoperation with the independent `c104` package (lib60870-C; GPLv3, a test-only peer).

Our master against a c104 server, and a c104 client against our simulated RTU, over 127.0.0.1.
c104 runs its own threads; its blocking calls go through ``asyncio.to_thread`` so our loop keeps serving.
"""

# no "from __future__ import annotations": c104 checks callback annotations as real types

import asyncio
import datetime as dt
import socket
import time
from decimal import Decimal

import pytest

from carbonflow.collector.clients.errors import RetryPolicy
from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.devices.base import StaticSource
from carbonflow.devices.iec104_rtu import plant_rtu
from carbonflow.protocols.iec104 import apci, build_request, describe
from carbonflow.protocols.iec104.link import LinkConfig

c104 = pytest.importorskip("c104")

FAST = RetryPolicy(timeout_s=1.0, retries=1, backoff_s=0.05)
QUICK_LINK = LinkConfig(t1_s=0.5, t2_s=0.05, t3_s=0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def c104_server():
    """A c104 RTU like protocols.md §3.2: float 123.5 at IOA 16385, counter 1 234 567 at IOA 25601."""
    port = free_port()
    server = c104.Server(ip="127.0.0.1", port=port)
    clock_syncs: list[dt.datetime] = []

    def on_clock_sync(server: c104.Server, ip: str, date_time: dt.datetime) -> c104.ResponseState:
        clock_syncs.append(date_time)
        return c104.ResponseState.SUCCESS

    server.on_clock_sync(callable=on_clock_sync)
    station = server.add_station(common_address=1)
    float_point = station.add_point(io_address=16385, type=c104.Type.M_ME_NC_1)
    float_point.value = 123.5
    counter = station.add_point(io_address=25601, type=c104.Type.M_IT_NA_1)
    counter.info = c104.BinaryCounterInfo(counter=1234567, quality=c104.BinaryCounterQuality())
    server.start()
    wait_until(lambda: server.is_running)
    yield port, float_point, clock_syncs
    server.stop()


def test_our_master_reads_floats_and_counters_from_a_c104_server(c104_server):
    port, float_point, clock_syncs = c104_server

    async def scenario():
        client = Iec104Client("127.0.0.1", port, name="c104", policy=FAST, link_config=QUICK_LINK)
        async with client:
            points = await client.general_interrogation()
            assert points[16385].value == Decimal("123.5") and points[16385].cot == 20
            counters = await client.counter_interrogation()
            assert counters[25601].value == Decimal(1234567) and counters[25601].cot == 37
            await client.clock_sync(dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC))
            await client.test_frame()
            await asyncio.sleep(0.4)  # idle beyond t3 = 0.1 s: our TESTFR must be confirmed within t1
            assert client.connected and client.reconnects == 0
            float_point.value = 12.5
            assert await asyncio.to_thread(float_point.transmit, cause=c104.Cot.SPONTANEOUS)
            while (reading := await asyncio.wait_for(client.readings.get(), 2.0)).cot != 3:
                pass
            assert (reading.ioa, reading.value) == (16385, Decimal("12.5"))

    asyncio.run(scenario())
    assert [t.year for t in clock_syncs] == [2026]


def test_c104_client_reads_our_plant_rtu():
    async def scenario():
        source = StaticSource({"p_mw": 300.0, "intensity_g_per_kwh": 850.0})
        rtu = plant_rtu(
            source=source,
            energy_start_kwh="1234567",
            measured_type="M_ME_TF_1",
            counter_type="M_IT_TB_1",
            cycle_s=0.05,
            link_config=QUICK_LINK,
        )
        async with rtu:
            client = c104.Client(tick_rate_ms=50, command_timeout_ms=1000)
            connection = client.add_connection(ip="127.0.0.1", port=rtu.port, init=c104.Init.NONE)
            received: list[bytes] = []
            sent: list[bytes] = []

            def on_receive_raw(connection: c104.Connection, data: bytes) -> None:
                received.append(bytes(data))

            def on_send_raw(connection: c104.Connection, data: bytes) -> None:
                sent.append(bytes(data))

            connection.on_receive_raw(callable=on_receive_raw)
            connection.on_send_raw(callable=on_send_raw)
            station = connection.add_station(common_address=1)
            # c104 (like lib60870) keeps one type per point, so the RTU sends time tags in GI/CI as well
            output = station.add_point(io_address=0x4001, type=c104.Type.M_ME_TF_1)
            factor = station.add_point(io_address=0x4002, type=c104.Type.M_ME_TF_1)
            energy = station.add_point(io_address=0x6401, type=c104.Type.M_IT_TB_1)
            client.start()
            try:
                await asyncio.to_thread(wait_until, lambda: connection.is_connected)
                assert await asyncio.to_thread(connection.unmute)  # STARTDT act -> con
                assert await asyncio.to_thread(connection.interrogation, common_address=1)
                await asyncio.to_thread(wait_until, lambda: (output.value, factor.value) == (300.0, 850.0))
                assert await asyncio.to_thread(connection.counter_interrogation, common_address=1)
                await asyncio.to_thread(wait_until, lambda: energy.value == 1234567)
                assert await asyncio.to_thread(connection.clock_sync, common_address=1)
                assert rtu.clock_syncs == 1
                source.set("p_mw", 280.0)  # spontaneous M_ME_TF_1 with a time tag
                await asyncio.to_thread(wait_until, lambda: output.value == 280.0)
                assert output.info.recorded_at is not None
                await asyncio.sleep(0.4)  # our RTU tests the idle link (t3 = 0.1 s); c104 must confirm
                assert connection.is_connected
            finally:
                await asyncio.to_thread(client.stop)
            from_rtu = [describe(frame).get("function") for frame in received]
            from_c104 = [describe(frame).get("function") for frame in sent]
            assert "STARTDT con" in from_rtu and "TESTFR act" in from_rtu  # our t3 test frames ...
            assert "STARTDT act" in from_c104 and "TESTFR con" in from_c104  # ... confirmed by c104

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "frame",
    [
        "68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14",
        "68 12 0A 00 06 00 0D 01 03 00 01 00 A1 0F 00 00 00 48 41 00",
        "68 2A 04 00 02 00 0D 04 14 00 01 00 01 40 00 00 78 DB 3F 00 02 40 00 00 D8 90 42 00 "
        "03 40 00 00 F4 92 42 00 04 40 00 60 50 9A 3F 00",
        "68 12 08 00 04 00 0F 81 25 00 01 00 01 64 00 87 D6 12 00 01",
        "68 0E 06 00 04 00 65 01 07 00 01 00 00 00 00 05",
    ],
)
def test_describe_agrees_with_c104_explain_bytes(frame):
    data = bytes.fromhex(frame.replace(" ", ""))
    theirs = c104.explain_bytes_dict(apdu=data)
    ours = describe(data)
    assert (ours["send_seq"], ours["recv_seq"]) == (theirs["tx"], theirs["rx"])
    assert ours["type_id"] == int(theirs["type"].value) and ours["cot"] == int(theirs["cot"].value)
    assert (ours["count"], ours["sq"]) == (theirs["numberOfObjects"], theirs["sequence"])
    assert ours["common_address"] == theirs["commonAddress"]
    assert ours["objects"][0]["ioa"] == theirs["firstInformationObjectAddress"]


def test_our_requests_are_understood_by_c104_explain_bytes():
    for function, params in [
        ("gi", {}),
        ("ci", {"send": "1", "recv": "3"}),
        ("clock-sync", {"time": "2026-05-06T07:08:09"}),
    ]:
        explained = c104.explain_bytes_dict(apdu=build_request(function, params))
        assert explained["format"] == "I" and explained["cot"] == c104.Cot.ACTIVATION
    assert apci.decode(build_request("testfr", {})).format == "U"

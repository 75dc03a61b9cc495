"""Interoperation with the independent ``dlt698`` package (C++ core) as a peer.

Codec level: every reference frame and hypothesis-generated A-XDR data cross both codecs byte for byte;
APDUs built by dlt698 are decoded by ours.  Transport level over TCP on 127.0.0.1: our client against a
dlt698 server, and the dlt698 client against our simulated meter (preset and LINK/CONNECT association).
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import dlt698
import pytest
from dlt698 import codec as peer
from dlt698 import standard
from dlt698._native import AddressType as PeerAddressType
from dlt698._native import GetRequest as PeerGetRequest
from dlt698._native import ServerAddress as PeerServerAddress
from dlt698_vectors import ALL_VALID
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceRejected, RetryPolicy
from carbonflow.devices.base import StaticSource
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.protocols.dlt698 import build_request, describe
from carbonflow.protocols.dlt698.apdu import GetRequestNormalList
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.axdr import Reader, decode_data, encode_data
from carbonflow.protocols.dlt698.frame import decode_frame
from carbonflow.protocols.dlt698.objects import DEFAULT_OBJECTS, UNITS
from carbonflow.protocols.dlt698.types import (
    BitString,
    Data,
    DataType,
    Date,
    DateTime,
    DateTimeS,
    Oad,
    Omd,
    Road,
    ScalerUnit,
    Ti,
    Time,
)

ADDRESS = "012503200001"
EXAMPLES = max(200, int(os.environ.get("CARBONFLOW_FUZZ_EXAMPLES", "10000")) // 20)
FAST = RetryPolicy(timeout_s=1.0, retries=1, backoff_s=0.01)


# -- codec level -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_VALID)
def test_reference_frames_cross_both_codecs_byte_identically(name):
    raw = ALL_VALID[name]
    theirs = peer.decode_frame(raw)
    assert peer.encode_frame(theirs) == raw
    assert theirs.payload == decode_frame(raw).apdu
    assert peer.encode_apdu(peer.decode_apdu(theirs.payload)) == decode_apdu(theirs.payload).encode()


def test_frames_built_by_our_build_request_are_accepted_by_the_peer():
    for function, params in [
        ("get", {"address": ADDRESS, "oad": "00100200,20000200"}),
        ("set_time", {"address": ADDRESS, "time": "2026-10-07 14:16:26"}),
        ("get_record", {"address": ADDRESS, "oad": "50040200", "columns": "20210200,00100200", "last": "2"}),
        (
            "set_carbon_factor",
            {"address": ADDRESS, "start": "2026-10-07", "interval": "15 minute", "factors": "0.5,0.6"},
        ),
        (
            "action",
            {"address": ADDRESS, "omd": "40007F00", "type": "date-time-s", "value": "2026-01-01 00:00:00"},
        ),
        ("release", {"address": ADDRESS}),
    ]:
        raw = build_request(function, params)
        frame = peer.decode_frame(raw)
        assert peer.encode_frame(frame) == raw
        assert peer.encode_apdu(peer.decode_apdu(frame.payload)) == decode_frame(raw).apdu


def test_an_apdu_built_by_the_peer_is_decoded_by_ours():
    oads = [dlt698.Oad(oi=0x0010, attribute=2), dlt698.Oad(oi=0x2000, attribute=2, index=1)]
    payload = peer.encode_apdu(PeerGetRequest(attributes=oads, list=True, piid=7))
    assert decode_apdu(payload) == GetRequestNormalList(7, (Oad(0x0010, 2, 0), Oad(0x2000, 2, 1)))


def _zero_padding(raw: bytes, bits: int) -> bytes:
    """Both codecs require the unused low bits of the last byte to be zero (the peer taught us this)."""
    unused = -bits % 8
    return raw[:-1] + bytes([raw[-1] & (0xFF << unused) & 0xFF])


def _scalar() -> st.SearchStrategy[Data]:
    def integer(data_type: DataType, low: int, high: int) -> st.SearchStrategy[Data]:
        return st.integers(low, high).map(lambda v: Data(data_type, v))

    byte = st.integers(0, 255)
    return st.one_of(
        st.just(Data.null()),
        st.booleans().map(lambda v: Data(DataType.BOOL, v)),
        integer(DataType.DOUBLE_LONG, -(2**31), 2**31 - 1),
        integer(DataType.DOUBLE_LONG_UNSIGNED, 0, 2**32 - 1),
        integer(DataType.INTEGER, -128, 127),
        integer(DataType.LONG, -(2**15), 2**15 - 1),
        integer(DataType.UNSIGNED, 0, 255),
        integer(DataType.LONG_UNSIGNED, 0, 2**16 - 1),
        integer(DataType.LONG64, -(2**63), 2**63 - 1),
        integer(DataType.LONG64_UNSIGNED, 0, 2**64 - 1),
        integer(DataType.ENUM, 0, 255),
        integer(DataType.OI, 0, 0xFFFF),
        st.binary(max_size=140).map(lambda v: Data(DataType.OCTET_STRING, v)),
        st.text(alphabet="abcXYZ0129 -", max_size=30).map(lambda v: Data(DataType.VISIBLE_STRING, v)),
        st.text(max_size=20).map(lambda v: Data(DataType.UTF8_STRING, v)),
        st.integers(1, 24).flatmap(
            lambda bits: st.binary(min_size=(bits + 7) // 8, max_size=(bits + 7) // 8).map(
                lambda raw: Data(DataType.BIT_STRING, BitString(bits, _zero_padding(raw, bits)))
            )
        ),
        st.builds(
            lambda *f: Data(DataType.DATE_TIME_S, DateTimeS(*f)),
            st.integers(2000, 2099),
            byte,
            byte,
            byte,
            byte,
            byte,
        ),
        st.builds(
            lambda y, ms, *f: Data(DataType.DATE_TIME, DateTime(y, *f, ms)),
            st.integers(2000, 2099),
            st.integers(0, 999),
            byte,
            byte,
            byte,
            byte,
            byte,
            byte,
        ),
        st.builds(lambda y, *f: Data(DataType.DATE, Date(y, *f)), st.integers(2000, 2099), byte, byte, byte),
        st.builds(lambda *f: Data(DataType.TIME, Time(*f)), byte, byte, byte),
        st.builds(lambda oi, a, i: Data(DataType.OAD, Oad(oi, a, i)), st.integers(0, 0xFFFF), byte, byte),
        st.builds(lambda oi, m, o: Data(DataType.OMD, Omd(oi, m, o)), st.integers(0, 0xFFFF), byte, byte),
        st.builds(lambda u, n: Data(DataType.TI, Ti(u, n)), st.integers(0, 5), st.integers(0, 0xFFFF)),
        st.builds(lambda s, u: Data(DataType.SCALER_UNIT, ScalerUnit(s, u)), st.integers(-128, 127), byte),
        st.builds(
            lambda oad, cols: Data(DataType.ROAD, Road(oad, tuple(cols))),
            st.builds(Oad, st.integers(0, 0xFFFF), byte, byte),
            st.lists(st.builds(Oad, st.integers(0, 0xFFFF), byte, byte), max_size=3),
        ),
    )


DATA_TREES = st.recursive(
    _scalar(),
    lambda children: st.one_of(
        st.lists(children, max_size=5).map(Data.array), st.lists(children, max_size=5).map(Data.structure)
    ),
    max_leaves=12,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(DATA_TREES)
def test_generated_data_crosses_both_codecs_byte_identically(data):
    ours = encode_data(data)
    theirs = peer.encode_data(peer.decode_data(ours))
    assert theirs == ours
    reader = Reader(theirs)
    assert decode_data(reader) == data
    reader.done()


# -- transport level -------------------------------------------------------------------------------------
def _peer_address(text: str) -> PeerServerAddress:
    return PeerServerAddress(bytes=bytes.fromhex(text)[::-1], logical=0, type=PeerAddressType.single)


def test_our_client_reads_a_dlt698_server():
    async def main():
        options = dlt698.ServerOptions(protocol=dlt698.SessionOptions(server=_peer_address(ADDRESS)))
        async with dlt698.AsyncServer(options=options) as server:
            energy = [dlt698.Data.uint32(v) for v in (123456, 10000, 20000, 30000, 63456)]
            server.set(dlt698.Oad(oi=0x0010, attribute=2), dlt698.Data.array(energy))
            server.set(dlt698.Oad(oi=0x2000, attribute=2), dlt698.Data.array([dlt698.Data.uint16(2241)] * 3))
            await server.start_tcp("127.0.0.1", 0, dlt698.ConnectionProfile.local_preset)
            async with Dlt698Client("127.0.0.1", server.local_port, ADDRESS, policy=FAST) as client:
                energy_reading = await client.get("00100200")
                both = await client.get_many(["00100201", "20000200"])
                with pytest.raises(DeviceRejected, match="GET 20800200 refused: DAR"):
                    await client.get("20800200")  # not in the peer's standard catalogue
                return energy_reading, both

    energy, (total, voltage) = asyncio.run(main())
    assert energy.value == [
        Decimal("1234.56"),
        Decimal("100.00"),
        Decimal("200.00"),
        Decimal("300.00"),
        Decimal("634.56"),
    ]
    assert total.value == Decimal("1234.56") and voltage.value == [Decimal("224.1")] * 3


def _meter() -> Dlt698Meter:
    return Dlt698Meter("peer-test", ADDRESS, StaticSource({"p_kw": 5.0, "u_v": 231.7}))


def test_the_dlt698_client_reads_and_sets_our_meter():
    async def main():
        meter = _meter()
        async with meter:
            options = dlt698.ClientOptions(protocol=dlt698.SessionOptions(server=_peer_address(ADDRESS)))
            async with dlt698.AsyncClient(options) as client:
                await client.connect_tcp("127.0.0.1", meter.port, dlt698.ConnectionProfile.local_preset)
                voltage = (await client.get(dlt698.Oad(oi=0x2000, attribute=2))).require_data()
                listed = await client.get_list(
                    [dlt698.Oad(oi=0x0010, attribute=2), dlt698.Oad(oi=0x4000, attribute=2)]
                )
                dar = await client.set(
                    dlt698.Oad(oi=0x4000, attribute=2),
                    dlt698.Data.date_time_s([0x07, 0xEA, 10, 7, 14, 16, 26]),
                )
                carbon = await client.get(dlt698.Oad(oi=0x2080, attribute=2))
                await client.disconnect()
                return voltage, listed, dar, carbon, meter.local_time()

    voltage, listed, dar, carbon, meter_time = asyncio.run(main())
    assert peer.encode_data(voltage) == encode_data(Data.array([Data(DataType.LONG_UNSIGNED, 2317)] * 3))
    assert len(listed.attributes) == 2
    assert dar == 0 and (meter_time.year, meter_time.month, meter_time.day, meter_time.hour) == (
        2026,
        10,
        7,
        14,
    )
    assert carbon.require_data().as_uint32() == 0


def test_the_dlt698_client_logs_in_and_connects_to_a_meter_that_dials_in():
    """Default (remote) profile: the meter sends LINK login, the client answers, then CONNECT and GET."""

    async def main():
        meter = _meter()
        meter.login_on_connect = True
        async with meter:
            options = dlt698.ClientOptions(protocol=dlt698.SessionOptions(server=_peer_address(ADDRESS)))
            async with dlt698.AsyncClient(options) as client:
                await client.connect_tcp("127.0.0.1", meter.port)
                voltage = (await client.get(dlt698.Oad(oi=0x2000, attribute=2))).require_data()
                await client.disconnect()
            return voltage, meter.link_responses

    voltage, link_responses = asyncio.run(main())
    assert peer.encode_data(voltage) == encode_data(Data.array([Data(DataType.LONG_UNSIGNED, 2317)] * 3))
    assert len(link_responses) == 1


def test_describe_agrees_with_the_peer_catalogue_on_scalers():
    for oi, attribute in [
        (0x0010, 2),
        (0x0010, 4),
        (0x0020, 2),
        (0x2000, 2),
        (0x2001, 2),
        (0x2004, 2),
        (0x200A, 2),
    ]:
        definition = standard.find_attribute(dlt698.Oad(oi=oi, attribute=attribute))
        raw = build_request("get", {"address": ADDRESS, "oad": f"{oi:04X}{attribute:02X}00"})
        assert describe(raw)["oad"] == f"{oi:04X}{attribute:02X}00"
        item = DEFAULT_OBJECTS.find(oi, attribute)
        assert item.scaler == definition.scaling.scaler
        assert item.unit == UNITS[definition.scaling.unit]

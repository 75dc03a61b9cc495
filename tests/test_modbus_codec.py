"""Modbus TCP frame codec and register maps: reference vectors, pymodbus as the independent framer,
map validation, exact decimal values, and fuzzing of the decoder."""

from __future__ import annotations

import json
import os
import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from carbonflow.protocols import ProtocolError
from carbonflow.protocols.modbus import (
    DataType,
    RegisterPoint,
    build_request,
    builtin_map,
    builtin_models,
    describe,
    register_map_from_dict,
)

SPEC_REQUEST = bytes.fromhex("00 01 00 00 00 06 11 03 00 6B 00 03")
SPEC_RESPONSE = bytes.fromhex("00 01 00 00 00 09 11 03 06 02 2B 00 00 00 64")
FUZZ_EXAMPLES = int(os.environ.get("CARBONFLOW_FUZZ_EXAMPLES", "10000"))


def test_spec_request_is_built_byte_identically():
    assert build_request("read-holding", {"unit": "17", "address": "107", "count": "3"}) == SPEC_REQUEST
    assert build_request("read-holding", {"unit": "0x11", "address": "0x6B", "count": "3"}) == SPEC_REQUEST


def test_spec_frames_decode():
    request = describe(SPEC_REQUEST)
    assert request["direction"] == "request" and request["unit"] == 17
    assert (request["function"], request["address"], request["count"]) == (3, 107, 3)
    response = describe(SPEC_RESPONSE)
    assert response["direction"] == "response" and response["values"] == ["555", "0", "100"]
    assert response["registers"] == ["022B", "0000", "0064"]


def test_exception_response_names_the_exception():
    doc = describe(bytes.fromhex("00 07 00 00 00 03 01 83 02"))
    assert doc["function"] == 3 and doc["error"] == {"code": 2, "name": "illegal data address"}


@pytest.mark.parametrize(
    ("hex_frame", "message"),
    [
        ("00 01 00 00 00 09 11 03 06 02 2B 00 00 00", "truncated"),
        ("00 01 00 00 00 09 11 03 06 02 2B 00 00 00 64 00", "length mismatch"),
        ("00 01 00 01 00 06 11 03 00 6B 00 03", "protocol id"),
        ("00 01 00 00 00 08 11 03 05 02 2B 00 00 00", "odd byte count"),
        ("00 01 00 00 00 07 11 03 06 02 2B 00 00", "length mismatch: byte count"),
        ("00 01 00 00", "truncated"),
        ("00 01 00 00 00 02 11 2B", "unsupported function"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(hex_frame, message):
    with pytest.raises(ProtocolError, match=message):
        describe(bytes.fromhex(hex_frame))


@pytest.mark.parametrize(
    ("function", "params", "peer_pdu"),
    [
        (
            "read-holding",
            {"unit": "1", "address": "256", "count": "4", "transaction": "9"},
            ReadHoldingRegistersRequest(address=256, count=4, dev_id=1, transaction_id=9),
        ),
        (
            "read-input",
            {"unit": "3", "address": "16", "count": "2", "transaction": "65535"},
            ReadInputRegistersRequest(address=16, count=2, dev_id=3, transaction_id=65535),
        ),
        (
            "write-register",
            {"unit": "1", "address": "528", "value": "6123"},
            WriteSingleRegisterRequest(address=528, registers=[6123], dev_id=1, transaction_id=1),
        ),
        (
            "write-registers",
            {"unit": "1", "address": "528", "values": "1,2,65535"},
            WriteMultipleRegistersRequest(address=528, registers=[1, 2, 65535], dev_id=1, transaction_id=1),
        ),
    ],
)
def test_requests_match_the_pymodbus_framer_and_decode_back(function, params, peer_pdu):
    ours = build_request(function, params)
    assert ours == FramerSocket(DecodePDU(False)).buildFrame(peer_pdu)
    used, decoded = FramerSocket(DecodePDU(True)).handleFrame(ours, 0, 0)
    assert used == len(ours) and decoded.function_code == describe(ours)["function"]


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("read-holding", {"unit": "1", "address": "0"}, "missing parameter 'count'"),
        ("read-holding", {"unit": "1", "address": "0", "count": "126"}, "outside 1..125"),
        ("read-holding", {"unit": "1", "address": "x", "count": "1"}, "address='x' is not an integer"),
        ("read-holding", {"unit": "1", "address": "0", "count": "1", "colour": "red"}, "unknown parameter"),
        ("read-everything", {}, "unknown function"),
        ("write-registers", {"unit": "1", "address": "0", "values": "1,70000"}, "outside 0..65535"),
    ],
)
def test_bad_request_parameters_are_named(function, params, message):
    with pytest.raises(ProtocolError, match=message):
        build_request(function, params)


def test_float32_reference_registers_show_the_meter_digits():
    point = RegisterPoint("u", 0, DataType.FLOAT32, unit="V")
    assert str(point.decode([0x4366, 0x199A])) == "230.1"
    little = RegisterPoint("u", 0, DataType.FLOAT32, word_order="little")
    assert str(little.decode([0x199A, 0x4366])) == "230.1"


def test_integer_registers_scale_exactly():
    energy = RegisterPoint("e", 0, DataType.UINT32, scale=Decimal("0.01"), unit="kWh")
    assert str(energy.decode([0x0001, 0xD742])) == "1206.42"  # 120642 x 0.01, no float on the way
    current = RegisterPoint("i", 0, DataType.INT16, scale=Decimal("0.001"))
    assert str(current.decode([0xEC79])) == "-4.999"
    big = RegisterPoint("e", 0, DataType.UINT64, scale=Decimal("0.0001"))
    assert str(big.decode(big.encode("1844674407370955.1615"))) == "1844674407370955.1615"


@given(
    st.sampled_from(list(DataType)),
    st.sampled_from(["big", "little"]),
    st.sampled_from(["1", "0.1", "0.01", "0.001", "10"]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
def test_integer_points_round_trip_exactly(dtype, word_order, scale, raw):
    if dtype.is_float:
        return
    bits = 16 * dtype.words
    signed = dtype.label.startswith("int")
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    raw = min(max(raw, low), high)
    point = RegisterPoint("p", 0, dtype, word_order=word_order, scale=Decimal(scale))
    value = Decimal(raw) * Decimal(scale)
    assert point.decode(point.encode(value)) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_points_round_trip_to_the_same_float(value, word_order):
    point = RegisterPoint("p", 0, DataType.FLOAT32, word_order=word_order)
    shown = point.decode(point.encode(Decimal(repr(value))))
    assert struct.pack(">f", float(shown)) == struct.pack(">f", value)


def test_value_too_large_for_the_register_is_refused():
    with pytest.raises(ProtocolError, match="does not fit uint16"):
        RegisterPoint("f", 0, DataType.UINT16, scale=Decimal("0.1")).encode("7000")


def test_builtin_maps_load_and_plan_reads_without_crossing_gaps():
    assert {"cf-3ph-meter", "cf-meter-le"} <= set(builtin_models())
    meter = builtin_map("cf-3ph-meter")
    plan = meter.read_plan()
    assert all(count <= 125 for _table, _start, count in plan)
    covered = {(t, a) for t, s, c in plan for a in range(s, s + c)}
    for point in meter.points:
        assert all((point.table, a) in covered for a in range(point.address, point.address + point.words))
        assert (point.table, point.address - 1) in covered or all(
            (point.table, a) not in covered or meter.at(point.table, a) for a in [point.address - 1]
        )
    for table, start, count in plan:  # every register a read touches belongs to a point
        assert all(meter.at(table, a) is not None for a in range(start, start + count))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["points"][0].pop("address"), "point 'u_a_v': missing field 'address'"),
        (lambda d: d["points"][1].update(address="0x0001"), "point 'u_b_v' overlaps 'u_a_v' at 1"),
        (lambda d: d["points"][2].update(type="float16"), "point 'u_c_v': unknown type 'float16'"),
        (lambda d: d["points"][3].update(word_order="middle"), "point 'i_a_a': word_order"),
        (lambda d: d["points"][4].update(scale="abc"), "point 'i_b_a': scale 'abc' is not a number"),
        (lambda d: d["points"][5].update(address=70000), "point 'i_c_a': address must be 0..65535"),
        (lambda d: d["points"].append(dict(d["points"][0])), "duplicate point 'u_a_v'"),
        (lambda d: d["points"][12].update(factor_point="nope"), "refers to unknown point 'nope'"),
        (lambda d: d.pop("model"), 'missing field "model"'),
    ],
)
def test_map_mistakes_are_named(change, message):
    from importlib import resources

    text = resources.files("carbonflow.protocols.modbus").joinpath("maps").joinpath("cf-3ph-meter.json")
    document = json.loads(text.read_text("utf-8"))
    change(document)
    with pytest.raises(ProtocolError, match=message):
        register_map_from_dict(document)


VALID_FRAMES = [
    SPEC_REQUEST,
    SPEC_RESPONSE,
    bytes.fromhex("00 07 00 00 00 03 01 83 02"),
    build_request("write-registers", {"unit": "1", "address": "528", "values": "1,2,3"}),
    build_request("write-coil", {"unit": "1", "address": "5", "value": "1"}),
    bytes.fromhex("00 02 00 00 00 05 01 01 02 CD 01"),
]


@st.composite
def mutated_frames(draw):
    frame = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        position = draw(st.integers(0, max(0, len(frame) - 1)))
        if action == "flip" and frame:
            frame[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del frame[position:]
        elif action == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif frame:
            frame[position] = draw(st.integers(0, 255))
    return bytes(frame)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated_frames()))
def test_fuzz_decoder_raises_only_protocol_error(data):
    try:
        doc = describe(data)
    except ProtocolError:
        return
    json.dumps(doc)  # whatever decodes is a JSON document

"""IEC 104 codec against the checksum-verified reference frames (protocols.md §3.4, acceptance §8.2-5)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from carbonflow.protocols import ProtocolError
from carbonflow.protocols.iec104 import ENCODE_FUNCTIONS, apci, asdu, build_request, cp56time, describe
from carbonflow.protocols.iec104.apci import IFrame, SFrame, UFrame, UFunction
from carbonflow.protocols.iec104.asdu import Asdu, InformationObject
from carbonflow.protocols.iec104.cp56time import CP56Time2a


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# 104-1 / 104-2: the six U-frames
U_FRAMES = {
    "68 04 07 00 00 00": ("STARTDT act", "request"),
    "68 04 0B 00 00 00": ("STARTDT con", "response"),
    "68 04 43 00 00 00": ("TESTFR act", "request"),
    "68 04 83 00 00 00": ("TESTFR con", "response"),
    "68 04 13 00 00 00": ("STOPDT act", "request"),
    "68 04 23 00 00 00": ("STOPDT con", "response"),
}
V104_3_GI_ACT = "68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14"
V104_4_GI_ACTCON = "68 0E 00 00 02 00 64 01 07 00 01 00 00 00 00 14"
V104_5_FLOAT_SPONT = "68 12 0A 00 06 00 0D 01 03 00 01 00 A1 0F 00 00 00 48 41 00"
V104_6_FLOAT_100 = "68 12 04 00 02 00 0D 01 03 00 01 00 0A 00 00 00 00 C8 42 00"
V104_7_FLOAT_GI = (
    "68 2A 04 00 02 00 0D 04 14 00 01 00 01 40 00 00 78 DB 3F 00 02 40 00 00 D8 90 42 00 "
    "03 40 00 00 F4 92 42 00 04 40 00 60 50 9A 3F 00"
)
V104_8_ASDU = "0F 01 25 00 01 00 B9 0B 00 4E 8E 13 00 67"
V104_9_CI_ACT = "68 0E 02 00 06 00 65 01 06 00 01 00 00 00 00 05"
V104_9_CI_ACTCON = "68 0E 06 00 04 00 65 01 07 00 01 00 00 00 00 05"
V104_9_COUNTER = "68 12 08 00 04 00 0F 81 25 00 01 00 01 64 00 87 D6 12 00 01"
V104_9_CI_ACTTERM = "68 0E 0A 00 04 00 65 01 0A 00 01 00 00 00 00 05"
V104_10_FLOAT_SQ = "68 12 02 00 02 00 0D 81 14 00 01 00 01 40 00 00 00 F7 42 00"

ALL_VECTORS = [
    *U_FRAMES,
    V104_3_GI_ACT,
    V104_4_GI_ACTCON,
    V104_5_FLOAT_SPONT,
    V104_6_FLOAT_100,
    V104_7_FLOAT_GI,
    "68 12 00 00 00 00 " + V104_8_ASDU,
    V104_9_CI_ACT,
    V104_9_CI_ACTCON,
    V104_9_COUNTER,
    V104_9_CI_ACTTERM,
    V104_10_FLOAT_SQ,
]


@pytest.mark.parametrize(("frame", "expected"), U_FRAMES.items())
def test_u_frames_104_1_and_104_2(frame, expected):
    function, direction = expected
    doc = describe(hexbytes(frame))
    assert (doc["format"], doc["function"], doc["direction"]) == ("U", function, direction)
    assert doc["error"] is None
    decoded = apci.decode(hexbytes(frame))
    assert isinstance(decoded, UFrame) and decoded.function.label == function
    assert apci.encode(decoded) == hexbytes(frame)


@pytest.mark.parametrize(
    ("function", "params", "frame"),
    [
        ("startdt", {}, "68 04 07 00 00 00"),
        ("startdt", {"con": "1"}, "68 04 0B 00 00 00"),
        ("testfr", {}, "68 04 43 00 00 00"),
        ("testfr", {"con": "1"}, "68 04 83 00 00 00"),
        ("stopdt", {}, "68 04 13 00 00 00"),
        ("stopdt", {"con": "1"}, "68 04 23 00 00 00"),
        ("gi", {"ca": "1", "qoi": "20"}, V104_3_GI_ACT),
        ("gi", {}, V104_3_GI_ACT),
        ("gi", {"cot": "7", "recv": "1"}, V104_4_GI_ACTCON),
        ("ci", {"ca": "1", "send": "1", "recv": "3"}, V104_9_CI_ACT),
        ("ci", {"rqt": "5", "frz": "0", "cot": "10", "send": "5", "recv": "2"}, V104_9_CI_ACTTERM),
        ("s-frame", {"recv": "3"}, "68 04 01 00 06 00"),
    ],
)
def test_build_request_is_byte_identical_to_reference(function, params, frame):
    assert build_request(function, params) == hexbytes(frame)


def test_encode_functions_list_every_buildable_function():
    for function in ENCODE_FUNCTIONS:
        params = {"time": "2026-03-01T12:00:00"} if function == "clock-sync" else {}
        assert build_request(function, params)[0] == 0x68


def test_104_3_gi_activation_decodes():
    doc = describe(hexbytes(V104_3_GI_ACT))
    assert doc["type"] == "C_IC_NA_1" and doc["cause"] == "activation" and doc["direction"] == "request"
    assert (doc["common_address"], doc["qualifier"], doc["send_seq"], doc["recv_seq"]) == (1, 20, 0, 0)


def test_104_4_gi_actcon_decodes():
    doc = describe(hexbytes(V104_4_GI_ACTCON))
    assert (doc["cot"], doc["direction"], doc["qualifier"], doc["recv_seq"]) == (7, "response", 20, 1)
    assert doc["error"] is None


def test_104_5_float_12_5_spontaneous():
    doc = describe(hexbytes(V104_5_FLOAT_SPONT))
    assert (doc["type_id"], doc["ioa"], doc["value"], doc["cause"]) == (13, 4001, "12.5", "spontaneous")
    assert (doc["send_seq"], doc["recv_seq"]) == (5, 3)
    assert doc["objects"][0]["quality"] == []


def test_104_6_float_100():
    doc = describe(hexbytes(V104_6_FLOAT_100))
    assert (doc["ioa"], doc["value"]) == (10, "100.0")


def test_104_7_four_floats_from_general_interrogation():
    doc = describe(hexbytes(V104_7_FLOAT_GI))
    assert doc["cot"] == 20 and doc["count"] == 4 and doc["sq"] is False
    assert [obj["ioa"] for obj in doc["objects"]] == [16385, 16386, 16387, 16388]
    values = [Decimal(value) for value in doc["values"]]
    # the reference rounds to 4 places; the wire floats carry more digits, shown unrounded
    assert [v.quantize(Decimal("0.0001")) for v in values] == [
        Decimal("1.7146"),
        Decimal("72.4219"),
        Decimal("73.4766"),
        Decimal("1.2056"),
    ]
    assert doc["values"] == ["1.7145996", "72.421875", "73.47656", "1.2055779"]


def test_104_8_counter_with_carry_and_adjusted_flags():
    unit = asdu.decode(hexbytes(V104_8_ASDU))
    (obj,) = unit.objects
    assert (unit.type_id, unit.cot, obj.ioa, obj.value, obj.sequence) == (15, 37, 3001, Decimal(1281614), 7)
    assert obj.quality == {"CA", "CY"}
    assert asdu.encode(unit) == hexbytes(V104_8_ASDU)
    doc = describe(hexbytes("68 12 00 00 00 00" + V104_8_ASDU))
    assert doc["value"] == "1281614" and doc["objects"][0]["quality"] == ["CA", "CY"]


def test_104_9_counter_interrogation_exchange():
    assert describe(hexbytes(V104_9_CI_ACT))["request"] == 5
    assert describe(hexbytes(V104_9_CI_ACTCON))["cause"] == "activation con"
    counter = describe(hexbytes(V104_9_COUNTER))
    assert (counter["ioa"], counter["value"], counter["sq"]) == (25601, "1234567", True)
    assert counter["objects"][0]["sequence"] == 1
    assert describe(hexbytes(V104_9_CI_ACTTERM))["cause"] == "activation termination"


def test_104_10_sequence_of_one_float():
    doc = describe(hexbytes(V104_10_FLOAT_SQ))
    assert (doc["sq"], doc["ioa"], doc["value"], doc["cot"]) == (True, 16385, "123.5", 20)


@pytest.mark.parametrize("frame", ALL_VECTORS)
def test_every_reference_frame_reencodes_identically(frame):
    data = hexbytes(frame)
    decoded = apci.decode(data)
    if isinstance(decoded, IFrame):
        decoded = IFrame(decoded.send_seq, decoded.recv_seq, asdu.encode(asdu.decode(decoded.asdu)))
    assert apci.encode(decoded) == data
    json.dumps(describe(data))  # the C2 document is JSON-able


def test_concatenated_apdus_are_described_one_by_one():
    doc = describe(hexbytes(V104_9_CI_ACTCON + V104_9_COUNTER + V104_9_CI_ACTTERM))
    assert [frame["cot"] for frame in doc["frames"]] == [7, 37, 10]


# -- negative vectors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("", "empty"),
        ("68", "truncated"),
        ("68 04 07 00 00", "truncated"),
        ("69 04 07 00 00 00", "start byte"),
        ("68 03 07 00 00 00", "length"),
        ("68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00", "truncated"),  # 104-3 minus one byte
        ("68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14 00", "truncated"),  # one byte too many
        ("68 04 05 00 00 00", "malformed S-format"),  # bit 1 clear: S-format with stray bits
        ("68 04 0F 00 00 00", "U-format"),  # STARTDT act+con together
        ("68 04 07 00 01 00", "not zero"),
        ("68 04 01 00 07 00", "S-format"),
        ("68 05 01 00 06 00 00", "S-format APDU with length 5"),
        ("68 04 00 00 00 00", "without an ASDU"),
        ("68 06 00 00 00 00 0D 01", "truncated ASDU"),
        ("68 11 0A 00 06 00 0D 01 03 00 01 00 A1 0F 00 00 00 48 41", "needs 8 bytes"),
        ("68 0E 00 00 00 00 64 00 06 00 01 00 00 00 00 14", "count 0"),
        ("68 0E 00 00 00 00 64 01 00 00 01 00 00 00 00 14", "cause of transmission 0"),
        ("68 0E 00 00 01 00 64 01 06 00 01 00 00 00 00 14", "control octet 3"),
    ],
)
def test_malformed_frames_are_rejected_with_a_clear_message(frame, message):
    with pytest.raises(ProtocolError, match=message):
        describe(hexbytes(frame))


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("read", {}, "unknown iec104 function"),
        ("gi", {"qoi": "x"}, "qoi"),
        ("gi", {"ca": "70000"}, "ca"),
        ("gi", {"rqt": "5"}, "unknown parameter"),
        ("ci", {"frz": "4"}, "frz"),
        ("clock-sync", {}, "missing parameter time"),
        ("clock-sync", {"time": "yesterday"}, "ISO 8601"),
        ("s-frame", {"recv": "32768"}, "recv"),
    ],
)
def test_build_request_rejects_bad_input(function, params, message):
    with pytest.raises(ProtocolError, match=message):
        build_request(function, params)


# -- types and values -----------------------------------------------------------------------------
T0 = CP56Time2a.from_datetime(datetime(2026, 3, 1, 12, 30, 15, 250000))


@pytest.mark.parametrize(
    ("type_id", "obj"),
    [
        (1, InformationObject(7, Decimal(1), frozenset({"NT"}))),
        (3, InformationObject(8, Decimal(2), frozenset({"IV", "BL"}))),
        (9, InformationObject(16385, Decimal("-0.5"), frozenset({"OV"}))),
        (11, InformationObject(16386, Decimal(-2345), frozenset({"SB"}))),
        (13, InformationObject(16387, Decimal("-4.999"), frozenset())),
        (15, InformationObject(25601, Decimal(-5), frozenset({"IV", "CY"}), sequence=31)),
        (30, InformationObject(9, Decimal(0), time=T0)),
        (31, InformationObject(10, Decimal(3), time=T0)),
        (34, InformationObject(16385, Decimal("0.999969482421875"), time=T0)),
        (35, InformationObject(16386, Decimal(32767), frozenset({"IV"}), time=T0)),
        (36, InformationObject(16387, Decimal("1206.42"), frozenset({"NT"}), time=T0)),
        (37, InformationObject(25602, Decimal(2147483647), frozenset({"CA"}), sequence=3, time=T0)),
        (70, InformationObject(0, qualifier=0x81)),
        (100, InformationObject(0, qualifier=20)),
        (101, InformationObject(0, qualifier=0x45)),
        (103, InformationObject(0, time=T0)),
    ],
)
def test_each_type_round_trips(type_id, obj):
    unit = Asdu(type_id, 3, 0xABCD, (obj,), originator=7, negative=True, test=True)
    data = asdu.encode(unit)
    assert len(data) == asdu.HEADER_SIZE + asdu.IOA_SIZE + asdu.TYPES[type_id].size
    back = asdu.decode(data)
    assert back.objects == (obj,)
    assert (back.common_address, back.originator, back.negative, back.test) == (0xABCD, 7, True, True)


def test_normalised_values_are_exact_fractions_of_2_to_15():
    unit = asdu.decode(hexbytes("09 02 03 00 01 00 01 40 00 01 00 00 02 40 00 00 80 00"))
    assert [obj.value for obj in unit.objects] == [Decimal("0.000030517578125"), Decimal(-1)]


def test_float_values_use_the_shortest_single_precision_text():
    assert asdu.float32_decimal(hexbytes("CD CC 4C 3E")) == Decimal("0.2")  # not 0.20000000298...
    assert str(asdu.float32_decimal(hexbytes("00 00 C8 42"))) == "100.0"
    assert str(asdu.float32_decimal(hexbytes("00 00 C0 7F"))) == "NaN"
    assert asdu.float32_decimal(hexbytes("FF FF 7F 7F")) == Decimal("3.4028235E+38")


def test_sequence_of_objects_gets_consecutive_addresses():
    objects = tuple(InformationObject(100 + i, Decimal(i)) for i in range(3))
    data = asdu.encode(Asdu(11, 20, 1, objects, sequence=True))
    assert len(data) == asdu.HEADER_SIZE + 3 + 3 * 3
    assert asdu.decode(data).objects == objects
    with pytest.raises(ProtocolError, match="consecutive"):
        asdu.encode(Asdu(11, 20, 1, (objects[0], objects[2]), sequence=True))


def test_unknown_type_keeps_objects_raw():
    unit = asdu.decode(hexbytes("2D 01 06 00 01 00 01 60 00 01"))  # C_SC_NA_1, not in our table
    assert (unit.type_name, unit.raw_objects, unit.count) == ("type 45", hexbytes("01 60 00 01"), 1)
    assert asdu.encode(unit) == hexbytes("2D 01 06 00 01 00 01 60 00 01")
    assert describe(hexbytes("68 0E 00 00 00 00 2D 01 06 00 01 00 01 60 00 01"))["objects"] is None


def test_negative_confirmation_is_reported_as_error():
    doc = describe(hexbytes("68 0E 00 00 02 00 64 01 6E 00 01 00 00 00 00 14"))  # P/N + unknown CA (46)
    assert doc["error"] == {"code": 46, "flags": ["negative confirmation", "unknown common address"]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (InformationObject(1, Decimal("1.5")), "not an integer"),
        (InformationObject(1, Decimal(40000)), "does not fit"),
        (InformationObject(1, None), "needs a value"),
        (InformationObject(1, Decimal(1), frozenset({"CY"})), "not allowed"),
    ],
)
def test_encoding_rejects_values_the_type_cannot_carry(value, message):
    with pytest.raises(ProtocolError, match=message):
        asdu.encode(Asdu(11, 3, 1, (value,)))


# -- CP56Time2a -----------------------------------------------------------------------------------
def test_cp56time_layout_with_weekday_invalid_and_summer_bits():
    tag = CP56Time2a(2026, 3, 1, 12, 30, 15250, day_of_week=7, invalid=True, summer_time=True)
    assert cp56time.encode(tag) == bytes([0x92, 0x3B, 30 | 0x80, 12 | 0x80, 1 | 7 << 5, 3, 26])
    assert cp56time.decode(cp56time.encode(tag)) == tag
    assert tag.to_datetime().isoformat() == "2026-03-01T12:30:15.250000+00:00"


def test_cp56time_from_datetime_sets_iso_weekday():
    assert CP56Time2a.from_datetime(datetime(2026, 3, 2, 0, 0)).day_of_week == 1  # a Monday
    assert CP56Time2a.from_datetime(datetime(2026, 3, 2), with_weekday=False).day_of_week == 0


@pytest.mark.parametrize(
    "data",
    [
        "60 EA 00 00 01 01 1A",
        "00 00 3C 00 01 01 1A",
        "00 00 00 18 01 01 1A",
        "00 00 00 00 00 01 1A",
        "00 00 00 00 01 0D 1A",
        "00 00 00 00 01 00 1A",
    ],
)
def test_cp56time_rejects_out_of_range_fields(data):
    with pytest.raises(ProtocolError, match="out of range"):
        cp56time.decode(hexbytes(data))


def test_cp56time_rejects_impossible_dates_on_conversion():
    with pytest.raises(ProtocolError, match="not a date"):
        cp56time.decode(hexbytes("00 00 00 00 1F 02 1A")).to_datetime()  # 31 February


def test_apci_split_keeps_partial_frames_and_rejects_lost_sync():
    buffer = bytearray(hexbytes("68 04 07 00 00 00 68 04 43"))
    assert apci.split(buffer) == [hexbytes("68 04 07 00 00 00")]
    assert buffer == hexbytes("68 04 43")
    with pytest.raises(ProtocolError, match="start byte"):
        apci.split(bytearray(b"\x00\x68"))
    assert apci.decode(apci.encode_s(32767)) == SFrame(32767)
    assert apci.decode(apci.encode_i(32767, 1, b"\x64")) == IFrame(32767, 1, b"\x64")
    assert UFunction.TESTFR_ACT.confirmation is UFunction.TESTFR_CON


@pytest.mark.parametrize(
    ("qds", "flags"),
    [
        (0x00, set()),
        (0x01, {"OV"}),
        (0x10, {"BL"}),
        (0x20, {"SB"}),
        (0x40, {"NT"}),
        (0x80, {"IV"}),
        (0xF1, {"OV", "BL", "SB", "NT", "IV"}),
        (0x0E, set()),
    ],  # bits 1-3 are reserved
)
def test_quality_descriptor_bits_follow_the_standard(qds, flags):
    unit = asdu.decode(hexbytes("0D 01 03 00 01 00 A1 0F 00 00 00 48 41") + bytes([qds]))
    assert unit.objects[0].quality == flags
    point = asdu.decode(hexbytes("01 01 03 00 01 00 01 00 00") + bytes([qds | 0x01]))
    assert point.objects[0].quality == flags - {"OV"} and point.objects[0].value == 1

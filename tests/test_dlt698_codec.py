"""DL/T 698.45 codec against the checksum-verified reference frames (protocols.md §2.5, §8.2 items 3-4)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
from dlt698_vectors import (
    ALL_VALID,
    LOGIN_698_5,
    LOGIN_ANSWER_698_5,
    NEG_698_A,
    REPORT_698_7,
    REQ_698_1,
    REQ_698_6,
    REQ_698_8,
    REQ_698_9,
    REQ_698_10,
    REQ_698_11,
    RSP_698_1,
    RSP_698_3,
    RSP_698_4,
    RSP_698_6,
    RSP_698_8,
    RSP_698_9,
    RSP_698_10,
)

from carbonflow.protocols.dlt698 import (
    ENCODE_FUNCTIONS,
    build_request,
    crc16_x25,
    decode_frame,
    describe,
    split_frames,
)
from carbonflow.protocols.dlt698.apdu import GetResponseNormal, GetResponseRecord, ResultNormal, ResultRecord
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.axdr import Reader, decode_data, encode_data
from carbonflow.protocols.dlt698.frame import SERVER_RESPONSE, AddressType, Frame, ServerAddress
from carbonflow.protocols.dlt698.objects import render, scaled, unscaled
from carbonflow.protocols.dlt698.types import (
    BitString,
    Comdcb,
    Data,
    DataType,
    Date,
    DateTime,
    DateTimeS,
    Ms,
    Oad,
    Omd,
    Region,
    Road,
    Rsd,
    ScalerUnit,
    Sid,
    SidMac,
    Ti,
    Time,
)
from carbonflow.protocols.errors import ProtocolError


def reseal(raw: bytes) -> bytes:
    """Recompute HCS and FCS after editing a frame."""
    frame = bytearray(raw)
    hcs_at = 6 + (frame[4] & 0x0F) + 1
    frame[hcs_at : hcs_at + 2] = crc16_x25(bytes(frame[1:hcs_at])).to_bytes(2, "little")
    frame[-3:-1] = crc16_x25(bytes(frame[1:-3])).to_bytes(2, "little")
    return bytes(frame)


# -- framing (item 3) ---------------------------------------------------------------------------------
def test_crc16_x25_check_value():
    assert crc16_x25(b"123456789") == 0x906E


@pytest.mark.parametrize("name", ALL_VALID)
def test_every_reference_frame_decodes_and_re_encodes_byte_identically(name):
    raw = ALL_VALID[name]
    frame = decode_frame(raw)
    assert frame.encode() == raw
    assert decode_apdu(frame.apdu).encode() == frame.apdu
    assert json.loads(json.dumps(describe(raw)))["protocol"] == "dlt698"


@pytest.mark.parametrize("name", ALL_VALID)
def test_preamble_bytes_are_skipped(name):
    assert describe(b"\xfe\xfe\xfe\xfe" + ALL_VALID[name]) == describe(ALL_VALID[name])


def test_negative_vector_with_wrong_length_field_is_rejected():
    with pytest.raises(ProtocolError, match="length mismatch"):
        describe(NEG_698_A)


def test_corrupted_hcs_fcs_end_byte_and_truncation_are_rejected():
    bad_hcs = bytearray(RSP_698_8)
    bad_hcs[12] ^= 0x01
    with pytest.raises(ProtocolError, match="HCS"):
        describe(bytes(bad_hcs))
    bad_fcs = bytearray(RSP_698_8)
    bad_fcs[-3] ^= 0x01
    with pytest.raises(ProtocolError, match="FCS"):
        describe(bytes(bad_fcs))
    with pytest.raises(ProtocolError, match="ends with"):
        describe(RSP_698_8[:-1] + b"\x17")
    with pytest.raises(ProtocolError, match="length mismatch"):
        describe(RSP_698_8[:-5])
    with pytest.raises(ProtocolError, match="empty"):
        describe(b"\xfe\xfe")


def test_a_payload_byte_changed_with_valid_crcs_is_still_caught_by_the_apdu_decoder():
    edited = bytearray(RSP_698_8)
    edited[23] = 0x07  # array count 5 -> 7: runs out of data
    with pytest.raises(ProtocolError, match="truncated"):
        describe(reseal(bytes(edited)))


def test_wildcard_and_four_byte_addresses():
    wildcard = decode_frame(REQ_698_6)
    assert wildcard.server == ServerAddress("AAAAAAAAAAAA", AddressType.WILDCARD, 0)
    assert REQ_698_6[4] == 0x45
    four_byte = decode_frame(REQ_698_1)
    assert four_byte.server.address == "28417891" and four_byte.server.type == AddressType.SINGLE
    assert describe(RSP_698_3)["address"] == "012503200001"
    assert ServerAddress("012503200001").matches(wildcard.server)
    assert not ServerAddress("0125032000").matches(wildcard.server)


def test_logical_address_bits_round_trip():
    frame = Frame(SERVER_RESPONSE, ServerAddress("000000000001", logical=2), 0x10, b"\x83\x01\x00\x00\x00")
    raw = frame.encode()
    assert raw[4] == 0x25
    assert decode_frame(raw) == frame


def test_control_byte_direction_and_function():
    assert describe(REQ_698_8)["direction"] == "request"
    assert describe(RSP_698_8)["direction"] == "response"
    login = describe(LOGIN_698_5)
    assert (login["direction"], login["sender"], login["function"]) == (
        "request",
        "server",
        "link management",
    )
    answer = describe(LOGIN_ANSWER_698_5)
    assert (answer["direction"], answer["sender"], answer["client_address"]) == ("response", "client", "A0")


def test_split_frames_cuts_a_stream_with_noise_and_partial_tail():
    buffer = bytearray(b"\x00\x68\x99" + RSP_698_8 + b"\xfe\xfe" + RSP_698_9 + RSP_698_10[:10])
    assert split_frames(buffer) == [RSP_698_8, RSP_698_9]
    buffer.extend(RSP_698_10[10:])
    assert split_frames(buffer) == [RSP_698_10]
    assert buffer == bytearray()


# -- decoding (item 4) ------------------------------------------------------------------------------
def test_698_8_forward_energy_total_and_tariffs():
    doc = describe(RSP_698_8)
    assert doc["apdu"] == "GET-Response" and doc["oad"] == "00100200"
    assert doc["values"] == ["1234.56", "100.00", "200.00", "300.00", "634.56"]
    assert doc["unit"] == "kWh" and doc["error"] is None


def test_698_9_three_phase_voltages():
    assert describe(RSP_698_9)["values"] == ["241.3", "241.4", "241.5"]
    assert describe(RSP_698_9)["unit"] == "V"


def test_698_3_single_phase_meter_voltage():
    doc = describe(RSP_698_3)
    assert (doc["address"], doc["values"][0], doc["unit"]) == ("012503200001", "224.1", "V")


def test_698_10_date_time():
    doc = describe(RSP_698_10)
    assert doc["value"] == "2026-10-07 14:16:26" and doc["type"] == "date-time-s"


def test_698_1_and_698_4_zero_energies_keep_their_digits():
    assert describe(RSP_698_1)["values"] == ["0.0000"] * 5
    assert describe(RSP_698_4)["values"] == ["0.00"] * 5


def test_698_5_login_and_the_platform_answer():
    login = describe(LOGIN_698_5)
    assert (login["apdu"], login["link"], login["heartbeat_s"]) == ("LINK-Request", "login", 180)
    assert login["time"] == "2025-04-11 09:12:40.000"
    answer = describe(LOGIN_ANSWER_698_5)
    assert answer["apdu"] == "LINK-Response" and answer["result"] == 0
    assert (answer["received_time"], answer["response_time"]) == (
        "2025-04-11 09:12:39.440",
        "2025-04-11 09:12:39.444",
    )


def test_698_6_proxy_is_unwrapped_and_the_inner_frames_decoded():
    request = describe(REQ_698_6)
    assert request["service"] == "ProxyTransCommandRequest" and request["port"] == "F2010201"
    assert request["comdcb"] == {"baud": 6, "parity": 2, "data_bits": 8, "stop_bits": 1, "flow": 0}
    assert (request["inner"]["address"], request["inner"]["oad"]) == ("012503200001", "20010201")
    response = describe(RSP_698_6)
    inner = response["inner"]
    assert (inner["oad"], inner["value"], inner["unit"], inner["type"]) == (
        "20010201",
        "0.000",
        "A",
        "double-long",
    )


def test_698_7_power_off_event_report_record():
    doc = describe(REPORT_698_7)
    assert doc["service"] == "ReportNotificationRecordList"
    record = doc["records"][0]
    assert record["oad"] == "31060200"
    assert record["columns"] == ["20220200", "201E0200", "20200200", "20240200", "33000200", "33090206"]
    assert record["rows"] == [["24", "2025-04-10 11:29:38", None, 0, [["45000200", "1"]], "10000000"]]


def test_698_11_get_normal_list():
    doc = describe(REQ_698_11)
    assert [o["oad"] for o in doc["oads"]] == ["00000200", "00100200", "00200200"]
    assert (doc["piid"], doc["address"], doc["client_address"]) == (0x1E, "003708191239", "0B")


def test_dar_error_is_reported_with_reason():
    apdu = GetResponseNormal(1, ResultNormal(Oad(0x2080, 2, 0), dar=6))
    raw = Frame(SERVER_RESPONSE, ServerAddress("000000000001"), 0, apdu.encode()).encode()
    doc = describe(raw)
    assert doc["error"] == {"dar": 6, "reason": "object does not exist"}
    assert "value" not in doc and "values" not in doc


def test_record_response_with_selector_9_request_round_trip():
    raw = build_request(
        "get_record", {"address": "000000000001", "oad": "50040200", "columns": "20210200,00100200"}
    )
    doc = describe(raw)
    assert doc["rsd"] == "selector 9: last record #1" and doc["columns"] == ["20210200", "00100200"]
    row = (
        Data(DataType.DATE_TIME_S, DateTimeS(2026, 1, 2, 0, 0, 0)),
        Data.array([Data(DataType.DOUBLE_LONG_UNSIGNED, 5)]),
    )
    result = ResultRecord(Oad(0x5004, 2, 0), (Oad(0x2021, 2, 0), Oad(0x0010, 2, 0)), rows=(row,))
    response = Frame(
        SERVER_RESPONSE, ServerAddress("000000000001"), 0, GetResponseRecord(0, result).encode()
    ).encode()
    assert describe(response)["rows"] == [["2026-01-02 00:00:00", ["0.05"]]]


# -- scaler rendering --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "scaler", "text"),
    [
        (123456, -2, "1234.56"),
        (10000, -2, "100.00"),
        (-4999, -3, "-4.999"),
        (2512, -4, "0.2512"),
        (5, 2, "500"),
    ],
)
def test_scaler_keeps_the_meter_digits(raw, scaler, text):
    assert render(Data(DataType.DOUBLE_LONG, raw), scaler) == text
    assert scaled(raw, scaler) == Decimal(text)
    assert unscaled(text, scaler) == raw


def test_unscaled_refuses_digits_beyond_the_resolution():
    with pytest.raises(ProtocolError, match="resolution"):
        unscaled("0.53661", -4)


# -- A-XDR ---------------------------------------------------------------------------------------------
SAMPLES = [
    Data.null(),
    Data(DataType.BOOL, True),
    Data(DataType.BIT_STRING, BitString(12, b"\xab\xc0")),
    Data(DataType.DOUBLE_LONG, -2),
    Data(DataType.DOUBLE_LONG_UNSIGNED, 4_000_000_000),
    Data(DataType.OCTET_STRING, bytes(range(200))),  # long form length 81 C8
    Data(DataType.VISIBLE_STRING, "meter"),
    Data(DataType.UTF8_STRING, "电碳表"),
    Data(DataType.INTEGER, -128),
    Data(DataType.LONG, -32768),
    Data(DataType.UNSIGNED, 255),
    Data(DataType.LONG_UNSIGNED, 65535),
    Data(DataType.LONG64, -(2**63)),
    Data(DataType.LONG64_UNSIGNED, 2**64 - 1),
    Data(DataType.ENUM, 3),
    Data(DataType.FLOAT32, 1.5),
    Data(DataType.FLOAT64, -0.1),
    Data(DataType.DATE_TIME, DateTime(2025, 4, 11, 5, 9, 12, 40, 440)),
    Data(DataType.DATE, Date(2025, 4, 11, 5)),
    Data(DataType.TIME, Time(23, 59, 59)),
    Data(DataType.DATE_TIME_S, DateTimeS(2026, 10, 7, 14, 16, 26)),
    Data(DataType.OI, 0x4000),
    Data(DataType.OAD, Oad(0x0010, 2, 1)),
    Data(DataType.ROAD, Road(Oad(0x5004, 2, 0), (Oad(0x2021, 2, 0), Oad(0x0010, 2, 0)))),
    Data(DataType.OMD, Omd(0x4000, 127, 0)),
    Data(DataType.TI, Ti(1, 15)),
    Data(DataType.TSA, bytes.fromhex("05010020032501")),
    Data(DataType.MAC, b"\x01\x02\x03\x04"),
    Data(DataType.RN, b"\x09" * 16),
    Data(DataType.REGION, Region(0, Data(DataType.UNSIGNED, 1), Data(DataType.UNSIGNED, 9))),
    Data(DataType.SCALER_UNIT, ScalerUnit(-2, 33)),
    Data(DataType.RSD, Rsd.last(1)),
    Data(
        DataType.RSD, Rsd(1, (Oad(0x2021, 2, 0), Data(DataType.DATE_TIME_S, DateTimeS(2026, 1, 1, 0, 0, 0))))
    ),
    Data(DataType.RSD, Rsd(3, ((Oad(0x2021, 2, 0), Data.null(), Data.null(), Data.null()),))),
    Data(
        DataType.RSD,
        Rsd(7, (DateTimeS(2026, 1, 1, 0, 0, 0), DateTimeS(2026, 1, 2, 0, 0, 0), Ti(1, 15), Ms(1))),
    ),
    Data(DataType.RSD, Rsd(10, (3, Ms(3, (bytes.fromhex("05010020032501"),))))),
    Data(DataType.CSD, Road(Oad(0x5004, 2, 0), (Oad(0x0010, 2, 0),))),
    Data(DataType.MS, Ms(5, (Region(2, Data(DataType.UNSIGNED, 1), Data(DataType.UNSIGNED, 3)),))),
    Data(DataType.SID, Sid(0x81000000, b"\x01\x02")),
    Data(DataType.SID_MAC, SidMac(Sid(1, b""), b"\xaa\xbb\xcc\xdd")),
    Data(DataType.COMDCB, Comdcb()),
    Data(DataType.RCSD, (Oad(0x2021, 2, 0), Road(Oad(0x5004, 2, 0), (Oad(0x0010, 2, 0),)))),
    Data.structure([Data.array([Data(DataType.LONG_UNSIGNED, 1)] * 3), Data.null()]),
]


@pytest.mark.parametrize("data", SAMPLES, ids=lambda d: d.type.label)
def test_every_data_type_round_trips(data):
    raw = encode_data(data)
    reader = Reader(raw)
    assert decode_data(reader) == data
    reader.done()


def test_known_encodings():
    assert encode_data(Data(DataType.DOUBLE_LONG_UNSIGNED, 123456)).hex() == "060001e240"
    assert (
        encode_data(Data(DataType.DATE_TIME_S, DateTimeS(2026, 10, 7, 14, 16, 26))).hex()
        == "1c07ea0a070e101a"
    )
    assert encode_data(Data(DataType.OCTET_STRING, bytes(200)))[:3].hex() == "0981c8"


def test_unknown_type_and_bad_length_prefix_are_protocol_errors():
    with pytest.raises(ProtocolError, match="unknown data type"):
        decode_data(Reader(b"\x07\x00"))
    with pytest.raises(ProtocolError, match="length prefix"):
        decode_data(Reader(b"\x09\x85\x00"))
    with pytest.raises(ProtocolError, match="cannot fit"):
        decode_data(Reader(b"\x01\x7f\x00"))


# -- build_request ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expected", "function", "params"),
    [
        (REQ_698_1, "get", {"address": "28417891", "oad": "00100400"}),
        (REQ_698_8, "get", {"address": "000000000000", "oad": "00100200"}),
        (REQ_698_9, "get", {"address": "000000000000", "oad": "20000200"}),
        (REQ_698_10, "get", {"address": "000000000000", "oad": "40000200"}),
        (
            REQ_698_11,
            "get",
            {
                "address": "003708191239",
                "oad": "00000200,00100200,00200200",
                "piid": "0x1E",
                "client": "0x0B",
            },
        ),
        (
            REQ_698_6,
            "proxy",
            {"address": "AAAAAAAAAAAA", "piid": "5", "target": "012503200001", "oad": "20010201"},
        ),
        (REQ_698_6, "proxy", {"address": "AAAAAAAAAAAA", "piid": "5", "inner": REQ_698_6[31:56].hex()}),
        (
            LOGIN_ANSWER_698_5,
            "link_response",
            {
                "address": "111111111111",
                "client": "0xA0",
                "request_time": "2025-04-11 09:12:40",
                "received": "2025-04-11 09:12:39.440",
                "response": "2025-04-11 09:12:39.444",
            },
        ),
    ],
)
def test_build_request_is_byte_identical_to_the_reference(expected, function, params):
    assert build_request(function, params) == expected


def test_set_time_and_carbon_factor_requests():
    time_set = describe(build_request("set_time", {"address": "000000000001", "time": "2026-10-07 14:16:26"}))
    assert (time_set["oad"], time_set["value"]) == ("40000200", "2026-10-07 14:16:26")
    raw = build_request(
        "set_carbon_factor",
        {
            "address": "000000000001",
            "start": "2026-10-07 00:00:00",
            "interval": "15 minute",
            "factors": "0.5366,0.58",
        },
    )
    frame = decode_frame(raw)
    assert frame.apdu.hex().startswith(
        "06010041200200" + "0203" + "1c07ea0a07000000" + "540100" + "0f" + "0102"
    )
    assert describe(raw)["values"] == ["2026-10-07 00:00:00", "15 minute", ["0.5366", "0.5800"]]


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("read", {"address": "01"}, "unknown function"),
        ("get", {"oad": "00100200"}, "missing parameter address"),
        ("get", {"address": "000000000001"}, "missing parameter oad"),
        ("get", {"address": "000000000001", "oad": "0010020"}, "OAD"),
        ("get", {"address": "0000000000G1", "oad": "00100200"}, "not hex"),
        ("get", {"address": "000000000001", "oad": "00100200", "piid": "x"}, "piid"),
        ("get", {"address": "000000000001", "oad": "00100200", "colour": "red"}, "unknown parameter colour"),
        ("set_carbon_factor", {"address": "01", "start": "2026-01-01", "factors": "0.12345"}, "resolution"),
        ("set_carbon_factor", {"address": "01", "start": "yesterday", "factors": "0.5"}, "start"),
        ("set", {"address": "01", "oad": "40000200"}, "missing parameter data"),
        (
            "set",
            {"address": "01", "oad": "40000200", "type": "long-unsigned", "value": "abc"},
            "not an integer",
        ),
    ],
)
def test_build_request_errors_name_the_problem(function, params, message):
    with pytest.raises(ProtocolError, match=message):
        build_request(function, params)


def test_every_encode_function_has_help():
    assert set(ENCODE_FUNCTIONS) >= {
        "get",
        "get_record",
        "set",
        "set_time",
        "set_carbon_factor",
        "action",
        "proxy",
    }
    action = describe(
        build_request(
            "action",
            {"address": "01", "omd": "40007F00", "type": "date-time-s", "value": "2026-01-01 00:00:00"},
        )
    )
    assert (action["apdu"], action["omd"], action["parameter"]) == (
        "ACTION-Request",
        "40007F00",
        "2026-01-01 00:00:00",
    )


def test_datetime_weekday_follows_698_sunday_zero():
    from carbonflow.protocols.dlt698.requests import date_time

    assert date_time(datetime(2025, 4, 11, 9, 12, 40)).weekday == 5  # a Friday
    assert date_time(datetime(2025, 4, 13)).weekday == 0  # a Sunday


def test_carbon_unit_scale_between_declared_units():
    from carbonflow.protocols.dlt698.objects import carbon_unit_scale

    assert carbon_unit_scale("kgCO2", "kgCO2/kWh") == 1
    assert carbon_unit_scale("kgCO2", "gCO2/kWh") == Decimal("0.001")
    assert carbon_unit_scale("tCO2", "kgCO2/MWh") == Decimal("0.000001")
    with pytest.raises(ProtocolError, match="cannot combine"):
        carbon_unit_scale("kgCO2", "furlongs")

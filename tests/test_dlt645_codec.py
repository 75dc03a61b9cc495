"""DL/T 645-2007 codec against the checksum-verified public frames (reference/protocols.md §1.6, §8.2)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
from dlt645_vectors import ALL_FRAMES, BY_NAME, EXPECTED_VALUES, NEG_645_A, VECTORS, h

from carbonflow.protocols import ProtocolError
from carbonflow.protocols.dlt645 import (
    DEFAULT_TABLE,
    ENCODE_FUNCTIONS,
    STANDARD_TABLE,
    DataItem,
    DiTable,
    ErrorWord,
    address_matches,
    build_request,
    describe,
    encode_address,
    error_reply,
    freeze_request,
    parse_frame,
    parse_reply,
    parse_request,
    read_address_reply,
    read_follow_up_request,
    read_reply,
    read_request,
    take_frame,
    time_sync_request,
    write_request,
)
from carbonflow.protocols.dlt645.bcd import decode_field, encode_field, parse_format

PREAMBLE = b"\xfe" * 4


def strip_preamble(frame: bytes) -> bytes:
    return frame.lstrip(b"\xfe")


# -- framing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "frame"), ALL_FRAMES, ids=[name for name, _ in ALL_FRAMES])
def test_every_reference_frame_is_accepted_with_and_without_preamble(name: str, frame: bytes) -> None:
    bare = strip_preamble(frame)
    for variant, preamble in ((bare, 0), (b"\xfe" + bare, 1), (PREAMBLE + bare, 4), (b"\xfe" * 9 + bare, 9)):
        parsed = parse_frame(variant)
        assert parsed.preamble == preamble
        assert parsed.encode() == variant  # re-encoding reproduces the frame byte for byte
        assert describe(variant)["protocol"] == "dlt645"


def test_neg_645_a_bad_checksum_is_rejected() -> None:
    with pytest.raises(ProtocolError, match=r"bad checksum: frame carries 5D, computed 6D"):
        parse_frame(NEG_645_A)
    with pytest.raises(ProtocolError, match="bad checksum"):
        describe(PREAMBLE + NEG_645_A)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:-1] + b"\x17", "end byte must be 16, found 17"),
        (lambda f: f[:-1], "end byte|truncated"),
        (lambda f: f[:9], "truncated frame"),
        (lambda f: f + b"\x16", "length mismatch"),
        (lambda f: f[:7] + b"\x69" + f[8:], "second start byte"),
        (lambda f: b"\x00" + f, "must start with 68"),
        (lambda f: b"", "empty frame"),
        (lambda f: b"\xfe\xfe", "empty frame"),
    ],
)
def test_broken_frames_are_rejected_with_a_one_line_reason(mutate, message: str) -> None:
    frame = h(BY_NAME["645-2"].response)
    with pytest.raises(ProtocolError, match=message) as error:
        parse_frame(mutate(frame))
    assert "\n" not in str(error.value)


def test_data_bytes_travel_plus_33h_and_the_checksum_skips_the_preamble() -> None:
    frame = read_request("000102030425", "00010000", preamble=4)
    assert frame[:4] == PREAMBLE
    body = frame[4:]
    assert body[10:14] == bytes([0x33, 0x33, 0x34, 0x33])  # DI 00010000 low byte first, each +33H
    assert body[-2] == sum(body[:-2]) & 0xFF


# -- requests byte-identical to the references ----------------------------------------------------
READ_VECTORS = [v for v in VECTORS if v.request is not None and v.di is not None]


@pytest.mark.parametrize("vector", READ_VECTORS, ids=[v.name for v in READ_VECTORS])
def test_read_requests_are_built_byte_identical(vector) -> None:
    assert read_request(vector.address, vector.di, preamble=vector.preamble) == h(vector.request)
    params = {"address": vector.address, "di": vector.di, "preamble": str(vector.preamble)}
    assert build_request("read", params) == h(vector.request)


def test_read_address_and_time_sync_requests_are_built_byte_identical() -> None:
    assert build_request("read-address", {"preamble": "3"}) == h(BY_NAME["645-1"].request)
    expected = h(BY_NAME["645-19"].request)
    assert time_sync_request(datetime(2017, 6, 5, 10, 22, 51)) == expected
    assert build_request("time-sync", {"time": "2017-06-05 10:22:51"}) == expected
    assert describe(expected)["time"] == "2017-06-05 10:22:51"


def test_short_address_is_padded_and_aa_is_a_wildcard() -> None:
    assert encode_address("161") == h("61 01 00 00 00 00")
    assert encode_address("AAAAAAAAAAAA") == b"\xaa" * 6
    assert address_matches("AAAAAAAAAAAA", "000102030425")
    assert address_matches("AAAAAA030425", "000102030425")
    assert not address_matches("AAAAAA030426", "000102030425")
    for bad in ("1234567890123", "00010203042X", "", "0A0102030425"):
        with pytest.raises(ProtocolError, match="address"):
            encode_address(bad)


# -- decoding values ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_VALUES))
def test_reference_replies_decode_to_the_published_values(name: str) -> None:
    vector = BY_NAME[name]
    document = describe(h(vector.response))
    key = "values" if isinstance(EXPECTED_VALUES[name], list) else "value"
    assert document[key] == EXPECTED_VALUES[name]
    assert document["di"] == vector.di
    assert document["address"] == vector.address
    assert document["direction"] == "response"
    assert document["control"] == "91"
    assert document["error"] is None
    json.dumps(document)  # the C2 document is JSON-able as is


def test_decoded_values_are_decimals_with_the_meters_own_digits() -> None:
    reply = parse_reply(parse_frame(h(BY_NAME["645-12"].response)))
    values = reply.value(DEFAULT_TABLE)
    assert values == [Decimal("1.29"), Decimal("0.62"), Decimal("0.60"), Decimal("0.03"), Decimal("0.02")]
    assert [str(v) for v in values] == ["1.29", "0.62", "0.60", "0.03", "0.02"]  # scale kept: 0.60, not 0.6


def test_units_and_names_come_from_the_di_table() -> None:
    assert describe(h(BY_NAME["645-2"].response))["unit"] == "kWh"
    assert describe(h(BY_NAME["645-5"].response))["unit"] == "V"
    assert describe(h(BY_NAME["645-7"].response))["unit"] == "kW"
    assert describe(h(BY_NAME["645-10"].response))["unit"] == ""
    assert describe(h(BY_NAME["645-2"].response))["name"] == "forward active energy total"


def test_date_reply_keeps_the_weekday_and_block_with_absent_phases_gives_null() -> None:
    assert describe(h(BY_NAME["645-14"].response))["weekday"] == 1
    assert describe(h(BY_NAME["645-13"].response))["values"] == ["225.6", None, None]


def test_read_address_reply_gives_the_nameplate_address() -> None:
    document = describe(h(BY_NAME["645-1"].response))
    assert document["value"] == "201000000012"
    assert document["function"] == "read address"
    assert parse_reply(parse_frame(h(BY_NAME["645-1"].response))).meter_address == "201000000012"
    assert read_address_reply("201000000012") == h(BY_NAME["645-1"].response)


def test_error_replies_give_code_and_flags() -> None:
    assert describe(h(BY_NAME["645-17"].response))["error"] == {"code": 2, "flags": ["no requested data"]}
    assert describe(h(BY_NAME["645-18"].response))["error"] == {
        "code": 4,
        "flags": ["password error / unauthorised"],
    }
    assert error_reply("201000000012", 0x11, 0x02) == h(BY_NAME["645-17"].response)
    assert ErrorWord(0x43).flags == ["other error", "no requested data", "too many tariffs"]


def test_negative_current_and_power_use_the_sign_bit() -> None:
    power = STANDARD_TABLE["02030000"]
    assert power.encode(Decimal("-0.2512")) == h("12 25 80")  # as dlt645 3.2.0 encodes it (§1.2)
    frame = read_reply("000000000161", "02030000", power.encode("-0.2512"))
    assert describe(frame)["value"] == "-0.2512"
    current = STANDARD_TABLE["02020100"]
    assert describe(read_reply("000000000161", "02020100", current.encode("-4.999")))["value"] == "-4.999"
    assert describe(read_reply("000000000161", "02060000", h("01 85")))["value"] == "-0.501"
    with pytest.raises(ProtocolError, match="unsigned"):
        STANDARD_TABLE["02010100"].encode("-1.0")


def test_unknown_di_reply_is_described_raw_without_guessing() -> None:
    document = describe(read_reply("000000000161", "0E0E0E0E", h("12 34")))
    assert document["name"] is None and document["value"] is None and document["payload"] == "1234"


def test_payload_that_does_not_fit_the_di_format_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="needs 4 bytes, got 3"):
        describe(read_reply("000102030425", "00010000", h("42 06 12")))
    with pytest.raises(ProtocolError, match="non-BCD"):
        describe(read_reply("000102030425", "00010000", h("4A 06 12 00")))
    with pytest.raises(ProtocolError, match="3 members"):
        describe(read_reply("000102030425", "0201FF00", h("56 22 56 22")))


# -- write, follow-up, freeze ---------------------------------------------------------------------
def test_write_request_carries_password_operator_and_value() -> None:
    factor = DEFAULT_TABLE["F0030000"]
    frame = write_request("000102030425", factor, "0.5703", password="02123456", operator="A1B2C3D4")
    request = parse_request(parse_frame(frame))
    assert (request.di, request.password, request.operator) == ("F0030000", "02123456", "A1B2C3D4")
    assert factor.decode(request.payload) == Decimal("0.5703")
    assert parse_frame(frame).data[4:12] == h("02 56 34 12 D4 C3 B2 A1")
    document = describe(frame)
    assert (document["value"], document["unit"], document["vendor"]) == ("0.5703", "kgCO2/kWh", True)
    params = {"address": "000102030425", "di": "F0030000", "value": "0.5703", "password": "02123456",
              "operator": "A1B2C3D4"}  # fmt: skip
    assert build_request("write", params) == frame


def test_write_date_computes_the_weekday() -> None:
    frame = build_request("write", {"address": "201000000012", "di": "04000101", "value": "2016-01-11"})
    assert parse_request(parse_frame(frame)).payload == h("01 11 01 16")  # WW DD MM YY, Monday = 1


def test_follow_up_frames_round_trip() -> None:
    request = read_follow_up_request("201000000012", "0001FF00", 2)
    parsed = parse_request(parse_frame(request))
    assert (parsed.function, parsed.di, parsed.seq) == (0x12, "0001FF00", 2)
    first = read_reply("201000000012", "0001FF00", h("29 01 00 00 62 00 00 00"), follow_up=True)
    assert parse_frame(first).control == 0xB1
    assert describe(first)["values"] == ["1.29", "0.62"] and describe(first)["follow_up"] is True
    last = read_reply("201000000012", "0001FF00", h("03 00 00 00"), seq=2)
    reply = parse_reply(parse_frame(last))
    assert (reply.control, reply.seq, reply.payload) == (0x92, 2, h("03 00 00 00"))


def test_freeze_request() -> None:
    frame = freeze_request()
    assert parse_frame(frame).data == b"\x99" * 4
    document = describe(frame)
    assert document["freeze_now"] and document["broadcast"] and document["function"] == "freeze"
    daily = build_request("freeze", {"address": "000102030425", "when": "99990030"})
    assert describe(daily)["freeze_at"] == "99990030"
    assert parse_frame(daily).data == h("30 00 99 99")  # mm hh DD MM


# -- build_request parameter errors ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("reed", {}, "unknown dlt645 function 'reed'"),
        ("read", {"address": "000102030425"}, "missing parameter di"),
        ("read", {"address": "000102030425", "di": "0001000"}, "DI '0001000'"),
        ("read", {"address": "00010203042G", "di": "00010000"}, "address"),
        ("read", {"address": "1", "di": "00010000", "colour": "red"}, "unknown parameter colour"),
        ("read", {"address": "1", "di": "00010000", "preamble": "x"}, "preamble"),
        ("write", {"address": "1", "di": "F0030000"}, "exactly one of value= or data="),
        ("write", {"address": "1", "di": "0E0E0E0E", "value": "1"}, "not in the DI table"),
        ("write", {"address": "1", "di": "F0030000", "value": "0.57031"}, "more decimals"),
        ("write", {"address": "1", "di": "F0030000", "value": "abc"}, "not a number"),
        ("write", {"address": "1", "di": "F0030000", "value": "1", "password": "12"}, "password"),
        ("time-sync", {"time": "yesterday"}, "does not match"),
        ("freeze", {"when": "9999"}, "freeze time"),
    ],
)
def test_build_request_names_the_bad_parameter(function: str, params: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        build_request(function, params)


def test_every_encode_function_has_help_and_builds() -> None:
    samples = {
        "read": {"address": "1", "di": "00010000"},
        "read-follow-up": {"address": "1", "di": "00010000", "seq": "1"},
        "read-address": {},
        "write": {"address": "1", "di": "0E0E0E0E", "data": "0102"},
        "time-sync": {"time": "2024-02-29 23:59:59"},
        "freeze": {},
    }
    assert set(ENCODE_FUNCTIONS) == set(samples)
    for function, params in samples.items():
        assert describe(build_request(function, params))["direction"] == "request"


# -- data items and BCD fields ---------------------------------------------------------------------
def sample_value(item: DataItem):
    def field_sample(fmt):
        if fmt.kind == "number":
            return Decimal("1" * (fmt.digits - fmt.scale - 1) + "2").scaleb(-fmt.scale)
        if fmt.kind == "clock":
            return datetime(2024, 2, 29, 13, 45, 56)
        return "12" * fmt.size

    member = (
        tuple(field_sample(f) for f in item.fields) if len(item.fields) > 1 else field_sample(item.fields[0])
    )
    return [member] * (item.block or 3) if item.is_block else member


@pytest.mark.parametrize("item", list(DEFAULT_TABLE), ids=lambda item: item.di)
def test_every_table_item_round_trips(item: DataItem) -> None:
    value = sample_value(item)
    payload = item.encode(value)
    assert len(payload) == item.member_size * (len(value) if item.is_block else 1)
    again = item.encode(item.decode(payload))
    assert again == payload


def test_table_has_the_protocols_md_items() -> None:
    for di in ("00000000", "00010000", "00010400", "0001FF00", "00020000", "00030000", "00040000", "00000001",
               "01010000", "0201FF00", "02020300", "02030100", "02040000", "02050000", "02060000", "02800002",
               "04000101", "04000102", "04000401", "04000402", "04000409", "04000501", "00900200", "05060001",
               "05060101"):  # fmt: skip
        assert di in STANDARD_TABLE, di
    assert not any(item.vendor for item in STANDARD_TABLE)
    assert all(DEFAULT_TABLE[di].vendor for di in ("F0010000", "F0020000", "F0030000"))


def test_a_meter_models_vendor_dis_are_added_as_data() -> None:
    model = STANDARD_TABLE.extended(
        DiTable.from_json(
            '{"items": [{"di": "E0000101", "name": "carbon intensity", "format": "XXXX.XX", '
            '"unit": "gCO2/kWh", "vendor": true, "access": "rw"}]}'
        )
    )
    frame = read_reply("1", "E0000101", model["E0000101"].encode("581.20"))
    assert describe(frame, model)["value"] == "581.20"
    assert describe(frame)["value"] is None  # the default table does not know the model's DI
    for bad in ('[{"di": "E0000101"}]', '[{"di": "E0", "name": "x", "format": "XX"}]', "{", "[1]",
                '[{"di": "E0000101", "name": "x", "format": "XQ"}]',
                '[{"di": "E0000101", "name": "x", "format": "XX", "colour": 1}]'):  # fmt: skip
        with pytest.raises(ProtocolError):
            DiTable.from_json(bad)


def test_bcd_fields() -> None:
    energy = parse_format("XXXXXX.XX")[0]
    assert decode_field(energy, h("42 06 12 00")) == Decimal("1206.42")
    assert decode_field(energy, h("FF FF FF FF")) is None
    assert encode_field(energy, None) == h("FF FF FF FF")
    with pytest.raises(ProtocolError, match="not a float"):
        encode_field(energy, 1.5)
    with pytest.raises(ProtocolError, match="does not fit"):
        encode_field(energy, "1000000")
    with pytest.raises(ProtocolError, match="does not fit"):
        encode_field(parse_format("XX.XX")[0], "80.00", signed=True)  # top bit is the sign
    assert encode_field(parse_format("XX.XX")[0], "79.99", signed=True) == h("99 79")
    assert decode_field(parse_format("YYMMDDhhmm")[0], h("30 13 29 02 24")) == "2024-02-29 13:30"
    status = parse_format("HHHH")[0]
    assert decode_field(status, h("0A F0")) == "F00A"
    for bad in ("XXX", "X..X", "XX.", "YYYY", "QQ", ""):
        with pytest.raises(ProtocolError):
            parse_format(bad)


# -- stream splitting (client and simulated meter) -------------------------------------------------
def test_take_frame_skips_preambles_noise_and_waits_for_split_reads() -> None:
    frame = h(BY_NAME["645-2"].response)
    buffer = bytearray(b"\x00\x68\x01" + PREAMBLE + frame[:7])
    assert take_frame(buffer) is None
    buffer.extend(frame[7:] + PREAMBLE + frame)
    assert take_frame(buffer) == frame
    assert take_frame(buffer) == frame
    assert take_frame(buffer) is None and buffer == bytearray()


def test_take_frame_reports_a_bad_checksum_and_is_not_stalled_by_a_stray_68() -> None:
    rejects: list[str] = []
    buffer = bytearray(NEG_645_A)
    assert take_frame(buffer, rejects) is None
    assert rejects and "bad checksum" in rejects[0]
    good = h(BY_NAME["645-5"].response)
    buffer = bytearray(b"\x68\x00\x00\x00\x00\x00\x00\x68\x11\xff" + good)  # a 68 announcing 255 bytes
    assert take_frame(buffer) == good


def test_a_date_that_does_not_exist_is_refused_when_decoded_not_only_when_encoded():
    """All-zero date digits (an unset meter calendar) decode to an error, so decode and encode agree."""
    (date_and_weekday,) = parse_format("YYMMDDWW")
    with pytest.raises(ProtocolError, match="not a valid date"):
        decode_field(date_and_weekday, b"\x00\x00\x00\x00")
    assert decode_field(date_and_weekday, b"\x05\x04\x12\x26") == "2026-12-04"

"""`carbonflow frame` (contract C2) through the CLI: what every protocol shares."""

from __future__ import annotations

import json

import pytest

from carbonflow.cli import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_modbus_request_is_encoded_byte_identically(capsys):
    code, out, _ = cli(
        capsys,
        "frame",
        "encode",
        "--protocol",
        "modbus-tcp",
        "read-holding",
        "unit=17",
        "address=107",
        "count=3",
    )
    assert code == 0 and out == "00 01 00 00 00 06 11 03 00 6B 00 03\n"


def test_hex_may_be_split_into_words_or_joined_with_colons(capsys):
    split = cli(
        capsys,
        "frame",
        "decode",
        "--protocol",
        "modbus-tcp",
        "00",
        "01",
        "00 00 00 09 11 03 06",
        "02:2B:00:00:00:64",
    )
    joined = cli(capsys, "frame", "decode", "--protocol", "modbus-tcp", "000100000009110306022B00000064")
    assert split[0] == joined[0] == 0 and split[1] == joined[1]
    assert json.loads(split[1])["values"] == ["555", "0", "100"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "--protocol", "modbus-tcp", "00 01 zz"], "not hex: unexpected character 'z'"),
        (["decode", "--protocol", "modbus-tcp", "00 01 0"], "odd number of hex digits"),
        (
            ["decode", "--protocol", "modbus-tcp", "00 01 00 00 00 09 11 03 06 02 2B 00 00 00"],
            "truncated frame",
        ),
        (["encode", "--protocol", "modbus-tcp", "read-holding", "unit"], "'unit' is not key=value"),
        (["encode", "--protocol", "modbus-tcp", "read-holding", "unit=1", "unit=2"], "given twice"),
        (
            ["encode", "--protocol", "modbus-tcp", "read-holding", "unit=1", "address=1"],
            "missing parameter 'count'",
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(capsys, argv, message):
    code, out, err = cli(capsys, "frame", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_encode_list_shows_the_functions(capsys):
    code, out, _ = cli(capsys, "frame", "encode", "--protocol", "modbus-tcp", "list")
    assert code == 0 and "read-holding unit=ID address=N count=N" in out

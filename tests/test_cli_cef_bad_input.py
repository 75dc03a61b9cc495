"""Contract C1, bad input: ``carbonflow cef`` exits 2 with exactly one line on stderr naming the
offending record (or file), nothing on stdout, never a traceback."""

from __future__ import annotations

import copy
import json
import math

import pytest
from cli_cef_helpers import IEEE14, by_id, cef, subprocess_cef, write

# ------------------------------------------------------------------------------------------------
# Bad input: exit 2, exactly one line on stderr naming the offending record, nothing on stdout.

BASE = {
    "buses": [{"id": "1"}, {"id": "2"}, {"id": "3"}, {"id": "4"}],
    "generators": [
        {"id": "G1", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0},
        {"id": "G2", "bus": "2", "p_mw": 50.0, "intensity_g_per_kwh": 0.0},
    ],
    "loads": [
        {"id": "L2", "bus": "2", "p_mw": 30.0},
        {"id": "L3", "bus": "3", "p_mw": 70.0},
        {"id": "L4", "bus": "4", "p_mw": 50.0},
    ],
    "branches": [
        {"id": "b12", "from_bus": "1", "to_bus": "2", "p_from_mw": 40.0, "p_to_mw": -40.0},
        {"id": "b14", "from_bus": "1", "to_bus": "4", "p_from_mw": 60.0},
        {"id": "b23", "from_bus": "2", "to_bus": "3", "p_from_mw": 60.0},
        {"id": "b43", "from_bus": "3", "to_bus": "4", "p_from_mw": -10.0, "p_to_mw": 10.0},
    ],
}
RECORD = {"generators": 0, "loads": 1, "branches": 3, "buses": 2}  # which record each case edits


def edited(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def set_field(section, field, value, position=None):
    def change(doc):
        doc[section][RECORD[section] if position is None else position][field] = value

    return change


def del_field(section, field):
    def change(doc):
        del doc[section][RECORD[section]][field]

    return change


def case_id(section):
    return BASE[section][RECORD[section]]["id"]


BAD_INPUTS: list[tuple[str, object, list[str]]] = [
    ("malformed JSON", '{"generators": [', ["malformed JSON"]),
    ("empty file", "", ["malformed JSON"]),
    ("trailing garbage", json.dumps(BASE) + " }", ["malformed JSON"]),
    ("top level is a list", "[]", ["top level"]),
    ("top level is a string", '"snapshot"', ["top level"]),
    ("top level is a number", "3", ["top level"]),
    ("top level is null", "null", ["top level"]),
    ("section is not a list", edited(lambda d: d.update(loads={"L2": 1})), ["loads"]),
    ("record is not an object", edited(lambda d: d["generators"].insert(0, 5)), ["generators[0]"]),
    ("id is not a string", edited(set_field("generators", "id", True)), ["generators[0]", "id"]),
    ("id is null", edited(set_field("loads", "id", None)), ["loads[1]", "id"]),
    ("id is empty", edited(set_field("branches", "id", "")), ["branches[3]", "id"]),
    ("bus id is a list", edited(set_field("loads", "bus", ["2"])), ["L3", "bus"]),
    ("duplicate bus id", edited(lambda d: d["buses"].append({"id": "3"})), ["buses", '"3"', "duplicate"]),
    (
        "duplicate generator id",
        edited(lambda d: d["generators"].append(dict(d["generators"][0]))),
        ['"G1"', "duplicate"],
    ),
    ("duplicate load id", edited(set_field("loads", "id", "L2")), ['"L2"', "duplicate"]),
    ("duplicate branch id", edited(set_field("branches", "id", "b12", position=2)), ['"b12"', "duplicate"]),
    ("branch from == to", edited(set_field("branches", "to_bus", "3")), ["b43", '"3"']),
    ("both ends deliver power", edited(set_field("branches", "p_to_mw", -12.0)), ["b43", "both ends"]),
    (
        "negative generator intensity",
        edited(set_field("generators", "intensity_g_per_kwh", -1.0)),
        ["G1", "intensity_g_per_kwh"],
    ),
    (
        "negative load intensity",
        edited(set_field("loads", "intensity_g_per_kwh", -5.0)),
        ["L3", "intensity_g_per_kwh"],
    ),
    (
        "island with load and no source",
        edited(
            lambda d: (
                d["buses"].append({"id": "9"}),
                d["loads"].append({"id": "L9", "bus": "9", "p_mw": 5.0}),
            )
        ),
        ['"9"', "no source"],
    ),
    (
        "two-bus island with load and no source",
        edited(
            lambda d: (
                d["buses"].extend([{"id": "8"}, {"id": "9"}]),
                d["loads"].append({"id": "L9", "bus": "9", "p_mw": 5.0}),
                d["branches"].append({"id": "b89", "from_bus": "8", "to_bus": "9", "p_from_mw": 5.0}),
            )
        ),
        ['"8"'],
    ),
    (
        "bus with load that receives nothing",
        edited(
            lambda d: (
                d["buses"].append({"id": "5"}),
                d["loads"].append({"id": "L5", "bus": "5", "p_mw": 3.0}),
                d["branches"].append({"id": "b54", "from_bus": "5", "to_bus": "4", "p_from_mw": 2.0}),
            )
        ),
        ['"5"'],
    ),
    (
        "flow cycle without a source",
        edited(
            lambda d: (
                d["buses"].extend([{"id": "7"}, {"id": "8"}, {"id": "9"}]),
                d["branches"].extend(
                    [
                        {"id": "c78", "from_bus": "7", "to_bus": "8", "p_from_mw": 5.0},
                        {"id": "c89", "from_bus": "8", "to_bus": "9", "p_from_mw": 5.0},
                        {"id": "c97", "from_bus": "9", "to_bus": "7", "p_from_mw": 5.0},
                    ]
                ),
            )
        ),
        ['"7"', '"8"', '"9"'],
    ),
    (
        "storage discharging without intensity",
        edited(lambda d: d.update(storage=[{"id": "S1", "bus": "2", "p_mw": -5.0}])),
        ["S1"],
    ),
]
for _section in ("generators", "loads", "branches"):
    BAD_INPUTS.append(
        (f"missing section {_section}", edited(lambda d, s=_section: d.pop(s)), [f'"{_section}"'])
    )
for _section, _fields in (
    ("generators", ("bus", "p_mw", "intensity_g_per_kwh")),
    ("loads", ("bus", "p_mw")),
    ("branches", ("from_bus", "to_bus", "p_from_mw")),
):
    for _field in _fields:
        BAD_INPUTS.append(
            (
                f"missing {_section} {_field}",
                edited(del_field(_section, _field)),
                [case_id(_section), f'"{_field}"'],
            )
        )
    BAD_INPUTS.append(
        (
            f"missing {_section} id",
            edited(del_field(_section, "id")),
            [f"{_section}[{RECORD[_section]}]", '"id"'],
        )
    )
BAD_INPUTS.append(("missing buses id", edited(del_field("buses", "id")), ["buses[2]", '"id"']))
for _section, _field, _target in (
    ("generators", "bus", "G1"),
    ("loads", "bus", "L3"),
    ("branches", "from_bus", "b43"),
    ("branches", "to_bus", "b43"),
):
    BAD_INPUTS.append(
        (
            f"unknown bus id in {_section} {_field}",
            edited(set_field(_section, _field, "99")),
            [_target, '"99"'],
        )
    )
for _literal in (math.nan, math.inf, -math.inf):
    for _section, _field in (
        ("generators", "p_mw"),
        ("generators", "intensity_g_per_kwh"),
        ("loads", "p_mw"),
        ("loads", "intensity_g_per_kwh"),
        ("branches", "p_from_mw"),
        ("branches", "p_to_mw"),
    ):
        # json.dumps writes NaN / Infinity / -Infinity literals.
        BAD_INPUTS.append(
            (
                f"{_literal} in {_section} {_field}",
                edited(set_field(_section, _field, _literal)),
                [case_id(_section), _field],
            )
        )
for _section, _field, _value in (
    ("generators", "p_mw", "100"),
    ("generators", "intensity_g_per_kwh", "800"),
    ("loads", "p_mw", "70 MW"),
    ("branches", "p_from_mw", "-10"),
    ("branches", "p_to_mw", "10"),
    ("generators", "p_mw", True),
    ("loads", "p_mw", None),
    ("branches", "p_from_mw", [1.0]),
):
    BAD_INPUTS.append(
        (
            f"{_value!r} as {_section} {_field}",
            edited(set_field(_section, _field, _value)),
            [case_id(_section), _field],
        )
    )


def assert_one_line_error(code: int, out: str, err: str, fragments: list[str]) -> None:
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("carbonflow cef: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize(
    ("content", "fragments"), [(c, f) for _n, c, f in BAD_INPUTS], ids=[name for name, _c, _f in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_line_naming_the_record(capsys, tmp_path, content, fragments):
    path = write(tmp_path, content, "bad snapshot.json")
    code, out, err = cef(capsys, path)
    assert_one_line_error(code, out, err, fragments)


def test_missing_file_exits_2_naming_the_file(capsys, tmp_path):
    code, out, err = cef(capsys, tmp_path / "missing.json")
    assert_one_line_error(code, out, err, ["missing.json"])


def test_directory_instead_of_file_exits_2(capsys, tmp_path):
    code, out, err = cef(capsys, tmp_path)
    assert_one_line_error(code, out, err, [tmp_path.name])


def test_non_utf8_file_exits_2(capsys, tmp_path):
    path = write(tmp_path, b"\xff\xfe{\x00}\x00", "latin.json")
    code, out, err = cef(capsys, path)
    assert_one_line_error(code, out, err, ["latin.json"])


def test_malformed_json_error_names_the_file_and_position(capsys, tmp_path):
    path = write(tmp_path, '{\n "generators": [\n  {"id": "G1",, }\n ]\n}', "broken.json")
    code, out, err = cef(capsys, path)
    assert_one_line_error(code, out, err, ["broken.json", "line 3"])


def test_number_too_large_for_a_float_exits_2(capsys, tmp_path):
    """A 400-digit integer literal is valid JSON; float() of it raises OverflowError."""
    doc = json.dumps(BASE).replace('"p_mw": 100.0', '"p_mw": 1' + "0" * 400, 1)
    code, out, err = cef(capsys, write(tmp_path, doc))
    assert_one_line_error(code, out, err, ["G1", "p_mw"])


def test_integer_literal_beyond_python_digit_limit_exits_2(capsys, tmp_path):
    """json.loads raises ValueError (not JSONDecodeError) for integers over 4300 digits."""
    doc = json.dumps(BASE).replace('"p_mw": 100.0', '"p_mw": 1' + "0" * 5000, 1)
    code, out, err = cef(capsys, write(tmp_path, doc, "huge.json"))
    assert_one_line_error(code, out, err, ["huge.json"])


def test_deeply_nested_json_exits_2(capsys, tmp_path):
    """json.loads raises RecursionError on very deep nesting."""
    code, out, err = cef(capsys, write(tmp_path, "[" * 100_000 + "]" * 100_000, "deep.json"))
    assert_one_line_error(code, out, err, ["deep.json"])


def test_unknown_option_value_exits_2_without_stdout(capsys):
    code, out, err = cef(capsys, IEEE14, "--losses", "sending")
    assert code == 2 and out == "" and "Traceback" not in err and "--losses" in err


def test_a_branch_delivering_only_noise_is_metered_not_crashed(capsys, tmp_path):
    """Valid input: branch c sends 10 MW and delivers 5e-7 MW (below the 1e-6 MW floor)."""
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0}],
        "loads": [{"id": "L", "bus": "2", "p_mw": 90.0}, {"id": "L3", "bus": "3", "p_mw": 5e-7}],
        "branches": [
            {"id": "b", "from_bus": "1", "to_bus": "2", "p_from_mw": 90.0},
            {"id": "c", "from_bus": "1", "to_bus": "3", "p_from_mw": 10.0, "p_to_mw": -5e-7},
        ],
    }
    code, out, err = cef(capsys, write(tmp_path, doc))
    assert "Traceback" not in err
    assert code == 0, err
    assert by_id(json.loads(out)["buses"])["3"]["intensity_g_per_kwh"] is None


def test_an_id_with_a_lone_surrogate_escape_does_not_crash_the_output(tmp_path):
    """``"\\ud800"`` is a legal JSON escape but not encodable as UTF-8: printing it must not crash."""
    doc = json.dumps(BASE).replace('"id": "G1"', '"id": "G1\\ud800"', 1)
    for output in ("json", "csv", "table"):
        proc = subprocess_cef(write(tmp_path, doc), "--format", output)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2), proc.stderr
        if proc.returncode == 2:
            assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "G1" in proc.stderr


def test_finite_but_huge_powers_give_a_result_or_one_named_error_and_no_warnings(tmp_path):
    """1e306 MW at 1000 g/kWh is finite JSON, and so is its carbon (1e306 t/h), but the MW x g/kWh
    product overflows: stderr must not carry numpy RuntimeWarnings, and the output must not contain
    Infinity/NaN (not JSON)."""
    doc = {
        "generators": [{"id": "G1", "bus": "1", "p_mw": 1e306, "intensity_g_per_kwh": 1000.0}],
        "loads": [{"id": "L1", "bus": "1", "p_mw": 1e306}],
        "branches": [],
    }
    proc = subprocess_cef(write(tmp_path, doc))
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 2:
        assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "G1" in proc.stderr, proc.stderr
    else:
        assert "Infinity" not in proc.stdout and "NaN" not in proc.stdout
        json.loads(proc.stdout)

"""Contract C1: ``carbonflow cef SNAPSHOT.json [--losses receiving|consumer] [--format json|csv|table]``.

Most runs are in-process through ``carbonflow.cli.main`` (stdout/stderr captured by capsys); a few go
through a real interpreter (``python -m carbonflow.cli``) and the installed console script.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from carbonflow.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IEEE14 = EXAMPLES / "ieee14_dc.json"
FOUR_BUS_LOSSY = EXAMPLES / "four_bus_lossy.json"
TOL = 1e-6

C1_BUS = {"id", "flux_mw", "intensity_g_per_kwh", "load_mw", "load_carbon_t_per_h"}
C1_BRANCH = {
    "id",
    "from_bus",
    "to_bus",
    "sending_bus",
    "p_send_mw",
    "p_recv_mw",
    "density_g_per_kwh",
    "carbon_send_t_per_h",
    "carbon_recv_t_per_h",
    "loss_carbon_t_per_h",
}
C1_GENERATOR = {"id", "bus", "carbon_t_per_h"}
C1_TOTALS = {"generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h", "residual_t_per_h"}

# IEEE-14 DC, reference §9.1 T1: bus -> (flux MW, intensity g/kWh, load MW, load carbon t/h).
IEEE14_T1 = {
    "1": (120.000000, 875.000000, 0.0, 0.000000),
    "2": (117.949113, 756.304745, 21.7, 16.411813),
    "3": (94.200000, 275.052990, 94.2, 25.909992),
    "4": (72.771057, 792.757713, 47.8, 37.893819),
    "5": (69.465087, 828.157255, 7.6, 6.293995),
    "6": (43.946111, 694.926175, 11.2, 7.783173),
    "7": (32.421890, 303.731501, 0.0, 0.000000),
    "8": (20.000000, 0.000000, 0.0, 0.000000),
    "9": (43.753889, 430.386396, 29.5, 12.696399),
    "10": (9.000000, 545.794022, 9.0, 4.912146),
    "11": (7.426323, 694.926175, 3.5, 2.432242),
    "12": (7.709872, 694.926175, 6.1, 4.239050),
    "13": (19.219788, 694.926175, 13.5, 9.381503),
    "14": (14.900000, 531.937506, 14.9, 7.925869),
}
IEEE14_GEN_CARBON = {"G1": 105.0, "G2": 21.0, "G3": 0.0, "G4": 9.88, "G5": 0.0}


def cef(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``carbonflow cef ARGS`` in-process; returns (exit code, stdout, stderr)."""
    crash = ""
    try:
        code = main(["cef", *map(str, args)])
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    except Exception:  # what the interpreter would print for an uncaught exception (exit 1)
        code, crash = 1, traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err + crash


def subprocess_cef(*args: str, stdin: str | None = None, command: list[str] | None = None):
    command = command or [sys.executable, "-m", "carbonflow.cli"]
    return subprocess.run(
        [*command, "cef", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def by_id(records):
    return {record["id"]: record for record in records}


def write(tmp_path: Path, content, name: str = "snapshot.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# JSON output.


def test_json_output_carries_every_c1_field_with_json_types(capsys):
    code, out, err = cef(capsys, IEEE14)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert {"buses", "branches", "generators", "totals"} <= set(doc)
    for bus in doc["buses"]:
        assert set(bus) >= C1_BUS, bus
        assert isinstance(bus["id"], str)
        assert all(isinstance(bus[k], float) for k in C1_BUS - {"id"})
    for branch in doc["branches"]:
        assert set(branch) >= C1_BRANCH, branch
        assert all(isinstance(branch[k], str) for k in ("id", "from_bus", "to_bus", "sending_bus"))
        assert all(
            isinstance(branch[k], float) for k in C1_BRANCH - {"id", "from_bus", "to_bus", "sending_bus"}
        )
    for gen in doc["generators"]:
        assert set(gen) >= C1_GENERATOR, gen
        assert isinstance(gen["bus"], str) and isinstance(gen["carbon_t_per_h"], float)
    assert set(doc["totals"]) >= C1_TOTALS
    assert len(doc["buses"]) == 14 and len(doc["branches"]) == 20 and len(doc["generators"]) == 5


def test_json_output_has_the_ieee14_reference_values(capsys):
    code, out, _err = cef(capsys, IEEE14)
    assert code == 0
    doc = json.loads(out)
    buses = by_id(doc["buses"])
    assert set(buses) == set(IEEE14_T1)
    for bus_id, (flux, intensity, load, load_carbon) in IEEE14_T1.items():
        bus = buses[bus_id]
        assert bus["flux_mw"] == pytest.approx(flux, abs=TOL)
        assert bus["intensity_g_per_kwh"] == pytest.approx(intensity, abs=TOL)
        assert bus["load_mw"] == pytest.approx(load, abs=TOL)
        assert bus["load_carbon_t_per_h"] == pytest.approx(load_carbon, abs=TOL)
    for gen_id, carbon in IEEE14_GEN_CARBON.items():
        assert by_id(doc["generators"])[gen_id]["carbon_t_per_h"] == pytest.approx(carbon, abs=TOL)
    branch = by_id(doc["branches"])["7"]  # 4-5 carries reverse flow 5 -> 4
    assert (branch["from_bus"], branch["to_bus"], branch["sending_bus"]) == ("4", "5", "5")
    assert branch["p_send_mw"] == pytest.approx(36.918975, abs=TOL)
    assert branch["density_g_per_kwh"] == pytest.approx(828.157255, abs=TOL)
    assert branch["carbon_send_t_per_h"] == pytest.approx(30.574717, abs=TOL)
    totals = doc["totals"]
    assert totals["generation_carbon_t_per_h"] == pytest.approx(135.88, abs=TOL)
    assert totals["load_carbon_t_per_h"] == pytest.approx(135.88, abs=TOL)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=TOL)
    assert totals["residual_t_per_h"] == pytest.approx(0.0, abs=TOL)


def test_zero_flux_bus_is_written_as_json_null(capsys, tmp_path):
    snapshot = json.loads(FOUR_BUS_LOSSY.read_text())
    snapshot["buses"] = [{"id": b} for b in ("1", "2", "3", "4", "spare")]
    code, out, _err = cef(capsys, write(tmp_path, snapshot))
    assert code == 0
    assert '"intensity_g_per_kwh": null' in out
    assert by_id(json.loads(out)["buses"])["spare"]["intensity_g_per_kwh"] is None
    assert "NaN" not in out


def test_receiving_is_the_default_loss_convention(capsys):
    _code, default, _ = cef(capsys, FOUR_BUS_LOSSY)
    _code, explicit, _ = cef(capsys, FOUR_BUS_LOSSY, "--losses", "receiving")
    assert default == explicit
    totals = json.loads(default)["totals"]
    assert totals["load_carbon_t_per_h"] == pytest.approx(80.0, abs=1e-9)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(1.6, abs=1e-9)


def test_consumer_losses_put_loss_carbon_into_consumer_intensities(capsys):
    code, out, err = cef(capsys, FOUR_BUS_LOSSY, "--losses", "consumer")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    buses = by_id(doc["buses"])
    assert buses["2"]["intensity_g_per_kwh"] == pytest.approx(1120 / 3, abs=1e-9)
    assert buses["3"]["intensity_g_per_kwh"] == pytest.approx(3040 / 7, abs=1e-9)
    assert doc["totals"]["load_carbon_t_per_h"] == pytest.approx(81.6, abs=1e-9)
    assert doc["totals"]["generation_carbon_t_per_h"] == pytest.approx(81.6, abs=1e-9)
    assert doc["totals"]["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=1e-9)


def test_snapshot_can_be_read_from_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(IEEE14.read_text()))
    code, out, _err = cef(capsys, "-")
    assert code == 0
    assert json.loads(out)["totals"]["load_carbon_t_per_h"] == pytest.approx(135.88, abs=TOL)


# ------------------------------------------------------------------------------------------------
# CSV and table output.


def test_csv_output_has_one_row_per_record_and_a_totals_row(capsys):
    code, out, err = cef(capsys, IEEE14, "--format", "csv")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    kinds = [row["kind"] for row in rows]
    assert kinds.count("bus") == 14
    assert kinds.count("branch") == 20
    assert kinds.count("generator") == 5
    assert kinds.count("load") == 11
    assert kinds.count("totals") == 1
    assert len(rows) == 14 + 20 + 5 + 11 + 1
    header = rows[0].keys()
    assert set(header) >= (C1_BUS | C1_BRANCH | C1_GENERATOR | C1_TOTALS)
    buses = {row["id"]: row for row in rows if row["kind"] == "bus"}
    for bus_id, (flux, intensity, _load, load_carbon) in IEEE14_T1.items():
        assert float(buses[bus_id]["intensity_g_per_kwh"]) == pytest.approx(intensity, abs=TOL)
        assert float(buses[bus_id]["flux_mw"]) == pytest.approx(flux, abs=TOL)
        assert float(buses[bus_id]["load_carbon_t_per_h"]) == pytest.approx(load_carbon, abs=TOL)
    loads = [row for row in rows if row["kind"] == "load"]
    assert sum(float(row["carbon_t_per_h"]) for row in loads) == pytest.approx(135.88, abs=TOL)
    (totals,) = [row for row in rows if row["kind"] == "totals"]
    assert float(totals["generation_carbon_t_per_h"]) == pytest.approx(135.88, abs=TOL)
    assert float(totals["residual_t_per_h"]) == pytest.approx(0.0, abs=TOL)


def test_csv_writes_an_undefined_intensity_as_an_empty_cell(capsys, tmp_path):
    snapshot = json.loads(FOUR_BUS_LOSSY.read_text())
    snapshot["buses"] = [{"id": b} for b in ("1", "2", "3", "4", "spare")]
    code, out, _err = cef(capsys, write(tmp_path, snapshot), "--format", "csv")
    assert code == 0
    spare = next(
        row for row in csv.DictReader(io.StringIO(out)) if row["kind"] == "bus" and row["id"] == "spare"
    )
    assert spare["intensity_g_per_kwh"] == ""


def test_table_output_lists_every_bus_with_its_intensity(capsys):
    code, out, err = cef(capsys, IEEE14, "--format", "table")
    assert (code, err) == (0, "")
    bus_section = out.split("\n\n")[0].splitlines()
    rows = {line.split()[0]: line.split() for line in bus_section[3:]}
    assert set(rows) == set(IEEE14_T1)
    for bus_id, (_flux, intensity, _load, _carbon) in IEEE14_T1.items():
        assert float(rows[bus_id][2]) == pytest.approx(intensity, abs=1e-6)
    assert "792.757713" in out and "135.88" in out


def test_table_output_on_the_lossy_four_bus_shows_loss_and_convention(capsys):
    code, out, _err = cef(capsys, FOUR_BUS_LOSSY, "--format", "table")
    assert code == 0
    assert "355.555556" in out and "419.047619" in out
    assert "receiving" in out and "1.6" in out


# ------------------------------------------------------------------------------------------------
# --origin.


def test_origin_adds_power_shares_per_bus_and_carbon_by_source_per_load(capsys):
    code, out, err = cef(capsys, IEEE14, "--origin")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    origin = doc["origin"]
    sources = {s["id"]: s["intensity_g_per_kwh"] for s in origin["sources"]}
    assert sources == {"G1": 875.0, "G2": 525.0, "G3": 0.0, "G4": 520.0, "G5": 0.0}
    intensity = {b["id"]: b["intensity_g_per_kwh"] for b in doc["buses"]}
    for bus in origin["buses"]:
        share = bus["power_share"]
        assert math.fsum(share.values()) == pytest.approx(1.0, abs=1e-9)
        assert math.fsum(v * sources[k] for k, v in share.items()) == pytest.approx(
            intensity[bus["id"]], abs=1e-6
        )
    shares = by_id(origin["buses"])
    assert shares["3"]["power_share"]["G3"] == pytest.approx(0.636943, abs=TOL)  # T3
    assert shares["9"]["power_share"]["G5"] == pytest.approx(0.457102, abs=TOL)
    load_carbon = {x["id"]: x["carbon_t_per_h"] for x in doc["loads"]}
    for load in origin["loads"]:
        assert math.fsum(load["carbon_t_per_h"].values()) == pytest.approx(load_carbon[load["id"]], abs=1e-9)
    assert by_id(origin["loads"])["L3"]["power_mw"]["G3"] == pytest.approx(60.0, abs=TOL)  # T4


def test_origin_under_consumer_losses_still_adds_up_to_load_carbon(capsys):
    code, out, _err = cef(capsys, FOUR_BUS_LOSSY, "--origin", "--losses", "consumer")
    assert code == 0
    doc = json.loads(out)
    load_carbon = {x["id"]: x["carbon_t_per_h"] for x in doc["loads"]}
    for load in doc["origin"]["loads"]:
        assert math.fsum(load["carbon_t_per_h"].values()) == pytest.approx(load_carbon[load["id"]], abs=1e-9)
    assert math.fsum(load_carbon.values()) == pytest.approx(81.6, abs=1e-9)


def test_origin_is_kept_in_csv_and_table_formats(capsys):
    code, out, _err = cef(capsys, IEEE14, "--origin", "--format", "csv")
    assert code == 0
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["kind"] == "origin"]
    l3_from_g3 = [r for r in rows if r["id"] == "L3" and r["source"] == "G3"]
    assert len(l3_from_g3) == 1 and float(l3_from_g3[0]["power_mw"]) == pytest.approx(60.0, abs=TOL)
    code, out, _err = cef(capsys, IEEE14, "--origin", "--format", "table")
    assert code == 0 and "Origin of each load" in out
    line = next(x for x in out.splitlines() if x.split()[:3] == ["L3", "3", "G3"])
    assert float(line.split()[3]) == pytest.approx(60.0, abs=1e-5)


def test_without_origin_flag_there_is_no_origin_section(capsys):
    _code, out, _err = cef(capsys, IEEE14)
    assert "origin" not in json.loads(out)


# ------------------------------------------------------------------------------------------------
# Through a real interpreter and the console script.


def test_module_entry_point_runs_in_a_subprocess():
    proc = subprocess_cef(IEEE14, "--losses", "consumer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert by_id(doc["buses"])["4"]["intensity_g_per_kwh"] == pytest.approx(792.757713, abs=TOL)


def test_console_script_runs_csv_output():
    script = shutil.which("carbonflow", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("console script not installed next to the interpreter")
    proc = subprocess_cef(IEEE14, "--format", "csv", command=[script])
    assert proc.returncode == 0, proc.stderr
    assert len(list(csv.DictReader(io.StringIO(proc.stdout)))) == 51


def test_subprocess_reads_stdin_and_writes_a_table():
    proc = subprocess_cef("-", "--format", "table", stdin=FOUR_BUS_LOSSY.read_text())
    assert proc.returncode == 0, proc.stderr
    assert "355.555556" in proc.stdout


def test_subprocess_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = write(
        tmp_path,
        '{"generators": [{"id": "G1", "bus": "1", "p_mw": NaN, "intensity_g_per_kwh": 1}],'
        ' "loads": [], "branches": []}',
    )
    proc = subprocess_cef(bad)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n")
    assert "G1" in proc.stderr and "p_mw" in proc.stderr


def test_subprocess_missing_file_is_one_line_and_exit_2(tmp_path):
    proc = subprocess_cef(tmp_path / "nope.json")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.count("\n") == 1 and "nope.json" in proc.stderr and "Traceback" not in proc.stderr


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

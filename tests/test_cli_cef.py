"""Contract C1: ``carbonflow cef SNAPSHOT.json [--losses receiving|consumer] [--format json|csv|table]``.

Most runs are in-process through ``carbonflow.cli.main`` (stdout/stderr captured by capsys); a few go
through a real interpreter (``python -m carbonflow.cli``) and the installed console script.  Bad input
(exit 2, one line naming the record): ``test_cli_cef_bad_input.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from cli_cef_helpers import FOUR_BUS_LOSSY, IEEE14, by_id, cef, subprocess_cef, write

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

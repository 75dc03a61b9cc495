"""CGMES 2.4.15 (IEC 61970-552 CIM/XML) export and import: the round trip reproduces the power flow and the
carbon flow, every malformed set is one line naming the CIM object, and the CLI wires both ends."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from carbonflow.cli import main
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.sim.cgmes_export import write_cgmes
from carbonflow.sim.cgmes_import import load_cgmes
from carbonflow.sim.cgmes_import_machines import FUEL_INTENSITY_G_PER_KWH
from carbonflow.sim.cgmes_rdf import CF, CIM, RDF, mrid
from carbonflow.sim.errors import GridImportError
from carbonflow.sim.grid_import import load_grid
from carbonflow.sim.importers import snapshot_dict_from_pandapower
from carbonflow.sim.powerflow import runpp
from carbonflow.sim.reference_grid import reference_grid

warnings.filterwarnings("ignore", module="pandapower")

TABLES = ("bus", "line", "trafo", "gen", "sgen", "load", "shunt", "ext_grid")
MOMENT = datetime(2026, 12, 1, tzinfo=UTC)
RDF_ID, RDF_ABOUT, RDF_RESOURCE = f"{{{RDF}}}ID", f"{{{RDF}}}about", f"{{{RDF}}}resource"


@pytest.fixture(scope="module")
def original():
    net = reference_grid()
    runpp(net)
    return net


@pytest.fixture(scope="module")
def exported(original, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("cgmes") / "reference"
    result = write_cgmes(original, target, model_name="reference", scenario_time=MOMENT)
    assert [p.name for p in result.files] == [f"reference_{p}.xml" for p in ("EQ", "TP", "SSH", "SV")]
    assert result.notes == ["1 storage element(s) not exported (CGMES 2.4.15 mapping not built)"]
    return target


@pytest.fixture(scope="module")
def imported(exported):
    net = load_cgmes(exported).net
    runpp(net)
    return net


def copy_set(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "set"
    shutil.copytree(source, target)
    return target


def edit(path: Path, change) -> None:
    """Apply ``change(root)`` to one profile file of a set."""
    tree = etree.parse(str(path))
    change(tree.getroot())
    tree.write(str(path), xml_declaration=True, encoding="utf-8")


def drop_object(folder: Path, object_id: str) -> None:
    """Remove an object from every profile, and every object that points at it (as a tool would)."""
    for path in folder.glob("*.xml"):

        def change(root, path=path):
            for element in list(root):
                own = element.get(RDF_ID) or element.get(RDF_ABOUT) or ""
                pointing = any(child.get(RDF_RESOURCE) == f"#_{object_id}" for child in element)
                if own.lstrip("#_") == object_id or (pointing and "Sv" in element.tag):
                    root.remove(element)

        edit(path, change)


def first(root, cim_class: str):
    return root.find(f"{{{CIM}}}{cim_class}")


# -- round trip ------------------------------------------------------------------------------------


def test_round_trip_keeps_every_element_count(original, imported):
    for table in TABLES:
        assert len(imported[table]) == len(original[table]), table


def test_round_trip_reproduces_bus_voltages_and_branch_flows(original, imported):
    assert imported.converged
    assert np.max(np.abs(imported.res_bus.vm_pu.values - original.res_bus.vm_pu.values)) < 1e-4
    assert np.max(np.abs(imported.res_bus.va_degree.values - original.res_bus.va_degree.values)) < 1e-3
    for table, column in (
        ("line", "p_from_mw"),
        ("line", "p_to_mw"),
        ("trafo", "p_hv_mw"),
        ("trafo", "p_lv_mw"),
    ):
        assert (
            np.max(np.abs(imported[f"res_{table}"][column].values - original[f"res_{table}"][column].values))
            < 0.1
        )
    assert imported.res_gen.p_mw.sum() == pytest.approx(original.res_gen.p_mw.sum(), abs=0.1)


def test_round_trip_keeps_carbonflow_metadata(original, imported):
    assert list(imported.bus.name) == list(original.bus.name)
    assert list(imported.bus.region) == list(original.bus.region)
    assert list(imported.bus.kind) == list(original.bus.kind)
    assert list(imported.gen.name) == list(original.gen.name)
    assert list(imported.gen.fuel) == list(original.gen.fuel)
    assert list(imported.gen.intensity_g_per_kwh) == list(original.gen.intensity_g_per_kwh)
    assert list(imported.sgen.fuel) == list(original.sgen.fuel)
    assert list(imported.load.industry) == list(original.load.industry)
    rating_ka = original.line.max_i_ka * original.line.parallel  # one equivalent line per row
    assert np.allclose(imported.line.max_i_ka.values, rating_ka.values)
    assert imported.gen.slack.sum() == 1 and imported.gen.name[imported.gen.slack].item() == "G1-1"


def test_round_trip_gives_the_same_carbon_flow(original, imported):
    def result(net):
        intensities = {f"gen:{i}": v for i, v in net.gen.intensity_g_per_kwh.items()}
        intensities |= {f"sgen:{i}": v for i, v in net.sgen.intensity_g_per_kwh.items()}
        document = snapshot_dict_from_pandapower(net, intensities)
        document.pop("storage", None)  # the idle battery (0 MW) is not in the set
        return solve(snapshot_from_dict(document))

    before, after = result(original), result(imported)
    assert list(after.snapshot.bus_ids) == list(before.snapshot.bus_ids)
    both = np.isfinite(before.bus_intensity_g_per_kwh)
    assert np.array_equal(both, np.isfinite(after.bus_intensity_g_per_kwh))
    assert np.allclose(after.bus_intensity_g_per_kwh[both], before.bus_intensity_g_per_kwh[both], atol=1e-6)


def test_mrids_are_uuid5_of_element_ids_and_files_are_reproducible(original, exported, tmp_path):
    again = write_cgmes(original, tmp_path / "again.zip", model_name="reference", scenario_time=MOMENT)
    with zipfile.ZipFile(again.files[0]) as archive:
        for profile in ("EQ", "TP", "SSH", "SV"):
            name = f"reference_{profile}.xml"
            assert archive.read(name) == (exported / name).read_bytes()
    eq = etree.parse(str(exported / "reference_EQ.xml")).getroot()
    ids = {element.get(RDF_ID) for element in eq.iter(f"{{{CIM}}}ACLineSegment")}
    assert f"_{mrid('reference', 'line', 0)}" in ids


def test_profiles_carry_cgmes_classes_units_and_signs(exported, original):
    eq = etree.parse(str(exported / "reference_EQ.xml")).getroot()
    counts = {
        c: len(eq.findall(f"{{{CIM}}}{c}")) for c in ("ACLineSegment", "PowerTransformer", "BusbarSection")
    }
    assert counts == {"ACLineSegment": 95, "PowerTransformer": 42, "BusbarSection": 104}
    assert len(eq.findall(f"{{{CIM}}}PowerTransformerEnd")) == 84
    units = {
        c: len(eq.findall(f"{{{CIM}}}{c}Unit"))
        for c in ("ThermalGenerating", "HydroGenerating", "WindGenerating", "SolarGenerating")
    }
    assert units == {"ThermalGenerating": 7, "HydroGenerating": 1, "WindGenerating": 2, "SolarGenerating": 2}
    segment = first(eq, "ACLineSegment")
    line = original.line.loc[0]
    r_ohm = float(segment.find(f"{{{CIM}}}ACLineSegment.r").text)
    assert r_ohm == pytest.approx(line.r_ohm_per_km * line.length_km / line.parallel)
    ssh = etree.parse(str(exported / "reference_SSH.xml")).getroot()
    machine = first(ssh, "SynchronousMachine")
    assert float(machine.find(f"{{{CIM}}}RotatingMachine.p").text) < 0  # load sign: generation is negative
    sv = etree.parse(str(exported / "reference_SV.xml")).getroot()
    assert len(sv.findall(f"{{{CIM}}}SvVoltage")) == 104
    header = etree.parse(str(exported / "reference_TP.xml")).getroot()[0]
    assert "Topology" in header.find("{http://iec.ch/TC57/61970-552/ModelDescription/1#}Model.profile").text


def test_zip_directory_and_sim_grid_option_all_load(exported, tmp_path, imported):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(exported.glob("*.xml")):
            handle.write(path, path.name)
    from_zip = load_grid(archive)
    assert list(from_zip.bus.name) == list(imported.bus.name)
    assert set(from_zip.bus.kind) == {"plant", "substation", "user"}


def test_set_without_tp_builds_buses_from_connectivity_nodes(exported, tmp_path, original):
    folder = copy_set(exported, tmp_path)
    (folder / "reference_TP.xml").unlink()
    net = load_cgmes(folder).net
    runpp(net)
    assert len(net.bus) == 104
    assert np.max(np.abs(net.res_bus.vm_pu.values - original.res_bus.vm_pu.values)) < 1e-4


def test_without_carbonflow_extension_fuels_come_from_unit_classes(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def strip(root):
        for element in root.iter():
            for child in list(element):
                if isinstance(child.tag, str) and child.tag.startswith(f"{{{CF}}}"):
                    element.remove(child)

    edit(folder / "reference_EQ.xml", strip)
    net = load_cgmes(folder, default_intensity=800.0).net
    by_name = dict(
        zip(net.gen.name, zip(net.gen.fuel, net.gen.intensity_g_per_kwh, strict=True), strict=True)
    )
    assert by_name["G1-1"] == ("coal", 800.0)
    assert by_name["G5-1"] == ("gas", FUEL_INTENSITY_G_PER_KWH["gas"])
    assert by_name["G6-1"] == ("water", 0.0)
    assert set(net.sgen.fuel) == {"wind", "solar"} and set(net.sgen.intensity_g_per_kwh) == {0.0}
    assert "kind" not in net.bus  # derived later (grid_import.with_defaults)


def test_slack_is_the_largest_machine_without_reference_priority(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def no_priority(root):
        for element in root.iter(f"{{{CIM}}}SynchronousMachine.referencePriority"):
            element.text = "0"

    edit(folder / "reference_SSH.xml", no_priority)
    net = load_cgmes(folder).net
    assert net.gen.name[net.gen.slack].tolist() == ["G1-1"]  # 1000 MW, the largest unit


@pytest.mark.parametrize("case", ["case1354pegase", "example_simple", "mv_oberrhein"])
def test_pandapower_test_case_round_trips(case, tmp_path):
    """case1354pegase: shunts, ratio taps, fixed phase shifts, an external grid; example_simple: bus-bus
    switches (one TopologicalNode for two buses) and an open line switch; mv_oberrhein: two feeding
    external grids in two islands (one slack each) and open line ends."""
    import pandapower.networks as pn

    net = getattr(pn, case)()
    runpp(net)
    write_cgmes(net, tmp_path / f"{case}.zip", model_name=case)
    back = load_cgmes(tmp_path / f"{case}.zip").net
    runpp(back)
    for table in TABLES:
        assert len(back[table]) == len(net[table]), table
    bus_switches = net.switch[net.switch.et == "b"]
    open_ends = net.switch[(net.switch.et != "b") & ~net.switch.closed.astype(bool)]
    assert len(back.switch) == len(bus_switches) + len(open_ends)  # closed line switches change nothing
    assert back.res_bus.vm_pu.notna().all()
    assert np.max(np.abs(back.res_bus.vm_pu.values - net.res_bus.vm_pu.values)) < 1e-4
    assert np.max(np.abs(back.res_line.p_from_mw.values - net.res_line.p_from_mw.values)) < 0.1
    assert np.max(np.abs(back.res_trafo.p_hv_mw.values - net.res_trafo.p_hv_mw.values)) < 0.1


# -- malformed sets: one line naming the object -------------------------------------------------


def test_missing_profile_is_named(exported, tmp_path):
    folder = copy_set(exported, tmp_path)
    (folder / "reference_SSH.xml").unlink()
    with pytest.raises(GridImportError, match=r"no SSH profile in the set \(found: EQ, SV, TP\)"):
        load_cgmes(folder)


def test_missing_terminal_names_the_equipment(exported, tmp_path):
    folder = copy_set(exported, tmp_path)
    line_id = mrid("reference", "line", 3)
    drop_object(folder, mrid("reference", line_id, "Terminal", 2))
    with pytest.raises(GridImportError, match=rf'ACLineSegment {line_id} "L004": 1 terminal\(s\), needs 2'):
        load_cgmes(folder)


def test_unknown_base_voltage_names_the_base_voltage(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def zero(root):
        first(root, "BaseVoltage").find(f"{{{CIM}}}BaseVoltage.nominalVoltage").text = "0"

    edit(folder / "reference_EQ.xml", zero)
    with pytest.raises(GridImportError, match=r'BaseVoltage .* "500 kV": unknown base voltage'):
        load_cgmes(folder)


def test_node_without_base_voltage_is_named(exported, tmp_path):
    folder = copy_set(exported, tmp_path)
    node = mrid("reference", "TopologicalNode", "S001")
    level = mrid("reference", "VoltageLevel", mrid("reference", "Substation", "S001"), 500.0)

    def unlink(root):
        for element in root:
            if element.get(RDF_ID) in (f"_{node}", f"_{level}"):
                for child in list(element):
                    if child.tag.endswith("BaseVoltage"):
                        element.remove(child)

    edit(folder / "reference_TP.xml", unlink)
    edit(folder / "reference_EQ.xml", unlink)
    with pytest.raises(GridImportError, match=rf'TopologicalNode {node} "S001": unknown base voltage'):
        load_cgmes(folder)


def test_dangling_reference_names_both_ends(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def dangle(root):
        first(root, "Terminal").find(f"{{{CIM}}}Terminal.ConductingEquipment").set(RDF_RESOURCE, "#_nowhere")

    edit(folder / "reference_EQ.xml", dangle)
    with pytest.raises(
        GridImportError, match=r"Terminal .*: Terminal.ConductingEquipment refers to nowhere, which is not"
    ):
        load_cgmes(folder)


def test_object_described_but_never_defined_is_named(exported, tmp_path):
    folder = copy_set(exported, tmp_path)
    terminal = mrid("reference", mrid("reference", "line", 0), "Terminal", 1)

    def remove(root):
        for element in list(root):
            if element.get(RDF_ID) == f"_{terminal}":
                root.remove(element)

    edit(folder / "reference_EQ.xml", remove)
    with pytest.raises(
        GridImportError, match=rf"{terminal}: described with rdf:about but defined in no file"
    ):
        load_cgmes(folder)


def test_broken_xml_and_empty_folder_are_one_line(exported, tmp_path):
    folder = copy_set(exported, tmp_path)
    path = folder / "reference_SV.xml"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(GridImportError, match=r"reference_SV\.xml: not well-formed XML"):
        load_cgmes(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GridImportError, match="no CIM/XML files"):
        load_cgmes(empty)


def test_no_voltage_control_means_no_slack(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def off(root):
        for element in root.iter(f"{{{CIM}}}RegulatingCondEq.controlEnabled"):
            element.text = "false"

    edit(folder / "reference_SSH.xml", off)
    with pytest.raises(GridImportError, match="no slack"):
        load_cgmes(folder)


# -- command line ----------------------------------------------------------------------------------


def test_cli_exports_and_imports_a_set(tmp_path, capsys):
    target = tmp_path / "grid.zip"
    assert main(["sim", "grid", "--export-cgmes", str(target)]) == 0
    captured = capsys.readouterr()
    assert "104 nodes" in captured.out and "storage" in captured.err
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == [f"reference_{p}.xml" for p in ("EQ", "SSH", "SV", "TP")]
    snapshot = tmp_path / "snapshot.json"
    intensities = tmp_path / "g.json"
    intensities.write_text('{"gen:1": 100.0}', encoding="utf-8")
    assert main(["import", "cgmes", str(target), "-o", str(snapshot), "--intensities", str(intensities)]) == 0
    generators = {g["id"]: g for g in json.loads(snapshot.read_text(encoding="utf-8"))["generators"]}
    assert generators["gen:0"]["intensity_g_per_kwh"] == 790.0  # G1-1, from the set (cf: extension)
    assert generators["gen:1"]["intensity_g_per_kwh"] == 100.0  # --intensities wins
    assert main(["cef", str(snapshot), "--format", "json"]) == 0
    assert '"totals"' in capsys.readouterr().out
    out = tmp_path / "run"
    assert (
        main(
            [
                "sim",
                "run",
                "--grid",
                str(target),
                "--hours",
                "1",
                "--interval",
                "900",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "4 intervals" in capsys.readouterr().out


def test_cli_bad_set_is_one_line_and_exit_2(exported, tmp_path, capsys):
    folder = copy_set(exported, tmp_path)
    (folder / "reference_EQ.xml").unlink()
    assert main(["import", "cgmes", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("carbonflow import: error:") and "no EQ profile" in err
    assert main(["sim", "grid", "--grid", str(tmp_path / "missing.zip")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_out_of_service_elements_come_back_out_of_service(tmp_path):
    net = reference_grid()
    net.line.loc[5, "in_service"] = False
    net.load.loc[3, "in_service"] = False
    net.sgen.loc[0, "in_service"] = False
    runpp(net)
    write_cgmes(net, tmp_path / "set", model_name="outage")
    back = load_cgmes(tmp_path / "set").net
    runpp(back)
    for table in ("line", "load", "sgen", "trafo", "gen"):
        assert list(back[table].in_service) == list(net[table].in_service), table
    assert np.max(np.abs(back.res_bus.vm_pu.values - net.res_bus.vm_pu.values)) < 1e-4
    assert np.max(np.abs(back.res_line.p_from_mw.values - net.res_line.p_from_mw.values)) < 0.1


def test_a_value_that_is_not_a_number_is_named(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def spoil(root):
        first(root, "ACLineSegment").find(f"{{{CIM}}}ACLineSegment.x").text = "NaN"

    edit(folder / "reference_EQ.xml", spoil)
    with pytest.raises(GridImportError, match=r'ACLineSegment .* "L001": ACLineSegment.x is not a number'):
        load_cgmes(folder)


def test_pandapower_cim_converter_reads_the_export_to_the_same_power_flow(original, exported):
    """An independent reader (pandapower's own CGMES converter) gets the same grid from the files:
    the profiles, units and signs mean to it what they mean to carbonflow."""
    import logging

    from pandapower.converter.cim.cim2pp.from_cim import from_cim

    logging.disable(logging.WARNING)
    try:
        net = from_cim(file_list=sorted(str(p) for p in exported.glob("*.xml")), cgmes_version="2.4.15")
    finally:
        logging.disable(logging.NOTSET)
    for table in ("bus", "line", "trafo", "gen", "sgen", "load"):
        assert len(net[table]) == len(original[table]), table
    runpp(net)
    vm_pu = dict(zip(original.bus.name, original.res_bus.vm_pu, strict=True))
    va_degree = dict(zip(original.bus.name, original.res_bus.va_degree, strict=True))
    for name, vm, va in zip(net.bus.name, net.res_bus.vm_pu, net.res_bus.va_degree, strict=True):
        assert vm == pytest.approx(vm_pu[name], abs=1e-6) and va == pytest.approx(va_degree[name], abs=1e-4)
    p_from_mw = dict(zip(original.line.name, original.res_line.p_from_mw, strict=True))
    for name, p_mw in zip(net.line.name, net.res_line.p_from_mw, strict=True):
        assert p_mw == pytest.approx(p_from_mw[name], abs=1e-3)


def test_a_priority_that_is_not_a_whole_number_is_named(exported, tmp_path):
    folder = copy_set(exported, tmp_path)

    def spoil(root):
        first(root, "SynchronousMachine").find(f"{{{CIM}}}SynchronousMachine.referencePriority").text = "inf"

    edit(folder / "reference_SSH.xml", spoil)
    with pytest.raises(
        GridImportError, match=r'SynchronousMachine .* "G1-1": .*referencePriority is not a whole'
    ):
        load_cgmes(folder)

"""The 104-node reference grid: counts, regions, metadata that survives export, import of other grids."""

from __future__ import annotations

import json
import warnings

import pandapower as pp
import pytest

from carbonflow.sim.errors import GridImportError
from carbonflow.sim.grid_import import load_grid
from carbonflow.sim.powerflow import runpp
from carbonflow.sim.reference_grid import grid_summary, reference_grid

warnings.filterwarnings("ignore", module="pandapower")


@pytest.fixture(scope="module")
def net():
    return reference_grid()


def test_grid_has_10_plants_80_substations_14_users(net):
    summary = grid_summary(net)
    assert summary["nodes"] == len(net.bus) == 104
    assert summary["by_kind"] == {"plant": 10, "substation": 80, "user": 14}
    assert net.bus.name.is_unique


def test_substations_span_500_to_35_kv(net):
    levels = net.bus[net.bus.kind == "substation"].vn_kv.value_counts().to_dict()
    assert levels == {500.0: 8, 220.0: 20, 110.0: 28, 35.0: 24}


def test_every_bus_has_a_county_region_in_two_cities_and_four_counties(net):
    regions = net.bus.region
    assert regions.notna().all()
    assert all(len(path.split("/")) == 3 for path in regions)
    assert len({path.rsplit("/", 1)[0] for path in regions}) >= 2
    assert len(set(regions)) >= 4


def test_users_have_industries_and_one_pv_and_one_battery(net):
    users = net.bus[net.bus.kind == "user"]
    assert users.industry.str.len().gt(0).all()
    assert {"steel", "chemicals", "data_centre", "commercial", "residential"} <= set(users.industry)
    user_buses = set(users.index)
    assert any(b in user_buses for b in net.sgen[net.sgen.profile == "solar"].bus)
    assert len(net.storage) == 1 and net.storage.bus.iloc[0] in user_buses


def test_plants_have_units_with_intensity_and_source_note(net):
    units = [*net.gen.itertuples(), *net.sgen[net.sgen.plant.str.startswith("P")].itertuples()]
    plants = {u.plant for u in units}
    assert len(plants) == 10
    assert sum(1 for u in units if u.plant == "P03") == 2
    assert all(u.intensity_source for u in units)
    coal = sorted(u.intensity_g_per_kwh for u in units if u.fuel == "coal")
    assert coal[0] < 800 < coal[-1] <= 960
    assert {u.fuel for u in units} >= {"coal", "gas", "water", "wind", "solar"}


def test_base_case_solves_with_plausible_voltages(net):
    solved = reference_grid()
    runpp(solved)
    assert solved.converged
    assert solved.res_bus.vm_pu.min() > 0.92 and solved.res_bus.vm_pu.max() < 1.06


def test_metadata_survives_pandapower_json(tmp_path, net):
    path = tmp_path / "grid.json"
    pp.to_json(net, str(path))
    again = pp.from_json(str(path))
    assert list(again.bus.kind) == list(net.bus.kind)
    assert list(again.bus.region) == list(net.bus.region)
    assert list(again.gen.intensity_g_per_kwh) == list(net.gen.intensity_g_per_kwh)
    assert len(again.cf_region) == len(net.cf_region)


def test_sim_grid_command_prints_counts_and_exports(tmp_path):
    import argparse
    import io

    from carbonflow.commands import sim

    parser = argparse.ArgumentParser()
    sim.register(parser.add_subparsers())
    out = io.StringIO()
    target = tmp_path / "grid.cf.json"
    args = parser.parse_args(
        ["sim", "grid", "--export", str(target), "--device-map", str(tmp_path / "map.json")]
    )
    assert args.run(args, out) == 0
    text = out.getvalue()
    assert "104 nodes" in text and "substation" in text and "AH/HF" in text
    document = json.loads(target.read_text(encoding="utf-8"))
    assert len(document["buses"]) == 104
    assert json.loads((tmp_path / "map.json").read_text(encoding="utf-8"))["devices"]


MATPOWER_CASE = """function mpc = tiny
mpc.version = '2';
mpc.baseMVA = 100;
mpc.bus = [
 1 3 0 0 0 0 1 1 0 110 1 1.1 0.9;
 2 1 40 10 0 0 1 1 0 110 2 1.1 0.9;
 3 1 30 8 0 0 1 1 0 110 2 1.1 0.9;
];
mpc.gen = [
 1 0 0 100 -100 1.02 100 1 200 0;
 3 20 0 50 -50 1.0 100 1 60 0;
];
mpc.branch = [
 1 2 0.01 0.05 0.02 0 0 0 0 0 1 -360 360;
 2 3 0.01 0.05 0.02 0 0 0 0 0 1 -360 360;
 1 3 0.02 0.08 0.02 0 0 0 0 0 1 -360 360;
];
"""


def test_matpower_case_imports_with_default_kinds_and_regions(tmp_path):
    path = tmp_path / "tiny.m"
    path.write_text(MATPOWER_CASE, encoding="utf-8")
    net = load_grid(path)
    assert list(net.bus.name) == ["1", "2", "3"]
    assert list(net.bus.kind) == ["plant", "user", "plant"]
    assert list(net.bus.region) == ["XX/C1/Z1", "XX/C1/Z2", "XX/C1/Z2"]
    assert set(net.load.industry) == {"mixed_urban"}


def test_unknown_grid_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "grid.txt"
    bad.write_text("nonsense", encoding="utf-8")
    with pytest.raises(GridImportError, match="unknown grid format"):
        load_grid(bad)
    broken = tmp_path / "grid.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(GridImportError, match="not a pandapower network"):
        load_grid(broken)

"""Model import: MATPOWER case text and solved pandapower networks become snapshots.

The strongest checks are the nodal balance of every imported snapshot (it fails on any sign slip,
forgotten shunt or misplaced loss) and the IEEE-14 DC reference of cef-model.md §9.1.
"""

from __future__ import annotations

import math

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from carbonflow.engine import Snapshot, solve
from carbonflow.sim.importers import (
    GridImportError,
    load_pandapower_json,
    snapshot_dict_from_pandapower,
    snapshot_from_pandapower,
)
from carbonflow.sim.matpower import (
    NO_RESULTS,
    parse_matpower_case,
    snapshot_dict_from_ppc,
    snapshot_from_ppc,
    solve_ppc,
)

# MATPOWER case14 (data/case14.m, IEEE 14-bus test case), tables only.
CASE14 = """function mpc = case14
%CASE14    Power flow data for IEEE 14 bus test case.
mpc.version = '2';
mpc.baseMVA = 100;
%% bus data
%	bus_i	type	Pd	Qd	Gs	Bs	area	Vm	Va	baseKV	zone	Vmax	Vmin
mpc.bus = [
	1	3	0	0	0	0	1	1.06	0	0	1	1.06	0.94;
	2	2	21.7	12.7	0	0	1	1.045	-4.98	0	1	1.06	0.94;
	3	2	94.2	19	0	0	1	1.01	-12.72	0	1	1.06	0.94;
	4	1	47.8	-3.9	0	0	1	1.019	-10.33	0	1	1.06	0.94;
	5	1	7.6	1.6	0	0	1	1.02	-8.78	0	1	1.06	0.94;
	6	2	11.2	7.5	0	0	1	1.07	-14.22	0	1	1.06	0.94;
	7	1	0	0	0	0	1	1.062	-13.37	0	1	1.06	0.94;
	8	2	0	0	0	0	1	1.09	-13.36	0	1	1.06	0.94;
	9	1	29.5	16.6	0	19	1	1.056	-14.94	0	1	1.06	0.94;
	10	1	9	5.8	0	0	1	1.051	-15.1	0	1	1.06	0.94;
	11	1	3.5	1.8	0	0	1	1.057	-14.79	0	1	1.06	0.94;
	12	1	6.1	1.6	0	0	1	1.055	-15.07	0	1	1.06	0.94;
	13	1	13.5	5.8	0	0	1	1.05	-15.16	0	1	1.06	0.94;
	14	1	14.9	5	0	0	1	1.036	-16.04	0	1	1.06	0.94;
];
%% generator data
mpc.gen = [
	1	232.4	-16.9	10	0	1.06	100	1	332.4	0	0	0	0	0	0	0	0	0	0	0	0;
	2	40	42.4	50	-40	1.045	100	1	140	0	0	0	0	0	0	0	0	0	0	0	0;
	3	0	23.4	40	0	1.01	100	1	100	0	0	0	0	0	0	0	0	0	0	0	0;
	6	0	12.2	24	-6	1.07	100	1	100	0	0	0	0	0	0	0	0	0	0	0	0;
	8	0	17.4	24	-6	1.09	100	1	100	0	0	0	0	0	0	0	0	0	0	0	0;
];
%% branch data
mpc.branch = [
	1	2	0.01938	0.05917	0.0528	0	0	0	0	0	1	-360	360;
	1	5	0.05403	0.22304	0.0492	0	0	0	0	0	1	-360	360;
	2	3	0.04699	0.19797	0.0438	0	0	0	0	0	1	-360	360;
	2	4	0.05811	0.17632	0.034	0	0	0	0	0	1	-360	360;
	2	5	0.05695	0.17388	0.0346	0	0	0	0	0	1	-360	360;
	3	4	0.06701	0.17103	0.0128	0	0	0	0	0	1	-360	360;
	4	5	0.01335	0.04211	0	0	0	0	0	0	1	-360	360;
	4	7	0	0.20912	0	0	0	0	0.978	0	1	-360	360;
	4	9	0	0.55618	0	0	0	0	0.969	0	1	-360	360;
	5	6	0	0.25202	0	0	0	0	0.932	0	1	-360	360;
	6	11	0.09498	0.1989	0	0	0	0	0	0	1	-360	360;
	6	12	0.12291	0.25581	0	0	0	0	0	0	1	-360	360;
	6	13	0.06615	0.13027	0	0	0	0	0	0	1	-360	360;
	7	8	0	0.17615	0	0	0	0	0	0	1	-360	360;
	7	9	0	0.11001	0	0	0	0	0	0	1	-360	360;
	9	10	0.03181	0.0845	0	0	0	0	0	0	1	-360	360;
	9	14	0.12711	0.27038	0	0	0	0	0	0	1	-360	360;
	10	11	0.08205	0.19207	0	0	0	0	0	0	1	-360	360;
	12	13	0.22092	0.19988	0	0	0	0	0	0	1	-360	360;
	13	14	0.17093	0.34802	0	0	0	0	0	0	1	-360	360;
];
%% generator cost data
mpc.gencost = [
	2	0	0	3	0.0430292599	20	0;
	2	0	0	3	0.25	20	0;
	2	0	0	3	0.01	40	0;
	2	0	0	3	0.01	40	0;
	2	0	0	3	0.01	40	0;
];
%% bus names
mpc.bus_name = {
	'Bus 1     HV';
	'Bus 2 % not a comment; nor a row';
};
"""

# cef-model.md §9.1: dispatch, intensities, T2 (line, from, to, PF MW) and T1 nodal intensities.
ZHOU_PG = [120.0, 40.0, 60.0, 19.0, 20.0]
ZHOU_EG = {"G1": 875.0, "G2": 525.0, "G3": 0.0, "G4": 520.0, "G5": 0.0}
T2 = [
    (1, 1, 2, 77.949113), (2, 1, 5, 42.050887), (3, 2, 3, 32.982832), (4, 2, 4, 35.852081),
    (5, 2, 5, 27.414199), (6, 3, 4, -1.217168), (7, 4, 5, -36.918975), (8, 4, 7, 12.421890),
    (9, 4, 9, 11.331998), (10, 5, 6, 24.946111), (11, 6, 11, 7.426323), (12, 6, 12, 7.709872),
    (13, 6, 13, 17.609916), (14, 7, 8, -20.000000), (15, 7, 9, 32.421890), (16, 9, 10, 5.073677),
    (17, 9, 14, 9.180212), (18, 10, 11, -3.926323), (19, 12, 13, 1.609872), (20, 13, 14, 5.719788),
]  # fmt: skip
T1 = {
    "1": 875.000000, "2": 756.304745, "3": 275.052990, "4": 792.757713, "5": 828.157255,
    "6": 694.926175, "7": 303.731501, "8": 0.000000, "9": 430.386396, "10": 545.794022,
    "11": 694.926175, "12": 694.926175, "13": 694.926175, "14": 531.937506,
}  # fmt: skip


def nodal_mismatch_mw(snapshot: Snapshot) -> np.ndarray:
    """Generation − load − storage − power sent into branches, per bus: zero for a consistent import."""
    mismatch = np.zeros(snapshot.n_bus)
    np.add.at(mismatch, snapshot.gen_bus, snapshot.gen_p_mw)
    np.add.at(mismatch, snapshot.load_bus, -snapshot.load_p_mw)
    np.add.at(mismatch, snapshot.storage_bus, -snapshot.storage_p_mw)
    np.add.at(mismatch, snapshot.branch_from, -snapshot.branch_p_from_mw)
    np.add.at(mismatch, snapshot.branch_to, -snapshot.branch_p_to_mw)
    return mismatch


def zhou_case14_ppc() -> dict:
    case = parse_matpower_case(CASE14)
    case["gen"][:, 1] = ZHOU_PG
    return case


def zhou_case14_net() -> pp.pandapowerNet:
    """pandapower's case14 with the §9.1 dispatch; generators are found by bus name, not assumed order."""
    net = pn.case14()
    by_bus_name = {1: 120.0, 2: 40.0, 3: 60.0, 6: 19.0, 8: 20.0}
    for index, bus in net.gen["bus"].items():
        net.gen.at[index, "p_mw"] = by_bus_name[int(net.bus.at[bus, "name"])]
    assert int(net.bus.at[net.ext_grid.at[0, "bus"], "name"]) == 1
    return net


def zhou_intensities(net: pp.pandapowerNet) -> dict[str, float]:
    by_bus_name = {1: 875.0, 2: 525.0, 3: 0.0, 6: 520.0, 8: 0.0}
    intensities = {
        f"ext_grid:{i}": by_bus_name[int(net.bus.at[b, "name"])] for i, b in net.ext_grid.bus.items()
    }
    intensities |= {f"gen:{i}": by_bus_name[int(net.bus.at[b, "name"])] for i, b in net.gen.bus.items()}
    return intensities


def assert_matches_t2(document: dict, key_of) -> None:
    flows = {
        key_of(b): (b["from_bus"], b["to_bus"], b["p_from_mw"], b["p_to_mw"]) for b in document["branches"]
    }
    assert len(flows) == len(T2)
    for line, from_bus, to_bus, pf_mw in T2:
        got_from, got_to, p_from, p_to = flows[
            key_of({"id": str(line), "from_bus": str(from_bus), "to_bus": str(to_bus)})
        ]
        assert (got_from, got_to) == (str(from_bus), str(to_bus))
        assert p_from == pytest.approx(pf_mw, abs=1e-6)
        assert p_to == pytest.approx(-pf_mw, abs=1e-6)


# --- MATPOWER reader -------------------------------------------------------------------------------


def test_parser_reads_the_tables_of_a_case_file():
    case = parse_matpower_case(CASE14)
    assert case["version"] == "2"
    assert case["baseMVA"] == 100.0
    assert case["bus"].shape == (14, 13)
    assert case["gen"].shape == (5, 21)
    assert case["branch"].shape == (20, 13)
    assert case["gencost"].shape == (5, 7)
    assert case["bus"][8, 5] == 19.0  # Bs of bus 9
    assert case["branch"][9, 8] == pytest.approx(0.932)
    assert case["bus"].dtype == np.float64


def test_parser_accepts_commas_one_line_rows_continuations_transposes_and_special_values():
    text = """mpc.baseMVA = 100.0;   % a trailing comment
mpc.bus = [1, 3, 0, 0, 0, 0, 1, 1, 0, 135, 1, 1.1, 0.9; 2,1,50,10,0,0,1,1,0,135,1,1.1,0.9];
mpc.gen = [1 50 0 Inf -Inf 1 100 1 ...  the rest continues on the next line
  +inf 0];
mpc.branch = [
    1   2   .01 0.1 0   NaN 0 0 0 0 1   % rateA unknown
    2   1   1e-2 1E-1 0 0 0 0 0 0 0
];
mpc.areas = [1 1];
mpc.foo = 'ignored';
"""
    case = parse_matpower_case(text)
    assert case["bus"].shape == (2, 13)
    assert case["bus"][1, 2] == 50.0
    assert case["gen"].shape == (1, 10)
    assert case["gen"][0, 3] == math.inf and case["gen"][0, 4] == -math.inf and case["gen"][0, 8] == math.inf
    assert case["branch"].shape == (2, 11)
    assert math.isnan(case["branch"][0, 5])
    assert case["branch"][1, 2] == pytest.approx(0.01) and case["branch"][1, 10] == 0.0
    assert "areas" not in case and "foo" not in case


def test_parser_transposes_a_matrix_written_as_columns():
    text = """mpc.baseMVA = 100;
mpc.bus = [1 3 0 0 0 0 1 1 0 135 1 1.1 0.9];
mpc.gen = [1; 50; 0; Inf; -Inf; 1; 100; 1; inf; 0]';
mpc.branch = [];
"""
    case = parse_matpower_case(text)
    assert case["gen"].shape == (1, 10)
    assert case["gen"][0, 1] == 50.0
    assert case["branch"].shape == (0, 11)


def test_parser_reads_version_1_files_with_bare_names():
    text = """function [baseMVA, bus, gen, branch] = tiny
baseMVA = 10;
bus = [1 3 0 0 0 0 1 1 0 10 1 1.1 0.9; 2 1 5 0 0 0 1 1 0 10 1 1.1 0.9];
gen = [1 5 0 10 -10 1 10 1 10 0];
branch = [1 2 0.01 0.1 0 0 0 0 0 0 1];
"""
    case = parse_matpower_case(text)
    assert case["baseMVA"] == 10.0
    assert case["branch"].shape == (1, 11)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "mpc.baseMVA = 100;\nmpc.bus = [\n 1 3 0 0 0 0 1 1 0 1 1 1 x1;\n];",
            'line 3: cannot read "x1" in mpc.bus',
        ),
        (
            "mpc.baseMVA = 100;\nmpc.bus = [\n 1 3 0 0 0 0 1 1 0 1 1 1 1;\n 2 1 0 0 0 0 1 1 0 1 1 1;\n];",
            "line 4: row of mpc.bus has 12 values, the first row has 13",
        ),
        (
            "mpc.baseMVA = 100;\n\nmpc.bus = [\n 1 3 0 0 0 0 1 1 0 1 1 1 1;\n",
            "line 3: mpc.bus = [ is never closed",
        ),
        (
            "mpc.baseMVA = 100;\nmpc.bus = [1 3 0 0 0 0 1 1 0 1 1 1 1];\nmpc.gen = [];",
            "case has no mpc.branch",
        ),
        ("mpc.bus = [];\nmpc.gen = [];\nmpc.branch = [];", "case has no mpc.baseMVA"),
        (
            "mpc.baseMVA = 100;\nmpc.bus = [1 3 0 0 0 0 1 1 0];\nmpc.gen = [];\nmpc.branch = [];",
            "line 2: mpc.bus has 9 columns",
        ),
        ("mpc.baseMVA = 100;\nmpc.bus(:, 3) = 0;", "line 2: assignment to part of mpc.bus is not supported"),
        ("mpc.baseMVA = -5;", "line 1: mpc.baseMVA must be a positive number"),
        ("mpc.baseMVA = 100;\nmpc.bus = [1 2] + 1;", 'line 2: unexpected "+ 1;" after mpc.bus'),
    ],
)
def test_parser_errors_name_the_line(text, message):
    with pytest.raises(GridImportError) as caught:
        parse_matpower_case(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- MATPOWER case → snapshot ----------------------------------------------------------------------


def test_an_unsolved_case_is_refused_with_a_hint():
    with pytest.raises(GridImportError, match=r"solve it first \(--solve dc\|ac\)") as caught:
        snapshot_dict_from_ppc(parse_matpower_case(CASE14), ZHOU_EG)
    assert str(caught.value) == NO_RESULTS


def test_matpower_dc_import_reproduces_the_zhou_kang_branch_flows():
    document = snapshot_dict_from_ppc(solve_ppc(zhou_case14_ppc(), "dc"), ZHOU_EG)
    assert [b["id"] for b in document["buses"]] == [str(n) for n in range(1, 15)]
    assert [g["id"] for g in document["generators"]] == ["G1", "G2", "G3", "G4", "G5"]
    assert [g["p_mw"] for g in document["generators"]] == pytest.approx(ZHOU_PG, abs=1e-9)
    assert {load["id"] for load in document["loads"]} == {
        f"L{n}" for n in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14)
    }
    assert_matches_t2(document, key_of=lambda branch: branch["id"])


def test_matpower_dc_import_solves_to_the_reference_intensities():
    snapshot = snapshot_from_ppc(solve_ppc(zhou_case14_ppc(), "dc"), ZHOU_EG)
    result = solve(snapshot)
    got = dict(zip(snapshot.bus_ids, result.bus_intensity_g_per_kwh, strict=True))
    assert got == pytest.approx(T1, abs=1e-6)
    assert result.totals["load_carbon_t_per_h"] == pytest.approx(135.88, abs=1e-6)


def test_matpower_ac_import_balances_and_meets_the_reference_totals():
    snapshot = snapshot_from_ppc(solve_ppc(zhou_case14_ppc(), "ac"), ZHOU_EG)
    assert np.abs(nodal_mismatch_mw(snapshot)).max() < 1e-6
    slack = snapshot.gen_p_mw[snapshot.gen_ids.index("G1")]
    assert slack == pytest.approx(124.496561, abs=1e-5)
    totals = solve(snapshot).totals
    assert totals["generation_carbon_t_per_h"] == pytest.approx(139.814491, abs=1e-5)
    assert totals["load_carbon_t_per_h"] == pytest.approx(136.216886, abs=1e-5)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(3.597604, abs=1e-5)
    assert abs(totals["residual_t_per_h"]) < 1e-6


def test_bus_shunt_conductance_is_a_load_at_the_solved_voltage():
    case = zhou_case14_ppc()
    case["bus"][8, 4] = 5.0  # Gs = 5 MW at 1 p.u. on bus 9
    solved = solve_ppc(case, "ac")
    snapshot = snapshot_from_ppc(solved, ZHOU_EG)
    shunt = snapshot.load_p_mw[snapshot.load_ids.index("SH9")]
    assert shunt == pytest.approx(5.0 * solved["bus"][8, 7] ** 2, rel=1e-12)
    assert shunt != pytest.approx(5.0, abs=1e-3)
    assert np.abs(nodal_mismatch_mw(snapshot)).max() < 1e-6
    dc = snapshot_from_ppc(solve_ppc(case, "dc"), ZHOU_EG)
    assert dc.load_p_mw[dc.load_ids.index("SH9")] == 5.0
    assert np.abs(nodal_mismatch_mw(dc)).max() < 1e-9


def solved_small_case() -> dict:
    """A hand-solved case: buses 10/20/30 (+ isolated 40), integer arrays, out-of-service rows."""
    bus = np.array([
        [10, 3, 0, 0, 0, 0, 1, 1.00, 0, 0, 1, 1.1, 0.9],
        [20, 1, 60, 0, 0, 0, 1, 1.00, 0, 0, 1, 1.1, 0.9],
        [30, 1, -5, 0, 2, 0, 1, 1.05, 0, 0, 1, 1.1, 0.9],
        [40, 4, 7, 0, 0, 0, 1, 1.00, 0, 0, 1, 1.1, 0.9],
    ])  # fmt: skip
    gen = np.array([
        [10, 57, 0, 0, 0, 1, 100, 1, 100, 0],
        [20, 9, 0, 0, 0, 1, 100, 0, 100, 0],
        [40, 7, 0, 0, 0, 1, 100, 1, 100, 0],
    ], dtype=np.int64)  # fmt: skip
    branch = np.zeros((4, 17))
    branch[:, :2] = [[10, 20], [20, 30], [10, 30], [30, 40]]
    branch[:, 10] = [1, 0, 1, 1]
    branch[:, 13] = [54.0, 0.0, 3.5, 0.0]
    branch[:, 15] = [-54.0, 0.0, -3.4795, 0.0]
    return {"baseMVA": 100, "bus": bus, "gen": gen, "branch": branch}


def test_matpower_ids_follow_bus_numbers_and_rows_and_isolated_buses_are_dropped():
    document = snapshot_dict_from_ppc(solved_small_case(), {"G1": 800.0, "L30": 0.0})
    assert [b["id"] for b in document["buses"]] == ["10", "20", "30"]
    assert [(g["id"], g["bus"], g["p_mw"]) for g in document["generators"]] == [("G1", "10", 57.0)]
    assert [b["id"] for b in document["branches"]] == ["1", "3"]
    loads = {load["id"]: load for load in document["loads"]}
    assert set(loads) == {"L20", "L30", "SH30"}
    assert loads["L30"]["p_mw"] == -5.0 and loads["L30"]["intensity_g_per_kwh"] == 0.0
    assert "intensity_g_per_kwh" not in loads["L20"]
    assert loads["SH30"]["p_mw"] == pytest.approx(2.0 * 1.05**2)


def test_integer_case_arrays_do_not_truncate_solved_values():
    case = zhou_case14_ppc()
    case["gen"] = case["gen"].astype(np.int64)  # as PYPOWER's case9 ships its gen table
    case["bus"][13, 2] = 14.95  # the slack must now pick up 120.05 MW
    solved = solve_ppc(case, "dc")
    assert solved["gen"][0, 1] == pytest.approx(120.05, abs=1e-9)
    document = snapshot_dict_from_ppc(solved_small_case(), default_intensity=1.0)
    assert isinstance(document["generators"][0]["p_mw"], float)


@pytest.mark.parametrize(
    ("intensities", "default", "message"),
    [
        ({}, None, 'generator "G1" has no intensity'),
        ({"G9": 1.0}, 100.0, 'intensities: no element "G9" in the grid'),
        ({"G1": -3.0}, None, 'intensities: "G1" must be a finite non-negative number'),
        ({"G1": 500.0}, math.nan, "default intensity must be a finite non-negative number"),
    ],
)
def test_matpower_intensity_mistakes_are_named(intensities, default, message):
    with pytest.raises(GridImportError, match=message):
        snapshot_dict_from_ppc(solved_small_case(), intensities, default_intensity=default)


def test_matpower_structural_errors_are_named():
    case = solved_small_case()
    case["branch"][1, 1] = 99
    with pytest.raises(GridImportError, match="branch row 2: bus 99 is not in the bus table"):
        snapshot_dict_from_ppc(case, default_intensity=1.0)
    case = solved_small_case()
    case["bus"][2, 0] = 20
    with pytest.raises(GridImportError, match="bus row 3: duplicate bus number 20"):
        snapshot_dict_from_ppc(case, default_intensity=1.0)
    with pytest.raises(GridImportError, match='unknown power-flow mode "newton"'):
        solve_ppc(zhou_case14_ppc(), "newton")


# --- pandapower networks ---------------------------------------------------------------------------


def test_pandapower_case14_dc_import_reproduces_the_zhou_kang_branch_flows():
    net = zhou_case14_net()
    pp.rundcpp(net)
    document = snapshot_dict_from_pandapower(net, zhou_intensities(net))
    assert {b["id"] for b in document["buses"]} == {str(n) for n in range(1, 15)}
    assert {b["id"].split(":")[0] for b in document["branches"]} == {"line", "trafo"}
    assert_matches_t2(document, key_of=lambda branch: (branch["from_bus"], branch["to_bus"]))
    assert {g["id"]: g["p_mw"] for g in document["generators"]}["ext_grid:0"] == pytest.approx(120.0)


def test_pandapower_case14_dc_import_solves_to_the_reference_intensities():
    net = zhou_case14_net()
    pp.rundcpp(net)
    snapshot = snapshot_from_pandapower(net, zhou_intensities(net))
    result = solve(snapshot)
    got = dict(zip(snapshot.bus_ids, result.bus_intensity_g_per_kwh, strict=True))
    assert got == pytest.approx(T1, abs=1e-6)


@pytest.mark.parametrize("network", [pn.case9, pn.case14])
def test_pandapower_ac_imports_balance_at_every_bus(network):
    net = network()
    pp.runpp(net, numba=False)
    snapshot = snapshot_from_pandapower(net, default_intensity=500.0)
    assert np.abs(nodal_mismatch_mw(snapshot)).max() < 1e-6
    assert snapshot.branch_p_from_mw.sum() + snapshot.branch_p_to_mw.sum() > 0.1  # AC losses are present


def mixed_network(lv_sgen_mw: float) -> pp.pandapowerNet:
    """Three-winding transformer, shunt with conductance, storage, sgen, motor, ward, a fused and an
    impedant bus-bus switch, a line to an out-of-service bus and an unsupplied island."""
    net = pp.create_empty_network()
    hv = pp.create_bus(net, 110, name="HV")
    mv = pp.create_bus(net, 20, name="MV")
    lv = pp.create_bus(net, 10, name="LV")
    lv2 = pp.create_bus(net, 10, name="LV2")
    mv2 = pp.create_bus(net, 20, name="MV2")
    mv3 = pp.create_bus(net, 20, name="MV3")
    dead = pp.create_bus(net, 20, name="OFF", in_service=False)
    island = [pp.create_bus(net, 20, name=f"ISL{k}") for k in range(2)]
    pp.create_ext_grid(net, hv)
    pp.create_transformer3w(net, hv, mv, lv, "63/25/38 MVA 110/20/10 kV")
    pp.create_switch(net, lv, lv2, et="b", closed=True)
    pp.create_switch(net, mv2, mv3, et="b", closed=True, z_ohm=0.2)
    pp.create_line(net, mv, mv2, 3.0, "NA2XS2Y 1x95 RM/25 12/20 kV")
    pp.create_line(net, mv, dead, 2.0, "NA2XS2Y 1x95 RM/25 12/20 kV")
    pp.create_line(net, island[0], island[1], 1.0, "NA2XS2Y 1x95 RM/25 12/20 kV")
    pp.create_load(net, mv3, 8.0, 2.0)
    pp.create_load(net, lv2, 3.0, 1.0)
    pp.create_load(net, island[1], 2.0)
    pp.create_sgen(net, lv, lv_sgen_mw)
    pp.create_storage(net, mv, p_mw=1.5, max_e_mwh=4.0)
    pp.create_shunt(net, lv2, q_mvar=1.0, p_mw=0.2)
    pp.create_motor(net, mv2, pn_mech_mw=0.5, cos_phi=0.9, efficiency_percent=95.0)
    pp.create_ward(net, mv2, ps_mw=0.4, qs_mvar=0.1, pz_mw=0.3, qz_mvar=0.1)
    return net


@pytest.mark.parametrize("lv_sgen_mw", [1.0, 12.0])
@pytest.mark.parametrize("run", [pp.runpp, pp.rundcpp])
def test_a_mixed_pandapower_network_imports_balanced(lv_sgen_mw, run):
    net = mixed_network(lv_sgen_mw)
    if run is pp.runpp:
        run(net, numba=False)
    else:
        run(net)
    snapshot = snapshot_from_pandapower(net, {"sgen:0": 0.0}, default_intensity=600.0)
    assert np.abs(nodal_mismatch_mw(snapshot)).max() < 1e-6
    # LV2 is fused onto LV; the out-of-service bus and the unsupplied island are left out.
    assert set(snapshot.bus_ids) == {"HV", "MV", "LV", "MV2", "MV3", "trafo3w:0:star"}
    assert snapshot.load_bus[snapshot.load_ids.index("shunt:0")] == snapshot.bus_ids.index("LV")
    assert snapshot.storage_ids == ("storage:0",)
    assert "switch:1" in snapshot.branch_ids and "line:1" not in snapshot.branch_ids
    assert set(snapshot.load_ids) >= {"load:0", "load:1", "shunt:0", "motor:0", "ward:0"}
    assert "load:2" not in snapshot.load_ids


@pytest.mark.parametrize("lv_sgen_mw", [1.0, 12.0])
def test_three_winding_losses_sit_on_the_feeding_legs_and_no_leg_sends_from_both_ends(lv_sgen_mw):
    net = mixed_network(lv_sgen_mw)
    pp.runpp(net, numba=False)
    document = snapshot_dict_from_pandapower(net, default_intensity=600.0)
    legs = {b["id"].rsplit(":", 1)[1]: b for b in document["branches"] if b["id"].startswith("trafo3w:0:")}
    assert set(legs) == {"hv", "mv", "lv"}
    result = net.res_trafo3w.loc[0]
    for winding, leg in legs.items():
        assert leg["to_bus"] == "trafo3w:0:star"
        assert leg["p_from_mw"] == result[f"p_{winding}_mw"]
        assert not (leg["p_from_mw"] > 0 and leg["p_to_mw"] > 0)
    assert sum(leg["p_to_mw"] for leg in legs.values()) == pytest.approx(0.0, abs=1e-12)
    losses = {w: leg["p_from_mw"] + leg["p_to_mw"] for w, leg in legs.items()}
    assert sum(losses.values()) == pytest.approx(result["pl_mw"], abs=1e-9)
    feeding = {w for w, leg in legs.items() if leg["p_from_mw"] > 0}
    assert {w for w, loss in losses.items() if abs(loss) > 1e-12} == feeding
    assert len(feeding) == (1 if lv_sgen_mw == 1.0 else 2)


def test_a_line_to_a_dead_bus_becomes_a_load_of_its_charging_losses():
    net = mixed_network(1.0)
    pp.runpp(net, numba=False)
    snapshot = snapshot_from_pandapower(net, default_intensity=600.0)
    drawn = snapshot.load_p_mw[snapshot.load_ids.index("line:1")]
    assert drawn == net.res_line.at[1, "p_from_mw"] and drawn > 0
    assert snapshot.load_bus[snapshot.load_ids.index("line:1")] == snapshot.bus_ids.index("MV")


def test_pandapower_bus_ids_fall_back_to_the_index_when_names_do_not_identify_buses():
    net = mixed_network(1.0)
    net.bus.at[4, "name"] = "MV"  # duplicate name
    pp.runpp(net, numba=False)
    snapshot = snapshot_from_pandapower(net, default_intensity=600.0)
    assert set(snapshot.bus_ids) == {"0", "1", "2", "4", "5", "trafo3w:0:star"}


def test_a_star_bus_id_that_collides_with_a_bus_name_is_refused():
    net = mixed_network(1.0)
    net.bus.at[5, "name"] = "trafo3w:0:star"
    pp.runpp(net, numba=False)
    with pytest.raises(GridImportError, match='bus id "trafo3w:0:star" collides'):
        snapshot_dict_from_pandapower(net, default_intensity=600.0)


def test_pandapower_intensity_mistakes_are_named():
    net = zhou_case14_net()
    pp.rundcpp(net)
    intensities = zhou_intensities(net)
    del intensities["gen:2"]
    with pytest.raises(GridImportError, match='generator "gen:2" has no intensity'):
        snapshot_dict_from_pandapower(net, intensities)
    with pytest.raises(GridImportError, match='no element "gen:9" in the grid'):
        snapshot_dict_from_pandapower(net, {"gen:9": 1.0}, default_intensity=1.0)
    document = snapshot_dict_from_pandapower(net, intensities, default_intensity=42.0)
    assert {g["id"]: g["intensity_g_per_kwh"] for g in document["generators"]}["gen:2"] == 42.0


def test_unsolved_or_stale_networks_are_refused():
    net = pn.case9()
    with pytest.raises(GridImportError, match="no converged power-flow results"):
        snapshot_dict_from_pandapower(net, default_intensity=1.0)
    pp.runpp(net, numba=False)
    pp.create_load(net, 4, 10.0)
    with pytest.raises(GridImportError, match=r"res_load does not match net\.load"):
        snapshot_dict_from_pandapower(net, default_intensity=1.0)


def test_results_that_do_not_balance_are_refused():
    # pandapower's DC power flow ignores asymmetric loads but still reports them.
    net = pn.case9()
    pp.create_asymmetric_load(net, 4, p_a_mw=1.0, p_b_mw=1.0, p_c_mw=1.0)
    pp.rundcpp(net)
    with pytest.raises(GridImportError, match=r"do not balance at bus 5 \(-3 MW\)"):
        snapshot_dict_from_pandapower(net, default_intensity=1.0)


def test_a_saved_network_imports_like_the_original(tmp_path):
    net = zhou_case14_net()
    pp.rundcpp(net)
    path = tmp_path / "case14.json"
    pp.to_json(net, str(path))
    loaded = load_pandapower_json(path)
    intensities = zhou_intensities(net)
    original = snapshot_from_pandapower(net, intensities)
    reloaded = snapshot_from_pandapower(loaded, intensities)
    assert reloaded.bus_ids == original.bus_ids and reloaded.branch_ids == original.branch_ids
    assert reloaded.gen_ids == original.gen_ids and reloaded.load_ids == original.load_ids
    np.testing.assert_allclose(reloaded.branch_p_from_mw, original.branch_p_from_mw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reloaded.gen_p_mw, original.gen_p_mw, rtol=1e-12)


@pytest.mark.parametrize("network", [pn.case30, pn.case118])
def test_larger_ac_imports_meter_with_a_closed_carbon_balance(network):
    net = network()
    pp.runpp(net, numba=False)
    intensities = {f"gen:{index}": float(100 * (index % 9)) for index in net.gen.index}
    snapshot = snapshot_from_pandapower(net, intensities, default_intensity=820.0)
    assert np.abs(nodal_mismatch_mw(snapshot)).max() < 1e-6
    totals = solve(snapshot).totals
    assert abs(totals["residual_t_per_h"]) < 1e-6
    assert totals["loss_carbon_t_per_h"] > 0

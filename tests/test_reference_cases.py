"""Reference oracles of docs `reference/cef-model.md`: the exact 4-bus example (§9.3) and the IEEE-14 DC
example of Zhou/Kang 2012 (§9.1, tables T1-T4), for both solver paths of ``solve``."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.engine.origin import origin_shares

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
METHODS = ("kernel", "lu", "sweep")
EXACT = 1e-9  # §9.3 has exact fractions
TABLE = 1e-6  # §9.1 tables are printed to 6 decimals


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def solved(name: str, losses: str, method: str):
    result = solve(snapshot_from_dict(load(name)), losses, method=method)
    return result, result_document(result)


def by_id(records: list[dict]) -> dict[str, dict]:
    return {record["id"]: record for record in records}


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.strip())))


def f(x: Fraction) -> float:
    return float(x)


# ------------------------------------------------------------------------------------------------
# §9.3 exact 4-bus example: G1@1 800 g/kWh, G2@2 wind; loads 30/70/50 MW at buses 2/3/4;
# flows 1->2 40 (lossy: sends 42), 1->4 60, 2->3 60, 4->3 10 (given as a reverse flow on "b43").

FOUR_BUS_RECEIVING = {"1": Fraction(800), "2": Fraction(3200, 9), "3": Fraction(8800, 21), "4": Fraction(800)}
FOUR_BUS_CONSUMER_LOSSY = {
    "1": Fraction(800),
    "2": Fraction(1120, 3),
    "3": Fraction(3040, 7),
    "4": Fraction(800),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("losses", ["receiving", "consumer"])
def test_lossless_four_bus_intensities_are_the_exact_fractions(method, losses):
    _result, doc = solved("four_bus_lossless.json", losses, method)
    buses = by_id(doc["buses"])
    for bus_id, exact in FOUR_BUS_RECEIVING.items():
        assert buses[bus_id]["intensity_g_per_kwh"] == pytest.approx(f(exact), abs=EXACT)
    assert [buses[b]["flux_mw"] for b in "1234"] == pytest.approx([100, 90, 70, 60], abs=EXACT)
    load_carbon = {
        "1": 0,
        "2": Fraction(30) * Fraction(3200, 9) / 1000,
        "3": Fraction(70 * 8800, 21) / 1000,
        "4": Fraction(40),
    }
    for bus_id, exact in load_carbon.items():
        assert buses[bus_id]["load_carbon_t_per_h"] == pytest.approx(f(exact), abs=EXACT)
    totals = doc["totals"]
    assert totals["generation_carbon_t_per_h"] == pytest.approx(80.0, abs=EXACT)
    assert totals["load_carbon_t_per_h"] == pytest.approx(80.0, abs=EXACT)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=EXACT)
    assert totals["residual_t_per_h"] == pytest.approx(0.0, abs=EXACT)


@pytest.mark.parametrize("method", METHODS)
def test_sweep_is_really_used_on_the_acyclic_four_bus_flow(method):
    result, _doc = solved("four_bus_lossless.json", "receiving", method)
    assert result.method == method


@pytest.mark.parametrize("method", METHODS)
def test_reverse_flow_branch_carries_the_intensity_of_its_actual_sending_bus(method):
    _result, doc = solved("four_bus_lossless.json", "receiving", method)
    b43 = by_id(doc["branches"])["b43"]  # from_bus 3, to_bus 4, power flows 4 -> 3
    assert b43["sending_bus"] == "4"
    assert b43["p_send_mw"] == pytest.approx(10.0, abs=EXACT)
    assert b43["p_recv_mw"] == pytest.approx(10.0, abs=EXACT)
    assert b43["density_g_per_kwh"] == pytest.approx(800.0, abs=EXACT)
    assert b43["carbon_send_t_per_h"] == pytest.approx(8.0, abs=EXACT)


@pytest.mark.parametrize("method", METHODS)
def test_lossy_four_bus_receiving_keeps_lossless_intensities_and_reports_loss_carbon(method):
    _result, doc = solved("four_bus_lossy.json", "receiving", method)
    buses = by_id(doc["buses"])
    for bus_id, exact in FOUR_BUS_RECEIVING.items():
        assert buses[bus_id]["intensity_g_per_kwh"] == pytest.approx(f(exact), abs=EXACT)
    totals = doc["totals"]
    assert totals["generation_carbon_t_per_h"] == pytest.approx(81.6, abs=EXACT)
    assert totals["load_carbon_t_per_h"] == pytest.approx(80.0, abs=EXACT)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(1.6, abs=EXACT)
    assert totals["residual_t_per_h"] == pytest.approx(0.0, abs=EXACT)


@pytest.mark.parametrize("method", METHODS)
def test_loss_carbon_counts_at_the_sending_bus(method):
    _result, doc = solved("four_bus_lossy.json", "receiving", method)
    b12 = by_id(doc["branches"])["b12"]
    assert b12["sending_bus"] == "1"
    assert (b12["p_send_mw"], b12["p_recv_mw"]) == pytest.approx((42.0, 40.0), abs=EXACT)
    assert b12["density_g_per_kwh"] == pytest.approx(800.0, abs=EXACT)
    assert b12["carbon_send_t_per_h"] == pytest.approx(42 * 0.8, abs=EXACT)
    assert b12["carbon_recv_t_per_h"] == pytest.approx(40 * 0.8, abs=EXACT)
    assert b12["loss_carbon_t_per_h"] == pytest.approx(2 * 0.8, abs=EXACT)
    others = [b for b in doc["branches"] if b["id"] != "b12"]
    assert all(b["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=EXACT) for b in others)
    # The nodal flux of the receiving bus counts delivered power only.
    assert by_id(doc["buses"])["2"]["flux_mw"] == pytest.approx(90.0, abs=EXACT)
    assert by_id(doc["buses"])["1"]["flux_mw"] == pytest.approx(102.0, abs=EXACT)


@pytest.mark.parametrize("method", METHODS)
def test_lossy_four_bus_consumer_convention_pushes_loss_carbon_into_loads(method):
    _result, doc = solved("four_bus_lossy.json", "consumer", method)
    buses = by_id(doc["buses"])
    for bus_id, exact in FOUR_BUS_CONSUMER_LOSSY.items():
        assert buses[bus_id]["intensity_g_per_kwh"] == pytest.approx(f(exact), abs=EXACT)
    exact_load_carbon = (30 * Fraction(1120, 3) + 70 * Fraction(3040, 7) + 50 * 800) / 1000
    assert f(exact_load_carbon) == pytest.approx(81.6, abs=1e-12)
    totals = doc["totals"]
    assert totals["load_carbon_t_per_h"] == pytest.approx(81.6, abs=EXACT)
    assert totals["generation_carbon_t_per_h"] == pytest.approx(81.6, abs=EXACT)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=EXACT)
    assert totals["residual_t_per_h"] == pytest.approx(0.0, abs=EXACT)
    b12 = by_id(doc["branches"])["b12"]
    assert b12["carbon_send_t_per_h"] == pytest.approx(33.6, abs=EXACT)
    assert b12["carbon_recv_t_per_h"] == pytest.approx(33.6, abs=EXACT)
    assert b12["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=EXACT)


@pytest.mark.parametrize("method", METHODS)
def test_four_bus_origin_shares_are_the_exact_fractions(method):
    result = solve(snapshot_from_dict(load("four_bus_lossless.json")), method=method)
    origin = origin_shares(result)
    k1, k2 = origin.source_ids.index("G1"), origin.source_ids.index("G2")
    expected = {
        "1": (1, 0),
        "2": (Fraction(4, 9), Fraction(5, 9)),
        "3": (Fraction(11, 21), Fraction(10, 21)),
        "4": (1, 0),
    }
    position = {bus_id: n for n, bus_id in enumerate(result.snapshot.bus_ids)}
    for bus_id, (g1, g2) in expected.items():
        row = origin.bus_power_share[position[bus_id]]
        assert row[k1] == pytest.approx(float(g1), abs=EXACT)
        assert row[k2] == pytest.approx(float(g2), abs=EXACT)


# ------------------------------------------------------------------------------------------------
# §9.1 IEEE-14 DC.

T1 = """
bus,Pd_MW,Pgen_MW,EG,PN,EN,RL,RG
1,0,120,875,120.000000,875.000000,0.000000,105.000000
2,21.7,40,525,117.949113,756.304745,16.411813,21.000000
3,94.2,60,0,94.200000,275.052990,25.909992,0.000000
4,47.8,0,,72.771057,792.757713,37.893819,0.000000
5,7.6,0,,69.465087,828.157255,6.293995,0.000000
6,11.2,19,520,43.946111,694.926175,7.783173,9.880000
7,0,0,,32.421890,303.731501,0.000000,0.000000
8,0,20,0,20.000000,0.000000,0.000000,0.000000
9,29.5,0,,43.753889,430.386396,12.696399,0.000000
10,9,0,,9.000000,545.794022,4.912146,0.000000
11,3.5,0,,7.426323,694.926175,2.432242,0.000000
12,6.1,0,,7.709872,694.926175,4.239050,0.000000
13,13.5,0,,19.219788,694.926175,9.381503,0.000000
14,14.9,0,,14.900000,531.937506,7.925869,0.000000
"""

T2 = """
line,from,to,PF,flow_dir,density,RB
1,1,2,77.949113,1->2,875.000000,68.205473
2,1,5,42.050887,1->5,875.000000,36.794527
3,2,3,32.982832,2->3,756.304745,24.945072
4,2,4,35.852081,2->4,756.304745,27.115099
5,2,5,27.414199,2->5,756.304745,20.733489
6,3,4,-1.217168,4->3,792.757713,0.964919
7,4,5,-36.918975,5->4,828.157255,30.574717
8,4,7,12.421890,4->7,792.757713,9.847549
9,4,9,11.331998,4->9,792.757713,8.983529
10,5,6,24.946111,5->6,828.157255,20.659303
11,6,11,7.426323,6->11,694.926175,5.160746
12,6,12,7.709872,6->12,694.926175,5.357792
13,6,13,17.609916,6->13,694.926175,12.237592
14,7,8,-20.000000,8->7,0.000000,0.000000
15,7,9,32.421890,7->9,303.731501,9.847549
16,9,10,5.073677,9->10,430.386396,2.183642
17,9,14,9.180212,9->14,430.386396,3.951038
18,10,11,-3.926323,11->10,694.926175,2.728505
19,12,13,1.609872,12->13,694.926175,1.118742
20,13,14,5.719788,13->14,694.926175,3.974831
"""

T3 = """
bus,G1,G2,G3,G4,G5
1,1.000000,0.000000,0.000000,0.000000,0.000000
2,0.660871,0.339129,0.000000,0.000000,0.000000
3,0.241280,0.121778,0.636943,0.000000,0.000000
4,0.765022,0.234978,0.000000,0.000000,0.000000
5,0.866164,0.133836,0.000000,0.000000,0.000000
6,0.491680,0.075973,0.000000,0.432348,0.000000
7,0.293105,0.090028,0.000000,0.000000,0.616867
8,0.000000,0.000000,0.000000,0.000000,1.000000
9,0.415329,0.127569,0.000000,0.000000,0.457102
10,0.448638,0.105060,0.000000,0.188615,0.257688
11,0.491680,0.075973,0.000000,0.432348,0.000000
12,0.491680,0.075973,0.000000,0.432348,0.000000
13,0.491680,0.075973,0.000000,0.432348,0.000000
14,0.444638,0.107762,0.000000,0.165969,0.281631
"""

T4 = """
bus,G1,G2,G3,G4,G5,RL
1,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000
2,14.340894,7.359106,0.000000,0.000000,0.000000,16.411813
3,22.728548,11.471452,60.000000,0.000000,0.000000,25.909992
4,36.568053,11.231947,0.000000,0.000000,0.000000,37.893819
5,6.582843,1.017157,0.000000,0.000000,0.000000,6.293995
6,5.506813,0.850893,0.000000,4.842294,0.000000,7.783173
7,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000
8,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000
9,12.252198,3.763286,0.000000,0.000000,13.484516,12.696399
10,4.037738,0.945537,0.000000,1.697537,2.319189,4.912146
11,1.720879,0.265904,0.000000,1.513217,0.000000,2.432242
12,2.999246,0.463433,0.000000,2.637321,0.000000,4.239050
13,6.637677,1.025629,0.000000,5.836694,0.000000,9.381503
14,6.625110,1.605657,0.000000,2.472937,4.196295,7.925869
"""
GENERATORS = ("G1", "G2", "G3", "G4", "G5")
GEN_BUS = {"G1": "1", "G2": "2", "G3": "3", "G4": "6", "G5": "8"}


@pytest.fixture(scope="module", params=METHODS)
def ieee14(request):
    result = solve(snapshot_from_dict(load("ieee14_dc.json")), "receiving", method=request.param)
    return result, result_document(result)


@pytest.mark.parametrize("method", METHODS)
def test_ieee14_requested_method_is_the_one_used(method):
    result = solve(snapshot_from_dict(load("ieee14_dc.json")), method=method)
    assert result.method == method


@pytest.mark.parametrize("row", table(T1), ids=lambda row: f"bus{row['bus']}")
def test_ieee14_bus_matches_table_t1(ieee14, row):
    _result, doc = ieee14
    bus = by_id(doc["buses"])[row["bus"]]
    assert bus["flux_mw"] == pytest.approx(float(row["PN"]), abs=TABLE)
    assert bus["intensity_g_per_kwh"] == pytest.approx(float(row["EN"]), abs=TABLE)
    assert bus["load_mw"] == pytest.approx(float(row["Pd_MW"]), abs=TABLE)
    assert bus["load_carbon_t_per_h"] == pytest.approx(float(row["RL"]), abs=TABLE)
    injected = sum(g["carbon_t_per_h"] for g in doc["generators"] if g["bus"] == row["bus"])
    assert injected == pytest.approx(float(row["RG"]), abs=TABLE)
    generated = sum(g["p_mw"] for g in doc["generators"] if g["bus"] == row["bus"])
    assert generated == pytest.approx(float(row["Pgen_MW"]), abs=TABLE)
    loads_here = [x for x in doc["loads"] if x["bus"] == row["bus"]]
    assert sum(x["carbon_t_per_h"] for x in loads_here) == pytest.approx(float(row["RL"]), abs=TABLE)


@pytest.mark.parametrize("row", table(T2), ids=lambda row: f"line{row['line']}")
def test_ieee14_branch_matches_table_t2(ieee14, row):
    _result, doc = ieee14
    branch = by_id(doc["branches"])[row["line"]]
    assert (branch["from_bus"], branch["to_bus"]) == (row["from"], row["to"])
    sender, receiver = row["flow_dir"].split("->")
    assert branch["sending_bus"] == sender
    assert branch["direction"] == ("forward" if sender == row["from"] else "reverse")
    flow = abs(float(row["PF"]))
    assert branch["p_send_mw"] == pytest.approx(flow, abs=TABLE)
    assert branch["p_recv_mw"] == pytest.approx(flow, abs=TABLE)
    assert branch["density_g_per_kwh"] == pytest.approx(float(row["density"]), abs=TABLE)
    assert branch["density_g_per_kwh"] == pytest.approx(
        by_id(doc["buses"])[sender]["intensity_g_per_kwh"], abs=1e-9
    )
    assert branch["carbon_send_t_per_h"] == pytest.approx(float(row["RB"]), abs=TABLE)
    assert branch["carbon_recv_t_per_h"] == pytest.approx(float(row["RB"]), abs=TABLE)
    assert branch["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=1e-9)
    assert receiver in (row["from"], row["to"])


def test_ieee14_totals_are_135_88(ieee14):
    _result, doc = ieee14
    totals = doc["totals"]
    assert totals["generation_carbon_t_per_h"] == pytest.approx(135.88, abs=TABLE)
    assert totals["load_carbon_t_per_h"] == pytest.approx(135.88, abs=TABLE)
    assert totals["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=TABLE)
    assert totals["residual_t_per_h"] == pytest.approx(0.0, abs=TABLE)
    assert sum(b["load_carbon_t_per_h"] for b in doc["buses"]) == pytest.approx(135.88, abs=TABLE)


def test_ieee14_dc_intensities_agree_under_both_loss_conventions():
    snapshot = snapshot_from_dict(load("ieee14_dc.json"))
    receiving = solve(snapshot, "receiving").bus_intensity_g_per_kwh
    consumer = solve(snapshot, "consumer").bus_intensity_g_per_kwh
    np.testing.assert_allclose(consumer, receiving, rtol=0, atol=1e-9)


def test_ieee14_sweep_and_lu_agree_to_round_off():
    snapshot = snapshot_from_dict(load("ieee14_dc.json"))
    lu = solve(snapshot, method="lu").bus_intensity_g_per_kwh
    sweep = solve(snapshot, method="sweep").bus_intensity_g_per_kwh
    np.testing.assert_allclose(sweep, lu, rtol=0, atol=1e-9)


@pytest.fixture(scope="module", params=METHODS)
def ieee14_origin(request):
    result = solve(snapshot_from_dict(load("ieee14_dc.json")), "receiving", method=request.param)
    return result, origin_shares(result)


@pytest.mark.parametrize("row", table(T3), ids=lambda row: f"bus{row['bus']}")
def test_ieee14_share_matrix_matches_table_t3(ieee14_origin, row):
    result, origin = ieee14_origin
    n = result.snapshot.bus_ids.index(row["bus"])
    for gen in GENERATORS:
        k = origin.source_ids.index(gen)
        assert origin.bus_power_share[n, k] == pytest.approx(float(row[gen]), abs=TABLE), gen
    assert origin.bus_power_share[n].sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("row", table(T4), ids=lambda row: f"bus{row['bus']}")
def test_ieee14_load_from_generator_matches_table_t4(ieee14_origin, row):
    result, origin = ieee14_origin
    snap = result.snapshot
    at_bus = [m for m, b in enumerate(snap.load_bus) if snap.bus_ids[b] == row["bus"]]
    for gen in GENERATORS:
        k = origin.source_ids.index(gen)
        mw = sum(origin.load_power_mw[m, k] for m in at_bus)
        assert mw == pytest.approx(float(row[gen]), abs=TABLE), gen
    carbon = sum(origin.load_carbon_t_per_h[m].sum() for m in at_bus)
    assert carbon == pytest.approx(float(row["RL"]), abs=TABLE)


def test_ieee14_every_generator_megawatt_is_assigned_to_some_load(ieee14_origin):
    result, origin = ieee14_origin
    snap = result.snapshot
    for gen in GENERATORS:
        k = origin.source_ids.index(gen)
        g = snap.gen_ids.index(gen)
        assert origin.load_power_mw[:, k].sum() == pytest.approx(snap.gen_p_mw[g], abs=TABLE)
        assert snap.bus_ids[snap.gen_bus[g]] == GEN_BUS[gen]

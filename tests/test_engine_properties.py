"""Properties of the CEF engine on random connected networks with consistent flows (tests/netgen.py).

Reference: `reference/cef-model.md` §3.3, §4, §5, §6, §11, §12.
"""

from __future__ import annotations

import math
import random

import netgen
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netgen import networks

from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.engine.origin import origin_shares

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
CONVENTIONS = ("receiving", "consumer")
REL = 1e-9

acyclic = networks()
lossless = networks(lossy=False)
cyclic = networks(with_cycle=True)
any_flow = st.one_of(acyclic, cyclic)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def run(doc, losses="receiving", method="lu"):
    result = solve(snapshot_from_dict(doc), losses, method=method)
    return result, result_document(result)


def intensities(doc_out) -> dict[str, float | None]:
    return {bus["id"]: bus["intensity_g_per_kwh"] for bus in doc_out["buses"]}


def close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=REL * max(scale, 1.0))


def assert_same_intensities(a: dict, b: dict, rename=lambda x: x) -> None:
    assert set(map(rename, a)) == set(b)
    for bus_id, value in a.items():
        other = b[rename(bus_id)]
        assert (value is None) == (other is None), bus_id
        if value is not None:
            assert close(value, other, 1000.0), (bus_id, value, other)


# ------------------------------------------------------------------------------------------------
# Correctness against an independent dense oracle, both solver paths.


@PROPERTY
@given(net=acyclic, losses=st.sampled_from(CONVENTIONS))
def test_lu_and_sweep_agree_with_a_dense_solve_on_acyclic_flows(net, losses):
    reference = netgen.reference_solution(net.doc, losses)
    _lu, lu_doc = run(net.doc, losses, "lu")
    sweep, sweep_doc = run(net.doc, losses, "sweep")
    assert sweep.method == "sweep"  # acyclic: no fallback
    for doc_out in (lu_doc, sweep_doc):
        for bus_id, value in intensities(doc_out).items():
            assert close(value, reference.intensity[bus_id], 1000.0), (
                bus_id,
                value,
                reference.intensity[bus_id],
            )
    assert_same_intensities(intensities(lu_doc), intensities(sweep_doc))


@PROPERTY
@given(net=cyclic, losses=st.sampled_from(CONVENTIONS))
def test_lu_solves_flows_with_a_directed_cycle(net, losses):
    assert net.cycle, "the generator must produce a flow cycle"
    reference = netgen.reference_solution(net.doc, losses)
    for method in ("lu", "sweep"):
        result, doc_out = run(net.doc, losses, method)
        assert result.method == "lu"  # the sweep cannot order a cycle and must fall back
        for bus_id, value in intensities(doc_out).items():
            assert close(value, reference.intensity[bus_id], 1000.0), (
                bus_id,
                value,
                reference.intensity[bus_id],
            )
    senders = {b["id"]: b["sending_bus"] for b in doc_out["branches"]}
    receivers = {
        b["id"]: (b["to_bus"] if b["sending_bus"] == b["from_bus"] else b["from_bus"])
        for b in doc_out["branches"]
    }
    # The generated loop really is a directed cycle in the engine's view of the flows.
    loop = net.cycle
    for here, there in zip(loop, loop[1:] + loop[:1]):
        assert receivers[here] == senders[there]


# ------------------------------------------------------------------------------------------------
# Conservation and bounds.


@PROPERTY
@given(net=any_flow)
def test_receiving_convention_generation_equals_load_plus_loss(net):
    _result, out = run(net.doc, "receiving")
    gen = sum(g["carbon_t_per_h"] for g in out["generators"])
    load = sum(b["load_carbon_t_per_h"] for b in out["buses"])
    loss = sum(b["loss_carbon_t_per_h"] for b in out["branches"])
    assert close(gen, load + loss, gen)
    totals = out["totals"]
    assert close(totals["generation_carbon_t_per_h"], gen, gen)
    assert close(totals["load_carbon_t_per_h"], load, gen)
    assert close(totals["loss_carbon_t_per_h"], loss, gen)
    assert abs(totals["residual_t_per_h"]) <= REL * max(gen, 1.0)
    reference = netgen.reference_solution(net.doc, "receiving")
    assert close(loss, reference.loss_carbon, gen)


@PROPERTY
@given(net=any_flow)
def test_consumer_convention_generation_equals_load(net):
    _result, out = run(net.doc, "consumer")
    gen = sum(g["carbon_t_per_h"] for g in out["generators"])
    load = sum(b["load_carbon_t_per_h"] for b in out["buses"])
    assert close(gen, load, gen)
    assert all(b["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=1e-12) for b in out["branches"])
    assert close(out["totals"]["load_carbon_t_per_h"], gen, gen)
    assert abs(out["totals"]["residual_t_per_h"]) <= REL * max(gen, 1.0)


@PROPERTY
@given(net=any_flow)
def test_receiving_intensities_lie_between_the_cleanest_and_dirtiest_source(net):
    low, high = min(net.source_intensities), max(net.source_intensities)
    _result, out = run(net.doc, "receiving")
    for bus_id, value in intensities(out).items():
        assert low - 1e-9 <= value <= high + 1e-9, bus_id


@PROPERTY
@given(net=any_flow)
def test_consumer_intensities_are_never_below_the_receiving_ones(net):
    _r, receiving = run(net.doc, "receiving")
    _c, consumer = run(net.doc, "consumer")
    low = min(net.source_intensities)
    for bus_id, value in intensities(receiving).items():
        assert intensities(consumer)[bus_id] >= value - 1e-9
        assert value >= low - 1e-9


def test_consumer_intensity_can_exceed_the_dirtiest_source_behind_a_lossy_line():
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0}],
        "loads": [{"id": "L", "bus": "2", "p_mw": 90.0}],
        "branches": [{"id": "b", "from_bus": "1", "to_bus": "2", "p_from_mw": 100.0, "p_to_mw": -90.0}],
    }
    _result, out = run(doc, "consumer")
    assert intensities(out)["2"] == pytest.approx(800 * 100 / 90, rel=1e-12)
    assert out["totals"]["load_carbon_t_per_h"] == pytest.approx(80.0, rel=1e-12)


@PROPERTY
@given(net=any_flow)
def test_all_clean_sources_give_zero_intensity_everywhere(net):
    clean = netgen.with_generator_intensities(net.doc, [0.0] * len(net.doc["generators"]))
    for losses in CONVENTIONS:
        _result, out = run(clean, losses)
        assert all(value == pytest.approx(0.0, abs=1e-12) for value in intensities(out).values())
        assert out["totals"]["generation_carbon_t_per_h"] == 0.0


@PROPERTY
@given(net=any_flow, value=st.floats(min_value=1.0, max_value=1000.0))
def test_equal_source_intensities_give_that_intensity_everywhere_under_receiving(net, value):
    uniform = netgen.with_generator_intensities(net.doc, [value] * len(net.doc["generators"]))
    _result, out = run(uniform, "receiving")
    for bus_id, e in intensities(out).items():
        assert close(e, value, value), bus_id


@PROPERTY
@given(net=lossless)
def test_without_losses_both_conventions_coincide_and_every_megawatt_reaches_a_load(net):
    receiving, out_r = run(net.doc, "receiving")
    _consumer, out_c = run(net.doc, "consumer")
    assert_same_intensities(intensities(out_r), intensities(out_c))
    gen = out_r["totals"]["generation_carbon_t_per_h"]
    assert close(out_r["totals"]["load_carbon_t_per_h"], gen, gen)
    assert out_r["totals"]["loss_carbon_t_per_h"] == pytest.approx(0.0, abs=1e-12)
    origin = origin_shares(receiving)
    generated = dict(zip(receiving.snapshot.gen_ids, receiving.snapshot.gen_p_mw))
    for k, source in enumerate(origin.source_ids):
        assert close(origin.load_power_mw[:, k].sum(), generated[source], generated[source]), source


# ------------------------------------------------------------------------------------------------
# Invariances.


@PROPERTY
@given(net=any_flow, seed=seeds, losses=st.sampled_from(CONVENTIONS))
def test_results_do_not_depend_on_record_order(net, seed, losses):
    _a, before = run(net.doc, losses)
    _b, after = run(netgen.shuffled(net.doc, random.Random(seed)), losses)
    assert_same_intensities(intensities(before), intensities(after))
    branch_before = {b["id"]: b for b in before["branches"]}
    for branch in after["branches"]:
        assert close(branch["carbon_send_t_per_h"], branch_before[branch["id"]]["carbon_send_t_per_h"], 100.0)
    for key in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert close(
            before["totals"][key], after["totals"][key], before["totals"]["generation_carbon_t_per_h"]
        )


@PROPERTY
@given(net=any_flow, seed=seeds, losses=st.sampled_from(CONVENTIONS))
def test_results_do_not_depend_on_the_ids(net, seed, losses):
    renamed, mapping = netgen.renamed(net.doc, random.Random(seed))
    _a, before = run(net.doc, losses)
    _b, after = run(renamed, losses)
    assert_same_intensities(intensities(before), intensities(after), lambda old: mapping[("bus", old)])
    gen_after = {g["id"]: g for g in after["generators"]}
    for g in before["generators"]:
        assert close(g["carbon_t_per_h"], gen_after[mapping[("gen", g["id"])]]["carbon_t_per_h"], 100.0)
    loads_after = {x["id"]: x for x in after["loads"]}
    for x in before["loads"]:
        assert close(x["carbon_t_per_h"], loads_after[mapping[("load", x["id"])]]["carbon_t_per_h"], 100.0)


@PROPERTY
@given(net=any_flow, data=st.data(), losses=st.sampled_from(CONVENTIONS))
def test_splitting_a_branch_into_two_parallel_halves_changes_nothing(net, data, losses):
    if not net.doc["branches"]:
        return
    k = data.draw(st.integers(min_value=0, max_value=len(net.doc["branches"]) - 1))
    original_id = net.doc["branches"][k]["id"]
    _a, before = run(net.doc, losses)
    _b, after = run(netgen.with_branch_split(net.doc, k), losses)
    assert_same_intensities(intensities(before), intensities(after))
    whole = {b["id"]: b for b in before["branches"]}[original_id]
    halves = [b for b in after["branches"] if b["id"] in (original_id + "#a", original_id + "#b")]
    assert len(halves) == 2
    for key in ("p_send_mw", "carbon_send_t_per_h", "carbon_recv_t_per_h", "loss_carbon_t_per_h"):
        assert close(sum(h[key] for h in halves), whole[key], max(abs(whole[key]), 1.0))
    for key in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert close(
            before["totals"][key], after["totals"][key], before["totals"]["generation_carbon_t_per_h"]
        )


@PROPERTY
@given(net=any_flow, alpha=st.floats(min_value=0.01, max_value=100.0), losses=st.sampled_from(CONVENTIONS))
def test_scaling_every_power_scales_carbon_and_keeps_intensities(net, alpha, losses):
    _a, before = run(net.doc, losses)
    _b, after = run(netgen.scaled(net.doc, alpha), losses)
    assert_same_intensities(intensities(before), intensities(after))
    for key in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        expected = before["totals"][key] * alpha
        assert close(after["totals"][key], expected, after["totals"]["generation_carbon_t_per_h"])


@PROPERTY
@given(
    net=any_flow,
    data=st.data(),
    a=st.floats(min_value=0.0, max_value=3.0),
    b=st.floats(min_value=0.0, max_value=3.0),
    losses=st.sampled_from(CONVENTIONS),
)
def test_intensities_are_linear_in_source_intensities(net, data, a, b, losses):
    n_gen = len(net.doc["generators"])
    e_values = st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=n_gen, max_size=n_gen)
    e1, e2 = data.draw(e_values), data.draw(e_values)
    mixed = [a * x + b * y for x, y in zip(e1, e2)]
    _1, out1 = run(netgen.with_generator_intensities(net.doc, e1), losses)
    _2, out2 = run(netgen.with_generator_intensities(net.doc, e2), losses)
    _m, outm = run(netgen.with_generator_intensities(net.doc, mixed), losses)
    i1, i2, im = intensities(out1), intensities(out2), intensities(outm)
    # Consumer intensities may exceed the largest source by the loss factor (<= 1/0.7 per hop).
    scale = max(1.0, 100.0 * max(mixed, default=0.0))
    for bus_id in im:
        assert math.isclose(im[bus_id], a * i1[bus_id] + b * i2[bus_id], rel_tol=1e-9, abs_tol=1e-9 * scale)


# ------------------------------------------------------------------------------------------------
# Origin shares (§6).


@PROPERTY
@given(net=any_flow)
def test_origin_shares_rows_sum_to_one_and_reproduce_intensities(net):
    result, _out = run(net.doc, "receiving")
    origin = origin_shares(result)
    shares = origin.bus_power_share
    assert np.all(shares >= 0)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        shares @ origin.source_intensity_g_per_kwh, result.bus_intensity_g_per_kwh, rtol=1e-9, atol=1e-9
    )


@PROPERTY
@given(net=any_flow, losses=st.sampled_from(CONVENTIONS))
def test_load_carbon_by_source_adds_up_to_the_load_carbon(net, losses):
    result, out = run(net.doc, losses)
    origin = origin_shares(result)
    per_load = origin.load_carbon_t_per_h.sum(axis=1)
    total = max(out["totals"]["generation_carbon_t_per_h"], 1.0)
    for k, load in enumerate(out["loads"]):
        assert close(per_load[k], load["carbon_t_per_h"], total), load["id"]
        assert close(origin.load_power_mw[k].sum(), load["p_mw"], load["p_mw"]), load["id"]


@PROPERTY
@given(net=any_flow)
def test_every_generated_megawatt_goes_to_a_load_or_a_loss(net):
    """Columns of C = diag(P_L) X sum to P_G,k minus the losses supplied by k (§6)."""
    result, _out = run(net.doc, "receiving")
    origin = origin_shares(result)
    snap = result.snapshot
    supplied = origin.load_power_mw.sum(axis=0)
    flows = result.flows
    lost_by_source = (origin.bus_power_share[flows.sending_bus] * flows.p_loss_mw[:, None]).sum(axis=0)
    generated = {gid: p for gid, p in zip(snap.gen_ids, snap.gen_p_mw)}
    for k, source in enumerate(origin.source_ids):
        assert close(supplied[k] + lost_by_source[k], generated[source], generated[source]), source


# ------------------------------------------------------------------------------------------------
# Negative loads and generation, zero-flux buses, islands (§5.3, §5.6, §11).


@PROPERTY
@given(net=any_flow, data=st.data(), losses=st.sampled_from(CONVENTIONS))
def test_a_negative_load_is_a_source_with_its_intensity_or_zero(net, data, losses):
    gens = net.doc["generators"]
    k = data.draw(st.integers(min_value=0, max_value=len(gens) - 1))
    gen = gens[k]
    as_load = {"id": "negative-load", "bus": gen["bus"], "p_mw": -gen["p_mw"]}
    if gen["intensity_g_per_kwh"] != 0.0 or data.draw(st.booleans()):
        as_load["intensity_g_per_kwh"] = gen["intensity_g_per_kwh"]
    changed = dict(net.doc, generators=gens[:k] + gens[k + 1 :], loads=[*net.doc["loads"], as_load])
    _a, before = run(net.doc, losses)
    _b, after = run(changed, losses)
    assert_same_intensities(intensities(before), intensities(after))
    injected = {x["id"]: x for x in after["loads"]}["negative-load"]
    assert close(injected["injected_carbon_t_per_h"], gen["p_mw"] * gen["intensity_g_per_kwh"] / 1000, 100.0)
    assert injected["carbon_t_per_h"] == 0.0
    assert close(
        after["totals"]["generation_carbon_t_per_h"],
        before["totals"]["generation_carbon_t_per_h"],
        before["totals"]["generation_carbon_t_per_h"],
    )


def test_a_negative_load_without_intensity_injects_zero_carbon():
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 60.0, "intensity_g_per_kwh": 900.0}],
        "loads": [{"id": "PV", "bus": "2", "p_mw": -40.0}, {"id": "L", "bus": "2", "p_mw": 100.0}],
        "branches": [{"id": "b", "from_bus": "1", "to_bus": "2", "p_from_mw": 60.0}],
    }
    for method in ("lu", "sweep"):
        _result, out = run(doc, "receiving", method)
        assert intensities(out)["2"] == pytest.approx(900 * 60 / 100, rel=1e-12)
        pv = {x["id"]: x for x in out["loads"]}["PV"]
        assert pv["injected_carbon_t_per_h"] == 0.0
        assert pv["carbon_t_per_h"] == 0.0
        assert out["totals"]["load_carbon_t_per_h"] == pytest.approx(54.0, rel=1e-12)
        assert {b["id"]: b for b in out["buses"]}["2"]["load_mw"] == pytest.approx(100.0)


@PROPERTY
@given(
    net=any_flow,
    data=st.data(),
    e=st.floats(min_value=0.0, max_value=1000.0),
    losses=st.sampled_from(CONVENTIONS),
)
def test_a_negative_generator_is_a_load(net, data, e, losses):
    loads = net.doc["loads"]
    if not loads:
        return
    k = data.draw(st.integers(min_value=0, max_value=len(loads) - 1))
    load = loads[k]
    as_gen = {"id": "pumping", "bus": load["bus"], "p_mw": -load["p_mw"], "intensity_g_per_kwh": e}
    changed = dict(net.doc, loads=loads[:k] + loads[k + 1 :], generators=[*net.doc["generators"], as_gen])
    _a, before = run(net.doc, losses)
    _b, after = run(changed, losses)
    assert_same_intensities(intensities(before), intensities(after))
    pump = {g["id"]: g for g in after["generators"]}["pumping"]
    original = {x["id"]: x for x in before["loads"]}[load["id"]]
    assert pump["carbon_t_per_h"] == 0.0
    assert close(pump["absorbed_carbon_t_per_h"], original["carbon_t_per_h"], 100.0)
    bus_before = {b["id"]: b for b in before["buses"]}
    bus_after = {b["id"]: b for b in after["buses"]}
    assert close(bus_after[load["bus"]]["load_mw"], bus_before[load["bus"]]["load_mw"], 100.0)
    assert close(
        bus_after[load["bus"]]["load_carbon_t_per_h"], bus_before[load["bus"]]["load_carbon_t_per_h"], 100.0
    )
    for key in ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h"):
        assert close(
            before["totals"][key], after["totals"][key], before["totals"]["generation_carbon_t_per_h"]
        )


@PROPERTY
@given(net=any_flow, data=st.data(), declared=st.booleans())
def test_a_bus_without_power_has_no_intensity(net, data, declared):
    anchor = data.draw(st.sampled_from(net.bus_ids))
    doc = dict(net.doc)
    doc["branches"] = [
        *doc["branches"],
        {"id": "idle-branch", "from_bus": anchor, "to_bus": "dead-bus", "p_from_mw": 0.0, "p_to_mw": 0.0},
    ]
    if declared or "buses" in doc:
        doc["buses"] = [*doc.get("buses", [{"id": b} for b in net.bus_ids]), {"id": "dead-bus"}]
    for method in ("lu", "sweep"):
        _r, out = run(doc, "receiving", method)
        buses = {b["id"]: b for b in out["buses"]}
        assert buses["dead-bus"]["intensity_g_per_kwh"] is None
        assert buses["dead-bus"]["flux_mw"] == 0.0
        assert buses["dead-bus"]["load_carbon_t_per_h"] == 0.0
        idle = {b["id"]: b for b in out["branches"]}["idle-branch"]
        assert idle["density_g_per_kwh"] is None
        assert idle["carbon_send_t_per_h"] == 0.0
        _r0, base = run(net.doc, "receiving", method)
        assert_same_intensities(
            intensities(base), {k: v for k, v in intensities(out).items() if k != "dead-bus"}
        )


def test_a_declared_bus_with_nothing_attached_has_null_intensity():
    doc = {
        "buses": [{"id": "1"}, {"id": "2"}, {"id": "spare"}],
        "generators": [{"id": "G", "bus": "1", "p_mw": 10.0, "intensity_g_per_kwh": 500.0}],
        "loads": [{"id": "L", "bus": "2", "p_mw": 10.0}],
        "branches": [{"id": "b", "from_bus": "1", "to_bus": "2", "p_from_mw": 10.0}],
    }
    _r, out = run(doc)
    assert intensities(out) == {"1": 500.0, "2": 500.0, "spare": None}


@PROPERTY
@given(
    left=networks(id_prefix="A:", max_buses=6),
    right=networks(id_prefix="B:", max_buses=6, with_cycle=True),
    losses=st.sampled_from(CONVENTIONS),
)
def test_islands_are_solved_separately(left, right, losses):
    _l, alone_left = run(left.doc, losses)
    _r, alone_right = run(right.doc, losses)
    _result, together = run(netgen.merged(left.doc, right.doc), losses)
    both = intensities(together)
    assert_same_intensities(intensities(alone_left), {k: v for k, v in both.items() if k.startswith("A:")})
    assert_same_intensities(intensities(alone_right), {k: v for k, v in both.items() if k.startswith("B:")})
    for prefix, alone in (("A:", alone_left), ("B:", alone_right)):
        gen = sum(g["carbon_t_per_h"] for g in together["generators"] if g["id"].startswith(prefix))
        load = sum(b["load_carbon_t_per_h"] for b in together["buses"] if b["id"].startswith(prefix))
        loss = sum(b["loss_carbon_t_per_h"] for b in together["branches"] if b["id"].startswith(prefix))
        assert close(gen, load + loss, gen), prefix
        assert close(gen, alone["totals"]["generation_carbon_t_per_h"], gen), prefix


@PROPERTY
@given(left=networks(id_prefix="A:", max_buses=5), right=networks(id_prefix="B:", max_buses=5))
def test_an_island_intensity_ignores_the_other_island_sources(left, right):
    """Changing every source intensity of island B leaves island A untouched."""
    merged = netgen.merged(left.doc, right.doc)
    dirtier = netgen.merged(
        left.doc, netgen.with_generator_intensities(right.doc, [1111.0] * len(right.doc["generators"]))
    )
    _a, before = run(merged)
    _b, after = run(dirtier)
    a_before = {k: v for k, v in intensities(before).items() if k.startswith("A:")}
    a_after = {k: v for k, v in intensities(after).items() if k.startswith("A:")}
    assert_same_intensities(a_before, a_after)
    assert all(v == pytest.approx(1111.0) for k, v in intensities(after).items() if k.startswith("B:"))


# ------------------------------------------------------------------------------------------------
# Near-zero deliveries (measurement noise at the 1e-6 MW floor).


@pytest.mark.parametrize("method", ["lu", "sweep"])
def test_a_branch_that_delivers_only_noise_does_not_break_the_solve(method):
    """Branch "c" sends 10 MW but delivers 5e-7 MW (below the 1e-6 MW floor) to bus 3, whose only
    load is also noise.  Bus 3 is therefore dead (flux <= tol) yet still the receiving end of a
    carrying edge.  Expected: bus 3 intensity None, the 10 MW counted as loss at bus 1's intensity,
    the balance closed to the noise level."""
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0}],
        "loads": [{"id": "L", "bus": "2", "p_mw": 90.0}, {"id": "L3", "bus": "3", "p_mw": 5e-7}],
        "branches": [
            {"id": "b", "from_bus": "1", "to_bus": "2", "p_from_mw": 90.0},
            {"id": "c", "from_bus": "1", "to_bus": "3", "p_from_mw": 10.0, "p_to_mw": -5e-7},
        ],
    }
    _result, out = run(doc, "receiving", method)
    assert intensities(out) == {"1": 800.0, "2": 800.0, "3": None}
    assert out["totals"]["loss_carbon_t_per_h"] == pytest.approx(8.0, abs=1e-5)
    assert abs(out["totals"]["residual_t_per_h"]) < 1e-5


@pytest.mark.parametrize("method", ["lu", "sweep"])
def test_a_kcl_mismatch_is_reported_as_the_residual_not_hidden(method):
    """Bus 3 meters 75 MW of load but receives only 70 MW (reference §11 pitfall 13): intensities
    come from the inflows, and the 5 MW surplus shows up as a carbon residual of -5 x e3."""
    doc = {
        "generators": [
            {"id": "G1", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0},
            {"id": "G2", "bus": "2", "p_mw": 50.0, "intensity_g_per_kwh": 0.0},
        ],
        "loads": [
            {"id": "L2", "bus": "2", "p_mw": 30.0},
            {"id": "L3", "bus": "3", "p_mw": 75.0},
            {"id": "L4", "bus": "4", "p_mw": 50.0},
        ],
        "branches": [
            {"id": "b12", "from_bus": "1", "to_bus": "2", "p_from_mw": 40.0},
            {"id": "b14", "from_bus": "1", "to_bus": "4", "p_from_mw": 60.0},
            {"id": "b23", "from_bus": "2", "to_bus": "3", "p_from_mw": 60.0},
            {"id": "b43", "from_bus": "3", "to_bus": "4", "p_from_mw": -10.0, "p_to_mw": 10.0},
        ],
    }
    _result, out = run(doc, "receiving", method)
    e3 = 8800 / 21
    assert intensities(out)["3"] == pytest.approx(e3, rel=1e-12)
    assert out["totals"]["residual_t_per_h"] == pytest.approx(-5 * e3 / 1000, rel=1e-12)

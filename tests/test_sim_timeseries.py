"""The grid over time: convergence, losses, balance, reverse flow, determinism, fast PF == pp.runpp."""

from __future__ import annotations

import copy
import json
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.powerflow import FastPowerFlow, PandapowerFlow
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig, build_inputs
from carbonflow.sim.truth import ElementSource, PointRef, TruthFeed

warnings.filterwarnings("ignore", module="pandapower")
START = datetime(2025, 6, 1, 16, 0, tzinfo=UTC)  # Monday 00:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def net():
    return reference_grid()


@pytest.fixture(scope="module")
def week(net):
    """A simulated week at 30-minute steps."""
    simulation = Simulation(net, SimConfig(start=START, interval_s=1800, count=7 * 48, seed=3))
    return [truth for chunk in simulation.chunks() for truth in chunk]


def test_ac_power_flow_converges_every_interval_of_a_week(week):
    assert len(week) == 336
    assert all(truth.chunk.iterations[truth.t] >= 1 for truth in week)


def test_losses_are_positive_and_plausible(week):
    shares = [truth.totals()["loss_mw"] / truth.totals()["load_mw"] for truth in week]
    assert min(shares) > 0.005 and max(shares) < 0.06


def test_three_side_balance_closes_every_interval(week):
    for truth in week:
        totals = truth.totals()
        generation = totals["generation_carbon_t_per_h"]
        assert generation == pytest.approx(
            totals["load_carbon_t_per_h"] + totals["loss_carbon_t_per_h"], rel=1e-9
        )


def test_pv_user_exports_at_a_sunny_midday(week):
    middays = [t for t in week if 11 <= (t.ts + timedelta(hours=8)).hour <= 13]
    supply_end = [
        max(t.value("branch", branch_id, "p_mw", "to") for branch_id in _supply_branches(t, "U04"))
        for t in middays
    ]
    assert max(supply_end) > 1.0  # power flows from the user's bus into its supply transformer
    assert min(t.value("load", "U04", "intensity_g_per_kwh") for t in middays) == 0.0


def _supply_branches(truth, bus_id):
    index = truth.chunk.index
    return [b for b, to in zip(index.branch_ids, index.branch_to, strict=True) if to == bus_id]


def test_battery_charges_and_discharges_with_a_carbon_state(week):
    p = np.array([t.value("storage", "U10-BESS", "p_mw") for t in week])
    assert p.max() > 0 and p.min() < 0
    discharging = [t for t in week if t.value("storage", "U10-BESS", "p_mw") < 0]
    assert all(t.value("storage", "U10-BESS", "intensity_g_per_kwh") > 0 for t in discharging)


def test_truth_snapshot_is_a_c1_document_that_reproduces_the_result(week):
    truth = week[100]
    document = json.loads(json.dumps(truth.snapshot_document()))
    again = solve(snapshot_from_dict(document))
    assert again.totals["generation_carbon_t_per_h"] == pytest.approx(
        truth.result().totals["generation_carbon_t_per_h"], rel=1e-9
    )
    assert {g["id"] for g in document["generators"]} >= {"G1-1", "G3-1", "G3-2", "U04-PV"}


def test_counters_integrate_power(week):
    hours = 0.5
    energy = sum(t.value("generator", "G3-1", "p_mw") for t in week) * hours * 1000
    assert week[-1].value("generator", "G3-1", "export_energy_kwh") == pytest.approx(energy, rel=1e-9)


def test_same_seed_same_output_other_seed_different(net):
    def run(seed):
        simulation = Simulation(net, SimConfig(start=START, interval_s=3600, count=24, seed=seed))
        return np.concatenate([c.values["branch"]["p_mw@from"] for c in simulation.chunks()])

    assert np.array_equal(run(7), run(7))
    assert not np.allclose(run(7), run(8))


def test_fast_power_flow_equals_pp_runpp(net):
    inputs = build_inputs(net, SimConfig(start=START, interval_s=900, count=96, seed=1))
    fast, reference = FastPowerFlow(copy.deepcopy(net)), PandapowerFlow(copy.deepcopy(net))
    for k in (0, 30, 50, 75, 95):
        row = (
            inputs.load_p_mw[k],
            inputs.load_q_mvar[k],
            inputs.sgen_p_mw[k],
            None,
            inputs.gen_p_mw[k],
            inputs.storage_p_mw[k],
        )
        a, b = fast.solve(*row), reference.solve(*row)
        assert np.max(np.abs(a.vm_pu - b.vm_pu)) < 1e-6
        assert np.max(np.abs(a.va_degree - b.va_degree)) < 1e-4
        assert np.max(np.abs(a.line - b.line)) < 1e-4  # MW/Mvar (1e-6 pu of 100 MVA)
        assert np.max(np.abs(a.trafo - b.trafo)) < 1e-4
        assert np.max(np.abs(a.gen_p_mw - b.gen_p_mw)) < 1e-4


def test_pandapower_path_gives_the_same_truth(net):
    config = SimConfig(start=START, interval_s=3600, count=3, seed=2)
    fast = next(Simulation(net, config).chunks())
    slow = next(Simulation(net, config, method="pandapower").chunks())
    assert np.allclose(fast.values["branch"]["p_mw@from"], slow.values["branch"]["p_mw@from"], atol=1e-4)
    assert np.allclose(
        fast.values["bus"]["intensity_g_per_kwh"],
        slow.values["bus"]["intensity_g_per_kwh"],
        atol=1e-6,
        equal_nan=True,
    )


def test_diverging_power_flow_names_the_interval(net):
    simulation = Simulation(net, SimConfig(start=START, interval_s=3600, count=2))
    simulation.inputs.load_p_mw[1] *= 8.0
    simulation.inputs.load_q_mvar[1] *= 8.0
    with pytest.raises(SimulationError, match=r"interval 1 \(ending 2025-06-01T18:00:00\+00:00\)"):
        list(simulation.chunks())


def test_naive_start_is_refused():
    with pytest.raises(SimulationError, match="timezone"):
        SimConfig(start=datetime(2025, 6, 1))


def test_element_source_reads_points_for_devices(week):
    feed = TruthFeed()
    for truth in week[:4]:
        feed.publish(truth)
    source = ElementSource(
        feed,
        {
            "p_kw": PointRef("load", "U07", "p_mw", scale=1000.0),
            "energy": PointRef("load", "U07", "import_energy_kwh"),
            "u_v": PointRef("bus", "S041", "u_kv", scale=1000.0),
        },
    )
    third = week[2]
    inside = third.ts - timedelta(minutes=15)
    assert source.read("p_kw", inside) == pytest.approx(third.value("load", "U07", "p_mw") * 1000)
    halfway = (
        week[1].value("load", "U07", "import_energy_kwh") + third.value("load", "U07", "import_energy_kwh")
    ) / 2
    assert source.read("energy", inside) == pytest.approx(halfway)
    with pytest.raises(KeyError):
        source.read("nothing", inside)


def test_sim_run_command_writes_truth_and_totals(tmp_path):
    import argparse
    import csv
    import io

    from carbonflow.commands import sim

    parser = argparse.ArgumentParser()
    sim.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "sim",
            "run",
            "--hours",
            "2",
            "--interval",
            "900",
            "--out",
            str(tmp_path),
            "--start",
            "2025-06-02T04:00:00Z",
            "--seed",
            "5",
        ]
    )
    err = io.StringIO()
    assert args.run(args, io.StringIO(), err) == 0
    assert "8/8" in err.getvalue()
    lines = (tmp_path / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8
    first = json.loads(lines[0])
    assert first["ts"] == "2025-06-02T04:15:00Z" and first["interval_s"] == 900
    assert set(first) >= {"snapshot", "result"}
    rows = list(csv.DictReader((tmp_path / "totals.csv").open(encoding="utf-8")))
    assert len(rows) == 8 and float(rows[0]["loss_percent"]) > 0
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["intervals"] == 8

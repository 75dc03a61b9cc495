"""Batch solving, time integration and storage carbon state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.batch import SnapshotSeries, solve_batch
from carbonflow.engine.integrate import energy_weighted_intensity, integrate
from carbonflow.engine.storage import StorageState, solve_series_with_storage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    return snapshot_from_dict(json.loads((EXAMPLES / f"{name}.json").read_text()))


def ieee14_series(n_time: int, seed: int = 3) -> SnapshotSeries:
    """IEEE-14 DC flows scaled per hour, with some branches flipped by a circulating component on the
    loop 4-5 / 5-6 ... kept consistent with KCL by scaling everything together, plus varying intensities."""
    net = load("ieee14_dc")
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 1.7, (n_time, 1))
    return SnapshotSeries(
        net,
        gen_p_mw=net.gen_p_mw * scale,
        load_p_mw=net.load_p_mw * scale,
        branch_p_from_mw=net.branch_p_from_mw * scale,
        gen_intensity_g_per_kwh=rng.uniform(0, 1000, (n_time, len(net.gen_ids))),
    )


def reversed_four_bus_series() -> SnapshotSeries:
    """Four-bus lossy case, then the same hour with branch 4-3 reversed (3 feeds 4): two patterns."""
    net = load("four_bus_lossy")
    gen = np.array([[102.0, 50.0], [92.0, 70.0]])
    load_p = np.array([[30.0, 70.0, 50.0], [30.0, 70.0, 60.0]])
    # hour 2: G1 92 -> b12 sends 32 (30 arrive) , b14 60; bus 2: 30+70=100 in, 30 load, 70 to bus 3;
    # bus 3: 70 in, 70 load... make bus 3 pass 0 to 4 -> bus 4 gets 60 from 1 and needs 60.
    p_from = np.array([[42.0, 60.0, 60.0, -10.0], [32.0, 60.0, 70.0, 0.0]])
    p_to = np.array([[-40.0, -60.0, -60.0, 10.0], [-30.0, -60.0, -70.0, 0.0]])
    return SnapshotSeries(net, gen_p_mw=gen, load_p_mw=load_p, branch_p_from_mw=p_from, branch_p_to_mw=p_to)


@pytest.mark.parametrize("losses", ["receiving", "consumer"])
@pytest.mark.parametrize("method", ["auto", "lu", "sweep"])
def test_batch_equals_single_snapshot_solves(losses, method):
    series = ieee14_series(40)
    batch = solve_batch(series, losses, method=method)
    for t in range(series.n_time):
        single = solve(series.snapshot(t), losses)
        np.testing.assert_allclose(
            batch.at(t).bus_intensity_g_per_kwh, single.bus_intensity_g_per_kwh, atol=1e-9
        )
        np.testing.assert_allclose(
            batch.at(t).branch_carbon_send_t_per_h, single.branch_carbon_send_t_per_h, atol=1e-9
        )
        assert batch.at(t).totals == pytest.approx(single.totals, abs=1e-9)


def test_chunked_batch_equals_one_piece_and_names_the_right_snapshot():
    series = ieee14_series(23)
    whole = solve_batch(series, chunk=100)
    pieces = solve_batch(series, chunk=5)
    for name in whole.accounts.__dataclass_fields__:
        # chunks group snapshots differently, so sweep and LU may swap: equal to round-off
        np.testing.assert_allclose(getattr(pieces.accounts, name), getattr(whole.accounts, name), atol=1e-9)
    np.testing.assert_array_equal(pieces.flows.direction, whole.flows.direction)
    assert pieces.at(17).totals == pytest.approx(whole.at(17).totals, abs=1e-9)
    gen = series.arrays["gen_p_mw"].copy()
    gen[12] = 0.0  # snapshot 12 (third chunk) has load and no source
    with pytest.raises(SnapshotError, match=r"^snapshot 12: "):
        solve_batch(series.window(0, 23, gen_p_mw=gen), chunk=5)


def test_series_whose_directions_change_every_snapshot_solve_one_by_one_to_the_same_answer():
    series = reversed_four_bus_series()  # 2 snapshots, 2 patterns: nothing to share
    auto, grouped = solve_batch(series), solve_batch(series, method="sweep")
    for name in auto.accounts.__dataclass_fields__:
        np.testing.assert_allclose(getattr(auto.accounts, name), getattr(grouped.accounts, name), atol=1e-9)
    assert auto.n_patterns == 2 and auto.at(1).totals == pytest.approx(grouped.at(1).totals, abs=1e-9)


def test_batch_groups_snapshots_by_flow_direction_pattern():
    batch = solve_batch(reversed_four_bus_series(), method="sweep")
    assert batch.n_patterns == 2
    assert batch.n_lu_snapshots == 0
    assert solve_batch(reversed_four_bus_series()).n_lu_snapshots == 0  # the kernel sweeps every DAG
    assert solve_batch(reversed_four_bus_series(), method="lu").n_lu_snapshots == 2
    e = batch.accounts.bus_intensity_g_per_kwh
    assert e[0] == pytest.approx([800, 3200 / 9, 8800 / 21, 800])
    # hour 2: bus 2 mixes 30 MW of G1 (800) with 70 MW of G2 (0); bus 3 is fed from bus 2 only
    assert e[1] == pytest.approx([800, 240, 240, 800])
    assert np.abs(batch.accounts.residual_t_per_h).max() < 1e-9


def test_batch_names_the_snapshot_and_record_of_bad_input():
    series = reversed_four_bus_series()
    bad = series.window(
        0,
        2,
        gen_p_mw=np.array([[102.0, 50.0], [0.0, 0.0]]),
        branch_p_from_mw=np.array([[42.0, 60.0, 60.0, -10.0], [0.0, 0.0, 0.0, 0.0]]),
        branch_p_to_mw=np.array([[-40.0, -60.0, -60.0, 10.0], [0.0, 0.0, 0.0, 0.0]]),
    )
    with pytest.raises(SnapshotError, match=r"snapshot 1: .*load but no source"):
        solve_batch(bad)


def test_series_rejects_arrays_of_the_wrong_shape():
    net = load("four_bus_lossy")
    with pytest.raises(SnapshotError, match="load_p_mw has shape"):
        SnapshotSeries(
            net, gen_p_mw=np.zeros((3, 2)), load_p_mw=np.zeros((3, 2)), branch_p_from_mw=np.zeros((3, 4))
        )


def test_period_average_intensity_is_energy_weighted_not_arithmetic():
    # reference §8: 800 g/kWh for 1 h at 10 MW and 200 g/kWh for 1 h at 30 MW -> 350, not 500
    average = energy_weighted_intensity(np.array([800.0, 200.0]), np.array([10.0, 30.0]))
    assert average == pytest.approx(350.0)


def test_integration_of_ieee14_for_a_quarter_hour_matches_reference():
    net = load("ieee14_dc")
    series = SnapshotSeries(
        net,
        gen_p_mw=net.gen_p_mw[None, :],
        load_p_mw=net.load_p_mw[None, :],
        branch_p_from_mw=net.branch_p_from_mw[None, :],
    )
    period = integrate(solve_batch(series), 0.25)
    bus4 = net.bus_ids.index("4")
    assert period.bus_load_carbon_t[bus4] == pytest.approx(9.473455, abs=1e-6)  # reference §8
    assert period.total_generation_carbon_t == pytest.approx(135.88 / 4)
    assert period.residual_t == pytest.approx(0.0, abs=1e-9)


def test_integration_balances_over_varying_intervals_with_losses():
    series = reversed_four_bus_series()
    hours = np.array([0.25, 1.5])
    batch = solve_batch(series)
    period = integrate(batch, hours)
    assert period.total_generation_carbon_t == pytest.approx(
        period.total_load_carbon_t + period.total_loss_carbon_t, abs=1e-9
    )
    e = batch.accounts.bus_intensity_g_per_kwh[:, 3]
    energy = batch.accounts.bus_load_mw[:, 3] * hours
    assert period.bus_average_intensity_g_per_kwh[3] == pytest.approx((e * energy).sum() / energy.sum())
    assert period.gen_energy_mwh == pytest.approx([102 * 0.25 + 92 * 1.5, 50 * 0.25 + 70 * 1.5])


def battery_series(discharge_mw: float = 8.1) -> SnapshotSeries:
    doc = {
        "generators": [{"id": "G1", "bus": "1", "p_mw": 0, "intensity_g_per_kwh": 400}],
        "loads": [{"id": "L2", "bus": "2", "p_mw": 0}],
        "branches": [{"id": "b12", "from_bus": "1", "to_bus": "2", "p_from_mw": 0}],
        "storage": [{"id": "S1", "bus": "2", "p_mw": 0}],
    }
    net = snapshot_from_dict(doc)
    return SnapshotSeries(
        net,
        gen_p_mw=np.array([[19.0], [10.0 - discharge_mw]]),
        load_p_mw=np.array([[10.0], [10.0]]),
        branch_p_from_mw=np.array([[19.0], [10.0 - discharge_mw]]),
        storage_p_mw=np.array([[9.0], [-discharge_mw]]),
    )


def test_storage_passes_on_exactly_the_carbon_it_stored():
    # reference §5.4: charge 9 MW for 1 h at 400 g/kWh; discharge with eta_d = 0.9 at 444.44 g/kWh
    result = solve_series_with_storage(battery_series(), {"S1": StorageState(eta_discharge=0.9)}, 1.0)
    assert result.storage_carbon_t[:, 0] == pytest.approx([3.6, 0.0])
    assert result.storage_energy_mwh[:, 0] == pytest.approx([9.0, 0.0])
    discharged = result.batch.at(1).injected_carbon_t_per_h("storage")[0]
    assert discharged == pytest.approx(3.6)
    assert result.batch.at(1).bus_intensity_g_per_kwh[1] == pytest.approx((1.9 * 400 + 3600) / 10)
    assert np.abs(result.batch.accounts.residual_t_per_h).max() < 1e-9


def test_partial_discharge_keeps_the_stored_intensity():
    result = solve_series_with_storage(battery_series(4.05), {"S1": StorageState(eta_discharge=0.9)}, 1.0)
    state = result.final_states[0]
    assert state.energy_mwh == pytest.approx(4.5)
    assert state.stored_intensity_g_per_kwh == pytest.approx(400.0)


def test_storage_discharging_without_intensity_is_rejected_in_a_single_snapshot():
    series = battery_series()
    with pytest.raises(SnapshotError, match='storage \\(id "S1"\\): discharges'):
        solve(series.snapshot(1))

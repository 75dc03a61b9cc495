"""Uncertainty of a metered snapshot, propagated by Monte Carlo from its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.origin import origin_shares
from carbonflow.engine.uncertainty import InputUncertainty, propagate

SNAPSHOTS = Path(__file__).resolve().parents[1] / "examples"  # the reference snapshots, kept in the repo


def four_bus():
    document = json.loads((SNAPSHOTS / "four_bus_lossy.json").read_text())
    return snapshot_from_dict(document.get("snapshot", document))


def test_exact_inputs_give_a_zero_band():
    snapshot = four_bus()
    band = propagate(snapshot, InputUncertainty.exact(snapshot))
    assert np.allclose(band.bus_intensity_g_per_kwh, 0.0, atol=1e-9)
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in band.totals.values())


def test_generator_factor_uncertainty_reaches_each_bus_by_its_origin_shares():
    """Bus intensity is linear in the generators' factors with the origin shares as weights, so the
    band is k·sqrt(Σ (share·σ)²) — the Monte Carlo must find it within its sampling error."""
    snapshot = four_bus()
    sigma = 0.02 * snapshot.gen_intensity_g_per_kwh  # a zero-emission unit's 0 g/kWh is exact
    inputs = InputUncertainty.exact(snapshot)
    inputs = InputUncertainty(
        inputs.gen_p_mw,
        sigma,
        inputs.load_p_mw,
        inputs.branch_p_from_mw,
        inputs.branch_p_to_mw,
        inputs.storage_p_mw,
    )
    band = propagate(snapshot, inputs, samples=4000, seed=7)
    origin = origin_shares(solve(snapshot))
    by_source = {source: k for k, source in enumerate(origin.source_ids)}
    for b, bus in enumerate(snapshot.bus_ids):
        row = np.array(
            [origin.bus_power_share[b, by_source[g]] if g in by_source else 0.0 for g in snapshot.gen_ids]
        )
        expected = 2.0 * np.sqrt(np.sum((row * sigma) ** 2))
        assert band.bus_intensity_g_per_kwh[b] == pytest.approx(expected, rel=0.05), bus


def test_the_same_interval_always_gets_the_same_band():
    snapshot = four_bus()
    inputs = InputUncertainty(
        0.01 * snapshot.gen_p_mw,
        0.01 * snapshot.gen_intensity_g_per_kwh,
        0.01 * snapshot.load_p_mw,
        0.01 * np.abs(snapshot.branch_p_from_mw),
        0.01 * np.abs(snapshot.branch_p_to_mw),
        np.zeros(0),
    )
    first, second = propagate(snapshot, inputs, seed=3), propagate(snapshot, inputs, seed=3)
    assert np.array_equal(first.bus_intensity_g_per_kwh, second.bus_intensity_g_per_kwh)
    assert first.totals == second.totals and first.totals["generation_carbon_t_per_h"] > 0


def test_a_mis_shaped_uncertainty_is_refused():
    snapshot = four_bus()
    exact = InputUncertainty.exact(snapshot)
    bad = InputUncertainty(np.zeros(99), *[getattr(exact, f) for f in list(exact.__dataclass_fields__)[1:]])
    with pytest.raises(ValueError, match="shape"):
        propagate(snapshot, bad)


def nearly_idle_tie(feeder_mw: float = 0.5, sigma_mw: float = 3.0):
    """Bus 3 fed by a strong line from bus 1 and a nearly idle one from bus 2 (whose unit just covers
    its own load); a lone consumer at bus 4 hangs on a nearly idle spur; the idle ends are uncertain."""
    snapshot = snapshot_from_dict(
        {
            "generators": [
                {"id": "G1", "bus": "1", "p_mw": 100.4, "intensity_g_per_kwh": 800.0},
                {"id": "G2", "bus": "2", "p_mw": 50.0, "intensity_g_per_kwh": 0.0},
            ],
            "loads": [
                {"id": "L2", "bus": "2", "p_mw": 50.0 - feeder_mw},
                {"id": "L3", "bus": "3", "p_mw": 100.0 + feeder_mw - 0.1},
                {"id": "L4", "bus": "4", "p_mw": 0.3},
            ],
            "branches": [
                {"id": "b13", "from_bus": "1", "to_bus": "3", "p_from_mw": 100.0, "p_to_mw": -99.9},
                {"id": "b23", "from_bus": "2", "to_bus": "3", "p_from_mw": feeder_mw, "p_to_mw": -feeder_mw},
                {"id": "b14", "from_bus": "1", "to_bus": "4", "p_from_mw": 0.4, "p_to_mw": -0.3},
            ],
        }
    )
    exact = InputUncertainty.exact(snapshot)
    idle = np.array([0.0, sigma_mw, 0.0])
    spur = np.array([0.0, 0.0, 0.5])
    return snapshot, InputUncertainty(
        exact.gen_p_mw, exact.gen_intensity_g_per_kwh, exact.load_p_mw, idle + spur, idle + spur,
        exact.storage_p_mw,
    )  # fmt: skip


def test_an_impossible_draw_is_drawn_again_or_left_out_and_never_fails_the_band():
    """Ends of a nearly idle branch drawn on their own come out delivering power at both ends in about a
    quarter of the draws, and the spur's consumer is drawn with nothing flowing to it in about a fifth:
    the engine refuses such draws.  They must neither fail the interval's band nor bend it."""
    snapshot, inputs = nearly_idle_tie()
    solve(snapshot)  # the interval itself is possible
    band = propagate(snapshot, inputs, samples=256, seed=3)
    assert np.all(np.isfinite(band.bus_intensity_g_per_kwh))
    assert 0 < band.rejected < 128 and band.samples == 256 - band.rejected  # the spur's draws left out
    assert band.samples + band.rejected == 256
    again = propagate(snapshot, inputs, samples=256, seed=3)  # redraws are seeded too
    assert np.array_equal(again.bus_intensity_g_per_kwh, band.bus_intensity_g_per_kwh)
    # bus 3 takes 0 to ~6 MW of G2's zero-carbon power out of ~106 MW: a band of a few % of 800 g/kWh
    assert 1.0 < band.bus_intensity_g_per_kwh[snapshot.bus_ids.index("3")] < 80.0
    assert band.bus_intensity_g_per_kwh[snapshot.bus_ids.index("1")] == pytest.approx(0.0, abs=1e-9)


def test_a_band_with_mostly_impossible_draws_is_unknown_not_an_error():
    snapshot, inputs = nearly_idle_tie()
    spur_only = InputUncertainty(
        inputs.gen_p_mw, inputs.gen_intensity_g_per_kwh, inputs.load_p_mw,
        np.array([0.0, 0.0, 40.0]), np.array([0.0, 0.0, 40.0]), inputs.storage_p_mw,
    )  # fmt: skip
    band = propagate(snapshot, spur_only, samples=64, seed=1)
    assert band.samples == 0 and band.rejected > 32
    assert np.all(np.isnan(band.bus_intensity_g_per_kwh))

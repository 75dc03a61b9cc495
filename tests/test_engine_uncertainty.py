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

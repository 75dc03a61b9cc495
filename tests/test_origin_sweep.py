"""Origin shares by the compiled sweep of the flow DAG (carbonflow/engine/origin.py) against the LU reference.

The random networks of tests/test_engine_fastpath.py (acyclic and with a directed flow cycle, second
islands, negative loads, storage, odd branches): every array of ``origin_shares(result)`` must equal
``origin_shares(result, method="lu")`` within 1e-9, NaN where the reference has NaN, under both loss
conventions, or both must refuse with the same error (a singular system: only a directed cycle can
make one, and the sweep hands those to the LU); a cyclic flow graph must make the sweep give up.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, example, given
from netgen import networks
from test_engine_fastpath import ATOL, CONVENTIONS, PROPERTY, RTOL, disturbed

from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.origin import _dag_shares, origin_shares

# a two-bus directed cycle that solve() meters (no generation: zero intensity) but whose origin system is
# singular: both methods must refuse it alike (found by hypothesis)
SINGULAR_CYCLE = {
    "generators": [{"id": "G", "bus": "A", "p_mw": 0.0, "intensity_g_per_kwh": 0.0}],
    "loads": [{"id": "L", "bus": "B", "p_mw": 0.875}],
    "branches": [
        {"id": "x", "from_bus": "B", "to_bus": "A", "p_from_mw": 1.0, "p_to_mw": -1.0},
        {"id": "y", "from_bus": "B", "to_bus": "A", "p_from_mw": -1.875, "p_to_mw": 2.0},
    ],
}
ARRAYS = ("source_intensity_g_per_kwh", "bus_power_share", "load_power_mw", "load_carbon_t_per_h")


def assert_same_origin(fast, reference) -> None:
    assert fast.source_ids == reference.source_ids
    for name in ARRAYS:
        actual, expected = getattr(fast, name), getattr(reference, name)
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=name)


def _origin(result, method: str):
    try:
        return origin_shares(result, method=method), None
    except ArithmeticError as error:  # SingularSystemError
        return None, str(error)


def assert_same_outcome(result) -> None:
    fast, fast_error = _origin(result, "sweep")
    reference, reference_error = _origin(result, "lu")
    assert fast_error == reference_error
    if reference is not None:
        assert_same_origin(fast, reference)


def _is_dag(result, losses: str) -> bool:
    """Whether the sweep accepts ``result``'s carrying flow graph under ``losses``."""
    from carbonflow.engine.accounts import carbon_weights
    from carbonflow.engine.cef import carrying_edges

    flows = result.flows
    edges = carrying_edges(flows, carbon_weights(flows, losses, result.tol_mw))
    live = result.bus_flux_mw > result.tol_mw
    return _dag_shares(
        live, flows.sending_bus[edges].astype(np.int64), flows.receiving_bus[edges].astype(np.int64),
        np.ones(int(edges.sum())), np.ones(len(live)), np.zeros(0, np.int64), np.zeros(0),
        np.empty((len(live), 0)),
    )  # fmt: skip


@PROPERTY
@given(doc=disturbed(), losses=CONVENTIONS)
@example(doc=SINGULAR_CYCLE, losses="consumer")
def test_origin_sweep_equals_the_lu_reference(doc, losses):
    try:
        result = solve(snapshot_from_dict(doc), losses)
    except SnapshotError:
        event("unmeterable")
        return
    event("dag" if _is_dag(result, "receiving") else "cycle")
    assert_same_outcome(result)


@PROPERTY
@given(net=networks(with_cycle=True), losses=CONVENTIONS)
def test_a_directed_cycle_goes_to_the_lu(net, losses):
    result = solve(snapshot_from_dict(net.doc), losses)
    assert not _is_dag(result, "receiving")  # the circulating flow makes a directed cycle
    assert_same_outcome(result)


def test_a_chain_by_hand():
    """G1 (100 MW) at bus 1 → bus 2 (+ G2, 50 MW) → bus 3 (load), lossless: bus 3 is 2/3 G1, 1/3 G2."""
    doc = {
        "generators": [
            {"id": "G1", "bus": "1", "p_mw": 100.0, "intensity_g_per_kwh": 900.0},
            {"id": "G2", "bus": "2", "p_mw": 50.0, "intensity_g_per_kwh": 0.0},
        ],
        "loads": [{"id": "L", "bus": "3", "p_mw": 150.0}],
        "branches": [
            {"id": "a", "from_bus": "1", "to_bus": "2", "p_from_mw": 100.0, "p_to_mw": -100.0},
            {"id": "b", "from_bus": "2", "to_bus": "3", "p_from_mw": 150.0, "p_to_mw": -150.0},
        ],
    }
    origin = origin_shares(solve(snapshot_from_dict(doc)))
    assert origin.source_ids == ("G1", "G2")
    np.testing.assert_allclose(origin.bus_power_share, [[1, 0], [2 / 3, 1 / 3], [2 / 3, 1 / 3]], atol=1e-15)
    np.testing.assert_allclose(origin.load_carbon_t_per_h, [[100 * 0.9, 0.0]], atol=1e-12)


def test_an_unknown_method_is_refused():
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 1.0, "intensity_g_per_kwh": 1.0}],
        "loads": [{"id": "L", "bus": "1", "p_mw": 1.0}],
        "branches": [],
    }
    with pytest.raises(ValueError, match="unknown origin method"):
        origin_shares(solve(snapshot_from_dict(doc)), method="dense")

"""The origin's sparse parts (``engine.document.origin_parts``: one compiled pass per matrix, the carbon
shares divided entry by entry) are the parts the dense numpy code made before (issue 17 §4), bit for bit:
the stored packed origin and the result hash are made of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given
from test_engine_fastpath import CONVENTIONS, PROPERTY, disturbed

from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.document import _SHARE_FLOOR, _carbon_fractions, _sparse_form, origin_parts
from carbonflow.engine.origin import Origin, _to_finite, origin_shares


def dense_form(matrix: np.ndarray, defined: np.ndarray):
    """The former ``_sparse_form``: numpy over the whole matrix."""
    with np.errstate(invalid="ignore"):
        kept = matrix > _SHARE_FLOOR
    kept[~defined] = False
    rows, columns = np.nonzero(kept)
    counts = np.bincount(rows, minlength=len(matrix)).astype(np.int64)
    counts[~defined] = -1
    return counts, columns.astype(np.int64), matrix[rows, columns]


def dense_parts(origin: Origin):
    """The former ``origin_parts``: the carbon shares as a dense matrix first."""
    bus_defined = ~np.isnan(origin.bus_power_share).any(axis=1)
    fractions, totals = _carbon_fractions(origin.load_carbon_t_per_h)
    every_load = np.ones(len(totals), dtype=bool)
    return (
        dense_form(origin.bus_power_share, bus_defined),
        dense_form(origin.load_power_mw, every_load),
        dense_form(origin.load_carbon_t_per_h, every_load),
        dense_form(fractions, totals > 0),
    )


def assert_same(parts, expected) -> None:
    assert len(parts) == len(expected)
    for part, reference in zip(parts, expected):
        for array, wanted in zip(part, reference):
            assert array.dtype == wanted.dtype and array.shape == wanted.shape
            assert array.tobytes() == wanted.tobytes()


@PROPERTY
@given(doc=disturbed(), losses=CONVENTIONS)
def test_the_parts_are_the_dense_parts(doc, losses):
    try:
        origin = origin_shares(solve(snapshot_from_dict(doc), losses))
    except (SnapshotError, ArithmeticError):
        event("unmeterable")
        return
    assert_same(origin_parts(origin), dense_parts(origin))


@pytest.mark.parametrize("seed", range(6))
def test_odd_matrices(seed):
    """NaN rows and entries, negative and tiny values, entries at the floor, totals zero or negative."""
    rng = np.random.default_rng(seed)
    n_bus, n_load, k = 40, 30, 17
    bus = rng.random((n_bus, k)) * (rng.random((n_bus, k)) < 0.3)
    bus[::7] = np.nan
    bus[3, 2] = np.nan  # a row with one NaN: undefined
    bus[4, :3] = (_SHARE_FLOOR, np.nextafter(_SHARE_FLOOR, 1.0), -0.5)
    power = rng.random((n_load, k)) * (rng.random((n_load, k)) < 0.4)
    carbon = power * rng.choice([0.0, 1e-14, 0.3, 800.0], size=k)
    carbon[5] = -carbon[5]  # a negative total
    carbon[6] = 0.0  # a zero total
    carbon[7, 0] = np.nan  # a NaN total
    carbon[8, :4] = (1e-30, 1.0, -1e-3, np.inf)
    origin = Origin(tuple(f"s{j}" for j in range(k)), np.ones(k), bus, power, carbon)
    with np.errstate(invalid="ignore"):
        expected = dense_parts(origin)
    assert_same(origin_parts(origin), expected)
    assert_same(
        (_sparse_form(bus, np.ones(n_bus, dtype=bool)),), (dense_form(bus, np.ones(n_bus, dtype=bool)),)
    )


@pytest.mark.parametrize(
    "special",
    [
        (),
        (np.nan,),
        (np.nan, np.nan),
        (np.inf,),
        (-np.inf, np.nan),
        (np.nan, -0.0),
        (np.inf, -np.inf, np.nan),
    ],
)
def test_to_finite_is_nan_to_num(special):
    rng = np.random.default_rng(len(special))
    values = rng.normal(size=(9, 7))
    values[1, 2] = -0.0
    for k, value in enumerate(special):
        values[k + 3, (2 * k) % 7] = value
        values[8, k] = value
    assert _to_finite(values.copy()).tobytes() == np.nan_to_num(values.copy(), copy=False).tobytes()

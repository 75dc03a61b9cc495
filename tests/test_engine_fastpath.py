"""The compiled fast path (carbonflow/engine/kernel.py) against the numpy LU reference path.

Random networks from tests/netgen.py — acyclic and with a directed flow cycle — then disturbed:
a second island, negative loads (with and without intensity), charging and discharging storage,
branches sending at both ends, idle and noise-only branches, and sometimes inputs that cannot be
metered.  Every output of ``solve()`` (auto = kernel) must equal ``solve(method="lu")`` within 1e-9
(g/kWh, MW, t/h), or both must fail with the same message; ``solve_batch`` likewise per snapshot.
"""

from __future__ import annotations

import copy

import netgen
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from netgen import networks

from carbonflow.engine import SnapshotError, snapshot_from_dict, solve, warm_up
from carbonflow.engine.batch import SnapshotSeries, solve_batch

ATOL = 1e-9
RTOL = 1e-11
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
CONVENTIONS = st.sampled_from(("receiving", "consumer"))
powers = st.floats(min_value=0.5, max_value=300.0)
intensities = st.floats(min_value=0.0, max_value=1200.0)


@st.composite
def disturbed(draw) -> dict:
    """A netgen network (sometimes cyclic, sometimes two islands) with extra elements and branches."""
    cyclic = draw(st.booleans())
    doc = copy.deepcopy(draw(networks(id_prefix="A:", with_cycle=cyclic)).doc)
    if draw(st.booleans()):
        doc = netgen.merged(
            doc, draw(networks(id_prefix="B:", max_buses=5, with_cycle=draw(st.booleans()))).doc
        )
    buses = sorted({g["bus"] for g in doc["generators"]} | {ld["bus"] for ld in doc["loads"]})
    buses = sorted(set(buses) | {b[end] for b in doc["branches"] for end in ("from_bus", "to_bus")})
    bus = st.sampled_from(buses)
    for k in range(draw(st.integers(0, 3))):  # negative loads: exports, some with a known intensity
        record = {"id": f"neg{k}", "bus": draw(bus), "p_mw": -draw(powers)}
        if draw(st.booleans()):
            record["intensity_g_per_kwh"] = draw(intensities)
        doc["loads"].append(record)
    storage = []
    for k in range(draw(st.integers(0, 3))):  # charging (sink) or discharging with an intensity
        charging = draw(st.booleans())
        storage.append(
            {"id": f"s{k}", "bus": draw(bus), "p_mw": draw(powers) * (1 if charging else -1)}
            | ({} if charging else {"intensity_g_per_kwh": draw(intensities)})
        )
    if storage:
        doc["storage"] = storage
    for k in range(draw(st.integers(0, 3))):  # odd branches between existing buses
        a, b = draw(bus), draw(bus)
        if a == b:
            continue
        kind = draw(st.sampled_from(("both_sending", "idle", "noise", "lossy")))
        p_from, p_to = {
            "both_sending": (draw(powers), draw(powers)),
            "idle": (0.0, 0.0),
            "noise": (draw(powers), -5e-7),
            "lossy": (draw(powers), -draw(powers) / 2),
        }[kind]
        doc["branches"].append(
            {"id": f"x{k}", "from_bus": a, "to_bus": b, "p_from_mw": p_from, "p_to_mw": p_to}
        )
    if draw(st.integers(0, 9)) == 0:  # sometimes unmeterable: no generation at all
        for g in doc["generators"]:
            g["p_mw"] = 0.0
    return doc


def assert_same_result(fast, reference) -> None:
    for part in ("accounts", "flows", "injections"):
        a, b = getattr(fast, part), getattr(reference, part)
        for name in a.__dataclass_fields__:
            actual, expected = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
            assert actual.shape == expected.shape, (part, name)
            np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=name)
    assert fast.totals == pytest.approx(reference.totals, rel=RTOL, abs=ATOL)


def outcome(fn):
    try:
        return fn(), None
    except SnapshotError as error:
        return None, str(error)


def test_warm_up_compiles_and_solves_a_two_bus_snapshot():
    result = warm_up()
    assert result.method == "kernel"
    assert result.bus_intensity_g_per_kwh.tolist() == [500.0, 500.0]


@PROPERTY
@given(doc=disturbed(), losses=CONVENTIONS)
def test_solve_fast_path_equals_the_lu_reference(doc, losses):
    snapshot = snapshot_from_dict(doc)
    reference, reference_error = outcome(lambda: solve(snapshot, losses, method="lu"))
    fast, fast_error = outcome(lambda: solve(snapshot, losses))
    assert fast_error == reference_error
    event("error" if reference is None else fast.method)
    if reference is not None:
        assert fast.method in ("kernel", "lu")  # lu: the LU fallback for a directed cycle
        assert_same_result(fast, reference)


@settings(PROPERTY, max_examples=40)
@given(doc=disturbed(), losses=CONVENTIONS, n_time=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_solve_batch_equals_the_lu_reference_snapshot_by_snapshot(doc, losses, n_time, seed):
    """Every snapshot scaled on its own (same directions, other magnitudes) with its own source and
    storage intensities; one snapshot sometimes made unmeterable: the batch then names it."""
    network = snapshot_from_dict(doc)
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 2.0, (n_time, 1))
    n_storage = len(network.storage_ids)
    storage_e = np.where(
        network.storage_p_mw < 0,
        rng.uniform(0, 1200, (n_time, n_storage)),
        network.storage_intensity_g_per_kwh,
    )
    gen_p = network.gen_p_mw * scale
    broken = int(rng.integers(n_time)) if rng.random() < 0.2 else None
    if broken is not None:
        gen_p[broken] = 0.0
    series = SnapshotSeries(
        network,
        gen_p_mw=gen_p,
        load_p_mw=network.load_p_mw * scale,
        branch_p_from_mw=network.branch_p_from_mw * scale,
        branch_p_to_mw=network.branch_p_to_mw * scale,
        gen_intensity_g_per_kwh=rng.uniform(0, 1200, (n_time, len(network.gen_ids))),
        storage_p_mw=np.broadcast_to(network.storage_p_mw, (n_time, n_storage)) * scale,
        storage_intensity_g_per_kwh=storage_e,
    )
    references = [outcome(lambda t=t: solve(series.snapshot(t), losses, method="lu")) for t in range(n_time)]
    batch, error = outcome(lambda: solve_batch(series, losses))
    first_bad = next((t for t, (_r, e) in enumerate(references) if e is not None), None)
    if first_bad is not None:
        assert error == f"snapshot {first_bad}: {references[first_bad][1]}"
        return
    assert error is None
    for t, (reference, _e) in enumerate(references):
        assert_same_result(batch.at(t), reference)
    lu = solve_batch(series, losses, method="lu")  # whole-series arrays, flows derived on demand
    for part in ("accounts", "flows", "injections"):
        a, b = getattr(batch, part), getattr(lu, part)
        for name in a.__dataclass_fields__:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=RTOL, atol=ATOL, err_msg=name)
    assert batch.n_lu_snapshots in (0, n_time)  # one network: every snapshot has the same directions


def test_a_directed_cycle_uses_the_lu_fallback_and_a_sourceless_cycle_is_named():
    doc = {
        "generators": [{"id": "G", "bus": "1", "p_mw": 10.0, "intensity_g_per_kwh": 600.0}],
        "loads": [{"id": "L", "bus": "3", "p_mw": 10.0}],
        "branches": [  # 1 -> 2 -> 3 -> 2 ... a loop 2 -> 3 -> 4 -> 2 carrying a circulation of 5 MW
            {"id": "a", "from_bus": "1", "to_bus": "2", "p_from_mw": 10.0},
            {"id": "b", "from_bus": "2", "to_bus": "3", "p_from_mw": 15.0},
            {"id": "c", "from_bus": "3", "to_bus": "4", "p_from_mw": 5.0},
            {"id": "d", "from_bus": "4", "to_bus": "2", "p_from_mw": 5.0},
        ],
    }
    result = solve(snapshot_from_dict(doc))
    assert result.method == "lu"
    assert result.bus_intensity_g_per_kwh == pytest.approx([600.0] * 4)
    series = SnapshotSeries(
        snapshot_from_dict(doc),
        gen_p_mw=np.array([[10.0], [20.0]]),
        load_p_mw=np.array([[10.0], [20.0]]),
        branch_p_from_mw=np.array([[10.0, 15.0, 5.0, 5.0], [20.0, 20.0, 0.0, 0.0]]),
    )
    batch = solve_batch(series)
    assert batch.n_lu_snapshots == 1
    assert batch.accounts.bus_intensity_g_per_kwh[1] == pytest.approx(
        [600.0, 600.0, 600.0, np.nan], nan_ok=True
    )
    sourceless = copy.deepcopy(doc)  # plus a loop 5 -> 6 -> 7 -> 5 that nothing feeds
    for name, a, b in (("e", "5", "6"), ("f", "6", "7"), ("g", "7", "5")):
        sourceless["branches"].append({"id": name, "from_bus": a, "to_bus": b, "p_from_mw": 3.0})
    with pytest.raises(SnapshotError) as fast:
        solve(snapshot_from_dict(sourceless))
    with pytest.raises(SnapshotError) as reference:
        solve(snapshot_from_dict(sourceless), method="lu")
    assert str(fast.value) == str(reference.value)
    assert "no source supplies" in str(fast.value)


def test_column_major_series_inputs_give_the_same_year():
    """DC flows solved for all hours at once arrive column-major: the kernel copies rows per chunk."""
    network = snapshot_from_dict(
        {
            "generators": [{"id": "G", "bus": "1", "p_mw": 10.0, "intensity_g_per_kwh": 800.0}],
            "loads": [{"id": "L2", "bus": "2", "p_mw": 5.0}, {"id": "L3", "bus": "3", "p_mw": 5.0}],
            "branches": [
                {"id": "b12", "from_bus": "1", "to_bus": "2", "p_from_mw": 10.0},
                {"id": "b23", "from_bus": "2", "to_bus": "3", "p_from_mw": 5.0},
            ],
        }
    )
    n_time = 600  # more than one chunk of rows
    p = np.linspace(1.0, 50.0, n_time)[:, None]
    flows = np.asfortranarray(np.hstack([2 * p, p]))
    assert not flows.flags.c_contiguous
    series_f = SnapshotSeries(network, gen_p_mw=2 * p, load_p_mw=np.hstack([p, p]), branch_p_from_mw=flows)
    series_c = series_f.window(0, n_time, branch_p_from_mw=np.ascontiguousarray(flows))
    a, b = solve_batch(series_f), solve_batch(series_c)
    for name in a.accounts.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.accounts, name), getattr(b.accounts, name))
    assert a.accounts.bus_load_carbon_t_per_h[:, 2] == pytest.approx(p[:, 0] * 0.8)

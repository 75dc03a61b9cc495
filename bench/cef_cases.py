"""The cases of ``bench/cef.py``: snapshots built from pandapower results, and the two textbook
baselines carbonflow is measured against (dense inverse, sparse ``spsolve``), each computing the same
intensities as the engine's model (see the docstring of ``bench/cef.py``).

Import it after ``bench/cef.py`` has set the BLAS thread count (numpy reads it once, when it loads).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pandapower warns that numba is missing
    import pandapower as pp

from bench.synthetic import FUELS, HourlyYear
from carbonflow.engine import Snapshot
from carbonflow.engine.batch import SnapshotSeries

TOL_MW = 1e-6  # the engine's default: flows and fluxes at most this are treated as zero
AGREEMENT_G_PER_KWH = 1e-6  # baselines (textbook formulas, their own round-off)
GENERATOR_TABLES = ("ext_grid", "gen", "sgen")  # generation positive (pandapower's generator sign)
LOAD_TABLES = ("load", "shunt", "storage")  # consumption positive

# ------------------------------------------------------------------------------------------------
# Snapshots from pandapower results


def generator_intensities(net: pp.pandapowerNet, seed: int) -> np.ndarray:
    """Deterministic pseudo-random intensities in [0, 1000] g/kWh, one per generator in
    ``GENERATOR_TABLES`` order; where the table has a ``fuel`` column (synthetic grid) the draw is
    inside that fuel's range (zero for wind, PV, hydro, nuclear)."""
    rng = np.random.default_rng(seed)
    values = []
    for table in GENERATOR_TABLES:
        fuels = net[table]["fuel"] if "fuel" in net[table] else [None] * len(net[table])
        for fuel in fuels:
            u = rng.random()
            low, high = FUELS[fuel][0] if fuel in FUELS else (0.0, 1000.0)
            values.append(low + u * (high - low))
    return np.asarray(values)


def _result(net: pp.pandapowerNet, table: str, column: str) -> np.ndarray:
    values = net[f"res_{table}"][column].reindex(net[table].index).to_numpy(float)
    return np.nan_to_num(values)  # out-of-service elements have NaN results


def snapshot_document(net: pp.pandapowerNet, intensities: np.ndarray) -> dict[str, Any]:
    """C1 document of a solved pandapower network: bus ids are ``str(index)``; generators are
    ext_grid, gen and sgen rows (``res_*.p_mw``); loads are load, shunt and storage rows; branches
    are lines (``p_from_mw``/``p_to_mw``) and two-winding transformers (``p_hv_mw``/``p_lv_mw``)."""
    unsupported = [t for t in ("trafo3w", "impedance", "dcline", "ward", "xward") if len(net[t])]
    if unsupported:
        raise ValueError(f"bench snapshot builder does not handle {unsupported}")
    generators, loads, branches = [], [], []
    k = 0
    for table in GENERATOR_TABLES:
        p = _result(net, table, "p_mw")
        for position, (index, bus) in enumerate(zip(net[table].index, net[table].bus)):
            generators.append(
                {
                    "id": f"{table}/{index}",
                    "bus": str(bus),
                    "p_mw": float(p[position]),
                    "intensity_g_per_kwh": float(intensities[k]),
                }
            )
            k += 1
    for table in LOAD_TABLES:
        p = _result(net, table, "p_mw")
        for position, (index, bus) in enumerate(zip(net[table].index, net[table].bus)):
            loads.append({"id": f"{table}/{index}", "bus": str(bus), "p_mw": float(p[position])})
    for table, ends, columns in (
        ("line", ("from_bus", "to_bus"), ("p_from_mw", "p_to_mw")),
        ("trafo", ("hv_bus", "lv_bus"), ("p_hv_mw", "p_lv_mw")),
    ):
        p_from, p_to = _result(net, table, columns[0]), _result(net, table, columns[1])
        for position, (index, a, b) in enumerate(
            zip(net[table].index, net[table][ends[0]], net[table][ends[1]])
        ):
            branches.append(
                {
                    "id": f"{table}/{index}",
                    "from_bus": str(a),
                    "to_bus": str(b),
                    "p_from_mw": float(p_from[position]),
                    "p_to_mw": float(p_to[position]),
                }
            )
    return {
        "buses": [{"id": str(b)} for b in net.bus.index],
        "generators": generators,
        "loads": loads,
        "branches": branches,
    }


def year_series(net: pp.pandapowerNet, network: Snapshot, year: HourlyYear) -> SnapshotSeries:
    """The year as a series over ``network`` (built by :func:`snapshot_document` from the same net,
    so element order is ext_grid, gen, sgen / load, shunt, storage / line, trafo)."""
    n_time = year.n_time
    return SnapshotSeries(
        network=network,
        gen_p_mw=np.hstack([year.ext_grid_p_mw, year.gen_p_mw, year.sgen_p_mw]),
        load_p_mw=np.hstack([year.load_p_mw, year.shunt_p_mw, np.zeros((n_time, len(net.storage)))]),
        branch_p_from_mw=np.hstack([year.line_p_from_mw, year.trafo_p_hv_mw]),
        branch_p_to_mw=None,  # lossless DC flows
    )


# ------------------------------------------------------------------------------------------------
# Baselines


def _textbook_inputs(s: Snapshot) -> tuple[np.ndarray, ...]:
    """Receiving-end branch flows and the source list, as a textbook implementation prepares them."""
    pf, pt = s.branch_p_from_mw, s.branch_p_to_mw
    forward = (pf > TOL_MW) & ~(pt > TOL_MW)
    reverse = (pt > TOL_MW) & ~(pf > TOL_MW)
    src = np.r_[s.branch_from[forward], s.branch_to[reverse]]
    dst = np.r_[s.branch_to[forward], s.branch_from[reverse]]
    p_recv = np.r_[np.maximum(-pt[forward], 0.0), np.maximum(-pf[reverse], 0.0)]
    delivered = p_recv > TOL_MW  # delivered power below the tolerance is noise: the branch only loses
    src, dst, p_recv = src[delivered], dst[delivered], p_recv[delivered]
    # sources: positive generation, and negative loads as zero-carbon (or given-intensity) sources
    source_bus = np.r_[s.gen_bus, s.load_bus]
    source_p = np.r_[np.maximum(s.gen_p_mw, 0.0), np.maximum(-s.load_p_mw, 0.0)]
    source_e = np.r_[s.gen_intensity_g_per_kwh, np.nan_to_num(s.load_intensity_g_per_kwh)]
    return src, dst, p_recv, source_bus, source_p, source_e


def baseline_dense(s: Snapshot) -> np.ndarray:
    """(a) textbook: dense P_B, P_G, explicit inverse."""
    n = s.n_bus
    src, dst, p_recv, source_bus, source_p, source_e = _textbook_inputs(s)
    p_b = np.zeros((n, n))
    np.add.at(p_b, (src, dst), p_recv)  # parallel branches are summed
    p_g = np.zeros((len(source_p), n))
    p_g[np.arange(len(source_p)), source_bus] = source_p
    p_n = p_b.sum(axis=0) + p_g.sum(axis=0)
    live = p_n > TOL_MW
    a = np.diag(p_n) - p_b.T
    e_n = np.full(n, np.nan)
    e_n[live] = np.linalg.inv(a[np.ix_(live, live)]) @ (p_g.T @ source_e)[live]
    return e_n


def baseline_sparse(s: Snapshot) -> np.ndarray:
    """(b) sparse textbook: scipy.sparse matrices rebuilt per snapshot, spsolve."""
    n = s.n_bus
    src, dst, p_recv, source_bus, source_p, source_e = _textbook_inputs(s)
    p_b = sp.coo_array((p_recv, (src, dst)), shape=(n, n)).tocsr()  # duplicates summed
    p_g = sp.coo_array((source_p, (np.arange(len(source_p)), source_bus)), shape=(len(source_p), n)).tocsr()
    p_n = p_b.sum(axis=0) + p_g.sum(axis=0)
    live = np.flatnonzero(p_n > TOL_MW)
    a = (sp.diags_array(p_n) - p_b.T).tocsr()[live][:, live].tocsc()
    e_n = np.full(n, np.nan)
    e_n[live] = sla.spsolve(a, (p_g.T @ source_e)[live])
    return e_n


def assert_agree(
    name: str, expected: np.ndarray, actual: np.ndarray, limit: float = AGREEMENT_G_PER_KWH
) -> float:
    """Max |difference| in g/kWh; NaN (no power through the bus) must match NaN."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if not np.array_equal(np.isnan(expected), np.isnan(actual)):
        raise AssertionError(f"{name}: buses without power differ")
    diff = float(np.nanmax(np.abs(expected - actual), initial=0.0))
    if diff > limit:
        raise AssertionError(f"{name}: intensities differ by {diff:g} g/kWh (> {limit:g})")
    return diff

"""Origin of electricity and carbon: which source each bus's power and each load's carbon comes from.

Share matrix ``X = (P_N − P_Bᵀ)⁻¹ P_Gᵀ`` (reference §6).  Where the carrying flow graph is acyclic
(the usual case) it is solved by compiled forward substitution in Kahn's topological order
(:func:`_dag_shares`, row ``n`` = (its sources' injection + Σ inflow weight × sender's row) / flux);
a directed cycle gets one sparse factorisation and one solve with K right-hand sides
(``method="lu"`` forces it: the reference, equal within round-off — tests/test_origin_sweep.py).
Power shares always use the receiving-end matrix (physical proportional sharing
of the power that arrives); carbon contributions use the matrix of the result's loss convention, so
that under ``consumer`` they include the carbon of upstream losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from carbonflow.engine.accounts import carbon_weights
from carbonflow.engine.cef import CefResult, carrying_edges
from carbonflow.engine.cef import warm_up as warm_up_solve
from carbonflow.engine.linear import solve_lu


@dataclass(frozen=True)
class Origin:
    source_ids: tuple[str, ...]  # generator ids; "load:<id>" / "storage:<id>" for other injections
    source_intensity_g_per_kwh: np.ndarray  # (K,)
    bus_power_share: np.ndarray  # (N, K), rows sum to 1 where the bus carries power, NaN otherwise
    load_power_mw: np.ndarray  # (L, K) MW of each load's consumption supplied by each source
    load_carbon_t_per_h: np.ndarray  # (L, K) carbon of each load attributed to each source


def _source_names(result: CefResult) -> list[str]:
    snap = result.snapshot
    return (
        list(snap.gen_ids)
        + [f"load:{load_id}" for load_id in snap.load_ids]
        + [f"storage:{storage_id}" for storage_id in snap.storage_ids]
    )


@njit(cache=True)
def _dag_shares(live, src, dst, weight, flux, source_bus, source_mw, shares) -> bool:
    """Fill ``shares`` (N x K; NaN on dead buses) by forward substitution over the flow DAG of the
    live buses; False (``shares`` unspecified) if the edges hold a directed cycle."""
    n_bus, n_src = shares.shape
    in_count = np.zeros(n_bus, np.int64)
    out_start = np.zeros(n_bus + 1, np.int64)
    for e in range(len(src)):
        in_count[dst[e]] += 1
        out_start[src[e] + 1] += 1
    for n in range(n_bus):
        out_start[n + 1] += out_start[n]
    in_start = np.zeros(n_bus + 1, np.int64)
    for n in range(n_bus):
        in_start[n + 1] = in_start[n] + in_count[n]
    out_edges, in_edges = np.empty(len(src), np.int64), np.empty(len(src), np.int64)
    out_fill, in_fill = out_start[:-1].copy(), in_start[:-1].copy()
    for e in range(len(src)):  # in edge order within each bus
        out_edges[out_fill[src[e]]] = e
        out_fill[src[e]] += 1
        in_edges[in_fill[dst[e]]] = e
        in_fill[dst[e]] += 1
    order = np.empty(n_bus, np.int64)
    tail, n_live = 0, 0
    for n in range(n_bus):
        if live[n]:
            n_live += 1
            if in_count[n] == 0:
                order[tail] = n
                tail += 1
    head = 0
    while head < tail:
        n = order[head]
        head += 1
        for j in range(out_start[n], out_start[n + 1]):
            m = dst[out_edges[j]]
            in_count[m] -= 1
            if in_count[m] == 0:
                order[tail] = m
                tail += 1
    if tail < n_live:
        return False
    for n in range(n_bus):
        for k in range(n_src):
            shares[n, k] = 0.0 if live[n] else np.nan
    for k in range(n_src):
        if live[source_bus[k]]:
            shares[source_bus[k], k] = source_mw[k]
    for i in range(tail):
        n = order[i]
        # row by row (contiguous), every source's sum in the same order: its own injection, then each
        # inflow in edge order, then / flux — the same operations per entry as one source at a time
        row = shares[n]
        for j in range(in_start[n], in_start[n + 1]):
            e = in_edges[j]
            w, sender = weight[e], shares[src[e]]
            for k in range(n_src):
                row[k] += w * sender[k]
        for k in range(n_src):
            row[k] /= flux[n]
    return True


def _shares(result: CefResult, losses: str, sources: np.ndarray, method: str = "sweep") -> np.ndarray:
    snap, flows, inj = result.snapshot, result.flows, result.injections
    n_bus = snap.n_bus
    weights = carbon_weights(flows, losses, result.tol_mw)
    edges = carrying_edges(flows, weights)
    live = result.bus_flux_mw > result.tol_mw
    src, dst, weight = flows.sending_bus[edges], flows.receiving_bus[edges], weights[edges]
    shares = np.empty((n_bus, len(sources)))
    flux = np.ascontiguousarray(result.bus_flux_mw, dtype=float)
    if method == "sweep" and _dag_shares(
        live, src.astype(np.int64), dst.astype(np.int64), weight.astype(float), flux,
        inj.bus[sources].astype(np.int64), inj.source_mw[sources].astype(float), shares,
    ):  # fmt: skip
        return np.clip(shares, 0.0, None, out=shares)
    solution = solve_lu(n_bus, src, dst, weight, result.bus_flux_mw, np.zeros(n_bus), live)
    # the injection of each source at its bus (one entry per column), on the live buses' rows only: a
    # 10,000-bus grid's N x K right-hand side is hundreds of MB, built once, not dense and then sliced
    live_index = solution.live_index
    shares[:] = np.nan
    if len(live_index):
        position = np.full(n_bus, -1, dtype=np.intp)
        position[live_index] = np.arange(len(live_index))
        rows = position[inj.bus[sources]]
        at_live = rows >= 0
        injection = np.zeros((len(live_index), len(sources)), dtype=inj.source_mw.dtype)
        injection[rows[at_live], np.flatnonzero(at_live)] = inj.source_mw[sources][at_live]
        shares[live_index] = solution.factor.solve(injection)
    return np.clip(shares, 0.0, None, out=shares)


def origin_shares(result: CefResult, method: str = "sweep") -> Origin:
    """The origin of every bus's power and every load's carbon; ``method="lu"``: the sparse LU
    reference for every snapshot (else only for one whose flow graph has a directed cycle)."""
    if method not in ("sweep", "lu"):
        raise ValueError(f"unknown origin method {method!r}")
    inj = result.injections
    sources = np.flatnonzero(inj.source_mw > 0)
    names = _source_names(result)
    intensity = inj.source_intensity_g_per_kwh[sources]
    power_share = _shares(result, "receiving", sources, method)
    carbon_share = (
        power_share if result.losses == "receiving" else _shares(result, result.losses, sources, method)
    )

    snap = result.snapshot
    load_elements = slice(len(snap.gen_ids), len(snap.gen_ids) + len(snap.load_ids))
    load_sink = inj.sink_mw[load_elements][:, None]
    # L x K arrays (8,000 loads x 900 sources at 10,000 buses: 59 MB each): each product computed into
    # one array in place, left to right as ``load_sink * share * intensity * 1e-3`` (the same values);
    # the carbon's shares are the power's under the receiving-end convention (not gathered twice)
    at_load_bus = _to_finite(power_share[snap.load_bus])
    if carbon_share is power_share:
        load_carbon = np.multiply(load_sink, at_load_bus)
    else:
        load_carbon = _to_finite(carbon_share[snap.load_bus])
        np.multiply(load_sink, load_carbon, out=load_carbon)
    load_carbon *= intensity[None, :]
    load_carbon *= 1e-3
    return Origin(
        source_ids=tuple(names[k] for k in sources),
        source_intensity_g_per_kwh=intensity,
        bus_power_share=power_share,
        load_power_mw=np.multiply(load_sink, at_load_bus, out=at_load_bus),
        load_carbon_t_per_h=load_carbon,
    )


def _to_finite(values: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(values, copy=False)`` (NaN as 0, ±inf as the largest finite float of its sign) with
    one pass over the array where it is all finite (the usual case; ``nan_to_num`` makes three masks of
    an L x K array every time), and only the entries that are not finite set where they are all NaN."""
    bad = ~np.isfinite(values)
    if bad.any():
        if np.isnan(values[bad]).all():
            values[bad] = 0.0
        else:
            np.nan_to_num(values, copy=False)
    return values


def warm_up() -> CefResult:
    """``cef.warm_up`` and the origin sweep: load (or compile) both, so that the first real interval
    pays no compilation; the two-bus result."""
    result = warm_up_solve()
    origin_shares(result)
    return result

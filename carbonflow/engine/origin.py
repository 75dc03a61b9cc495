"""Origin of electricity and carbon: which source each bus's power and each load's carbon comes from.

Share matrix ``X = (P_N − P_Bᵀ)⁻¹ P_Gᵀ`` (reference §6), one sparse factorisation and one solve with
K right-hand sides.  Power shares always use the receiving-end matrix (physical proportional sharing
of the power that arrives); carbon contributions use the matrix of the result's loss convention, so
that under ``consumer`` they include the carbon of upstream losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonflow.engine.accounts import carbon_weights
from carbonflow.engine.cef import CefResult, carrying_edges
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


def _shares(result: CefResult, losses: str, sources: np.ndarray) -> np.ndarray:
    snap, flows, inj = result.snapshot, result.flows, result.injections
    n_bus = snap.n_bus
    weights = carbon_weights(flows, losses, result.tol_mw)
    edges = carrying_edges(flows, weights)
    live = result.bus_flux_mw > result.tol_mw
    solution = solve_lu(
        n_bus,
        flows.sending_bus[edges],
        flows.receiving_bus[edges],
        weights[edges],
        result.bus_flux_mw,
        np.zeros(n_bus),
        live,
    )
    # the injection of each source at its bus (one entry per column), on the live buses' rows only: a
    # 10,000-bus grid's N x K right-hand side is hundreds of MB, built once, not dense and then sliced
    live_index = solution.live_index
    shares = np.full((n_bus, len(sources)), np.nan)
    if len(live_index):
        position = np.full(n_bus, -1, dtype=np.intp)
        position[live_index] = np.arange(len(live_index))
        rows = position[inj.bus[sources]]
        at_live = rows >= 0
        injection = np.zeros((len(live_index), len(sources)), dtype=inj.source_mw.dtype)
        injection[rows[at_live], np.flatnonzero(at_live)] = inj.source_mw[sources][at_live]
        shares[live_index] = solution.factor.solve(injection)
    return np.clip(shares, 0.0, None, out=shares)


def origin_shares(result: CefResult) -> Origin:
    inj = result.injections
    sources = np.flatnonzero(inj.source_mw > 0)
    names = _source_names(result)
    intensity = inj.source_intensity_g_per_kwh[sources]
    power_share = _shares(result, "receiving", sources)
    carbon_share = power_share if result.losses == "receiving" else _shares(result, result.losses, sources)

    snap = result.snapshot
    load_elements = slice(len(snap.gen_ids), len(snap.gen_ids) + len(snap.load_ids))
    load_sink = inj.sink_mw[load_elements][:, None]
    at_load_bus = np.nan_to_num(power_share[snap.load_bus])
    carbon_at_load_bus = np.nan_to_num(carbon_share[snap.load_bus])
    return Origin(
        source_ids=tuple(names[k] for k in sources),
        source_intensity_g_per_kwh=intensity,
        bus_power_share=power_share,
        load_power_mw=load_sink * at_load_bus,
        load_carbon_t_per_h=load_sink * carbon_at_load_bus * intensity[None, :] * 1e-3,
    )

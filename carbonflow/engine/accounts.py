"""Carbon accounts from nodal intensities: branches, elements, buses and the balance (reference §3-§4).

Vectorised over a leading batch axis: ``e`` may be ``(N,)`` or ``(T, N)`` and the flow arrays follow.
Rates are tCO2/h: ``R = P[MW] * e[g/kWh] / 1000``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from carbonflow.engine.flows import BOTH_SENDING, FORWARD, IDLE, REVERSE, BranchFlows, Injections

LOSS_CONVENTIONS = ("receiving", "consumer")
_G_PER_KWH_MW_TO_T_PER_H = 1e-3


@dataclass(frozen=True)
class Accounts:
    bus_flux_mw: np.ndarray
    bus_intensity_g_per_kwh: np.ndarray  # NaN where the bus carries no power
    bus_load_mw: np.ndarray  # every sink at the bus: loads, absorbing generators, charging storage
    bus_load_carbon_t_per_h: np.ndarray
    branch_density_g_per_kwh: np.ndarray  # NaN for idle and both-ends-sending branches
    branch_carbon_send_t_per_h: np.ndarray
    branch_carbon_recv_t_per_h: np.ndarray
    branch_loss_carbon_t_per_h: np.ndarray
    element_source_carbon_t_per_h: np.ndarray  # generators, loads, storage (Injections order)
    element_sink_carbon_t_per_h: np.ndarray
    generation_carbon_t_per_h: np.ndarray
    load_carbon_t_per_h: np.ndarray
    loss_carbon_t_per_h: np.ndarray
    residual_t_per_h: np.ndarray


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    if values.ndim == 1:
        return values[positions]
    return np.take_along_axis(values, positions, axis=-1)


def delivers(flows: BranchFlows, tol_mw: float) -> np.ndarray:
    """Branches whose sending power reaches a receiving bus (those that carry carbon onward)."""
    return ((flows.direction == FORWARD) | (flows.direction == REVERSE)) & (flows.p_recv_mw > tol_mw)


def carbon_weights(flows: BranchFlows, losses: str, tol_mw: float) -> np.ndarray:
    """Power that carries carbon into the receiving bus: delivered power under ``receiving``
    (convention A), sending power under ``consumer`` (convention C, losses pushed downstream)."""
    if losses == "receiving":
        return flows.p_recv_mw
    return np.where(delivers(flows, tol_mw), flows.p_send_mw, 0.0)


def nodal_flux(n_bus: int, flows: BranchFlows, inj: Injections) -> np.ndarray:
    """P_N: power arriving at each bus from branches (receiving end) plus local injection."""
    if flows.p_recv_mw.ndim == 1:
        return np.bincount(flows.receiving_bus, flows.p_recv_mw, n_bus) + np.bincount(
            inj.bus, inj.source_mw, n_bus
        )
    return scatter_rows(flows.receiving_bus, flows.p_recv_mw, n_bus) + _per_bus(inj.source_mw, inj.bus, n_bus)


def nodal_carbon_injection(n_bus: int, inj: Injections) -> np.ndarray:
    """P_Gᵀ E_G in t/h·1000 units (MW·g/kWh): the right-hand side of the nodal balance."""
    carbon = inj.source_mw * np.where(inj.source_mw > 0, inj.source_intensity_g_per_kwh, 0.0)
    if carbon.ndim == 1:
        return np.bincount(inj.bus, carbon, n_bus)
    return _per_bus(carbon, inj.bus, n_bus)


def _per_bus(values: np.ndarray, bus: np.ndarray, n_bus: int) -> np.ndarray:
    """Sum element values ``(T, E)`` per bus ``(T, N)`` through a sparse incidence matrix."""
    incidence = sp.csr_array((np.ones(len(bus)), (bus, np.arange(len(bus)))), shape=(n_bus, len(bus)))
    return np.asarray(incidence @ values.T).T


def scatter_rows(positions: np.ndarray, values: np.ndarray, n_bus: int) -> np.ndarray:
    """Row-wise bincount: ``out[t, positions[t, k]] += values[t, k]``."""
    rows = np.arange(values.shape[0])[:, None]
    flat = np.bincount((rows * n_bus + positions).ravel(), values.ravel(), values.shape[0] * n_bus)
    return flat.reshape(values.shape[0], n_bus)


def account(
    intensity: np.ndarray,
    flux: np.ndarray,
    flows: BranchFlows,
    branch_from: np.ndarray,
    branch_to: np.ndarray,
    p_from_mw: np.ndarray,
    p_to_mw: np.ndarray,
    inj: Injections,
    losses: str,
    tol_mw: float,
) -> Accounts:
    n_bus = intensity.shape[-1]
    scale = _G_PER_KWH_MW_TO_T_PER_H
    flowing = (flows.direction != IDLE) & (flows.direction != BOTH_SENDING)
    density = np.where(flowing, _take(intensity, flows.sending_bus), np.nan)
    carbon_send = np.where(flowing, np.nan_to_num(density) * flows.p_send_mw, 0.0) * scale
    both = flows.direction == BOTH_SENDING
    if np.any(both):
        e_from = np.nan_to_num(_take(intensity, np.broadcast_to(branch_from, p_from_mw.shape)))
        e_to = np.nan_to_num(_take(intensity, np.broadcast_to(branch_to, p_to_mw.shape)))
        carbon_send = np.where(both, (e_from * p_from_mw + e_to * p_to_mw) * scale, carbon_send)
    if losses == "receiving":
        carbon_recv = np.where(flowing, np.nan_to_num(density) * flows.p_recv_mw * scale, 0.0)
    else:
        carbon_recv = np.where(delivers(flows, tol_mw), carbon_send, 0.0)
    loss = carbon_send - carbon_recv

    bus_of_element = np.broadcast_to(inj.bus, inj.sink_mw.shape)
    e_at_element = np.nan_to_num(_take(intensity, bus_of_element))
    sink_carbon = inj.sink_mw * e_at_element * scale
    source_carbon = inj.source_mw * np.where(inj.source_mw > 0, inj.source_intensity_g_per_kwh, 0.0) * scale
    if inj.sink_mw.ndim == 1:
        bus_load = np.bincount(inj.bus, inj.sink_mw, n_bus)
    else:
        bus_load = _per_bus(inj.sink_mw, inj.bus, n_bus)
    bus_load_carbon = bus_load * np.nan_to_num(intensity) * scale

    generation = source_carbon.sum(axis=-1)
    load = sink_carbon.sum(axis=-1)
    loss_total = loss.sum(axis=-1)
    return Accounts(
        bus_flux_mw=flux,
        bus_intensity_g_per_kwh=intensity,
        bus_load_mw=bus_load,
        bus_load_carbon_t_per_h=bus_load_carbon,
        branch_density_g_per_kwh=density,
        branch_carbon_send_t_per_h=carbon_send,
        branch_carbon_recv_t_per_h=carbon_recv,
        branch_loss_carbon_t_per_h=loss,
        element_source_carbon_t_per_h=source_carbon,
        element_sink_carbon_t_per_h=sink_carbon,
        generation_carbon_t_per_h=generation,
        load_carbon_t_per_h=load,
        loss_carbon_t_per_h=loss_total,
        residual_t_per_h=generation - load - loss_total,
    )

"""From rates to amounts over intervals (reference §8).

Within an interval power and intensity are held constant; amounts are rate × duration.  A period's
average intensity is always energy weighted — ``Σ carbon / Σ energy`` — never the arithmetic mean of
interval intensities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonflow.engine.batch import BatchResult


def energy_weighted_intensity(
    intensity_g_per_kwh: np.ndarray, energy: np.ndarray, axis: int = 0
) -> np.ndarray:
    """Average intensity weighted by energy along ``axis``; NaN where no energy flowed.

    Intervals with NaN intensity must carry no energy (a bus without power); they are ignored.
    """
    carbon = np.where(energy > 0, np.nan_to_num(intensity_g_per_kwh) * energy, 0.0).sum(axis=axis)
    total = np.where(energy > 0, energy, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, carbon / np.where(total > 0, total, 1.0), np.nan)


@dataclass(frozen=True)
class PeriodAccounts:
    """Amounts over the whole period of a batch; arrays align with the network's ids."""

    duration_h: float
    bus_load_energy_mwh: np.ndarray
    bus_load_carbon_t: np.ndarray
    bus_average_intensity_g_per_kwh: np.ndarray  # energy weighted by the bus's consumption
    bus_throughput_average_intensity_g_per_kwh: np.ndarray  # energy weighted by the bus's flux
    branch_send_energy_mwh: np.ndarray
    branch_carbon_send_t: np.ndarray
    branch_loss_energy_mwh: np.ndarray
    branch_loss_carbon_t: np.ndarray
    gen_energy_mwh: np.ndarray  # on-grid energy (positive output only)
    gen_carbon_t: np.ndarray
    load_energy_mwh: np.ndarray
    load_carbon_t: np.ndarray
    total_generation_carbon_t: float
    total_load_carbon_t: float
    total_loss_carbon_t: float
    residual_t: float


def interval_hours(n_time: int, interval_h: float | np.ndarray) -> np.ndarray:
    hours = np.broadcast_to(np.asarray(interval_h, dtype=float), (n_time,))
    if np.any(~np.isfinite(hours)) or np.any(hours <= 0):
        raise ValueError("interval lengths must be positive and finite")
    return hours


def integrate(batch: BatchResult, interval_h: float | np.ndarray) -> PeriodAccounts:
    """Carbon and energy over the batch's period; ``interval_h`` is one length or one per snapshot."""
    acc, inj = batch.accounts, batch.injections
    hours = interval_hours(batch.n_time, interval_h)
    dt = hours[:, None]
    net = batch.series.network
    n_gen, n_load = len(net.gen_ids), len(net.load_ids)
    load_elements = slice(n_gen, n_gen + n_load)
    bus_energy = acc.bus_load_mw * dt
    generation = float((acc.generation_carbon_t_per_h * hours).sum())
    load = float((acc.load_carbon_t_per_h * hours).sum())
    loss = float((acc.loss_carbon_t_per_h * hours).sum())
    return PeriodAccounts(
        duration_h=float(hours.sum()),
        bus_load_energy_mwh=bus_energy.sum(axis=0),
        bus_load_carbon_t=(acc.bus_load_carbon_t_per_h * dt).sum(axis=0),
        bus_average_intensity_g_per_kwh=energy_weighted_intensity(acc.bus_intensity_g_per_kwh, bus_energy),
        bus_throughput_average_intensity_g_per_kwh=energy_weighted_intensity(
            acc.bus_intensity_g_per_kwh, acc.bus_flux_mw * dt
        ),
        branch_send_energy_mwh=(batch.flows.p_send_mw * dt).sum(axis=0),
        branch_carbon_send_t=(acc.branch_carbon_send_t_per_h * dt).sum(axis=0),
        branch_loss_energy_mwh=(batch.flows.p_loss_mw * dt).sum(axis=0),
        branch_loss_carbon_t=(acc.branch_loss_carbon_t_per_h * dt).sum(axis=0),
        gen_energy_mwh=(inj.source_mw[:, :n_gen] * dt).sum(axis=0),
        gen_carbon_t=(acc.element_source_carbon_t_per_h[:, :n_gen] * dt).sum(axis=0),
        load_energy_mwh=(inj.sink_mw[:, load_elements] * dt).sum(axis=0),
        load_carbon_t=(acc.element_sink_carbon_t_per_h[:, load_elements] * dt).sum(axis=0),
        total_generation_carbon_t=generation,
        total_load_carbon_t=load,
        total_loss_carbon_t=loss,
        residual_t=generation - load - loss,
    )

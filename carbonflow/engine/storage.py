"""Energy storage as a carbon state ("water tank", reference §5.4 model 2).

Charging takes carbon from the grid at the bus intensity; the store holds energy ``S`` and carbon
``C``; discharging injects power at ``(C/S)/η_d``.  Discharging removes energy and carbon in
proportion, so the stored intensity stays constant through a discharge run.  That is what lets a
series be solved in vectorised windows: a window ends only where some store starts a new discharge
run (its intensity then depends on everything before).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from carbonflow.engine.batch import BatchResult, SnapshotSeries, solve_batch
from carbonflow.engine.cef import DEFAULT_TOL_MW
from carbonflow.engine.integrate import interval_hours


@dataclass(frozen=True)
class StorageState:
    energy_mwh: float = 0.0
    carbon_t: float = 0.0
    eta_charge: float = 1.0
    eta_discharge: float = 1.0
    # Stored intensity to use when the store is empty (over-discharge by metering error).
    empty_intensity_g_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.eta_charge <= 1 and 0 < self.eta_discharge <= 1):
            raise ValueError("storage efficiencies must lie in (0, 1]")
        if self.energy_mwh < 0 or self.carbon_t < 0:
            raise ValueError("stored energy and carbon must not be negative")

    @property
    def stored_intensity_g_per_kwh(self) -> float:
        if self.energy_mwh <= 0:
            return self.empty_intensity_g_per_kwh
        return self.carbon_t / self.energy_mwh * 1e3

    @property
    def discharge_intensity_g_per_kwh(self) -> float:
        return self.stored_intensity_g_per_kwh / self.eta_discharge

    def charge(self, p_mw: float, bus_intensity_g_per_kwh: float, hours: float) -> StorageState:
        return replace(
            self,
            energy_mwh=self.energy_mwh + self.eta_charge * p_mw * hours,
            carbon_t=self.carbon_t + bus_intensity_g_per_kwh * p_mw * hours * 1e-3,
        )

    def discharge(self, p_mw: float, hours: float) -> StorageState:
        drawn_mwh = p_mw * hours / self.eta_discharge
        stored_intensity = self.stored_intensity_g_per_kwh
        energy = self.energy_mwh - drawn_mwh
        carbon = self.carbon_t - stored_intensity * drawn_mwh * 1e-3
        return replace(
            self,
            energy_mwh=float(max(energy, 0.0)),
            carbon_t=max(carbon, 0.0) if energy > 0 else 0.0,
            empty_intensity_g_per_kwh=float(stored_intensity),
        )


@dataclass(frozen=True, eq=False)
class StorageSeriesResult:
    batch: BatchResult
    storage_energy_mwh: np.ndarray  # (T, S) state at the end of each interval
    storage_carbon_t: np.ndarray  # (T, S)
    final_states: tuple[StorageState, ...]


def _discharge_run_starts(discharging: np.ndarray) -> np.ndarray:
    previous = np.vstack([np.zeros((1, discharging.shape[1]), dtype=bool), discharging[:-1]])
    return discharging & ~previous


def solve_series_with_storage(
    series: SnapshotSeries,
    states: dict[str, StorageState],
    interval_h: float | np.ndarray,
    losses: str = "receiving",
    *,
    tol_mw: float = DEFAULT_TOL_MW,
) -> StorageSeriesResult:
    """Meter a series whose storage units carry carbon between intervals.

    ``states`` gives each storage id's state before the first interval (missing ids start empty).
    Discharge intensities in ``series`` are ignored: they come from the state.
    """
    net = series.network
    hours = interval_hours(series.n_time, interval_h)
    current = [states.get(sid, StorageState()) for sid in net.storage_ids]
    p_mw = series.arrays["storage_p_mw"]
    discharging = p_mw < -tol_mw
    starts = _discharge_run_starts(discharging)
    intensity = np.full(p_mw.shape, np.nan)
    energy_track = np.zeros(p_mw.shape)
    carbon_track = np.zeros(p_mw.shape)
    window_starts = sorted({0, *np.flatnonzero(starts.any(axis=1)).tolist()})
    for begin, end in zip(window_starts, [*window_starts[1:], series.n_time]):
        for s, state in enumerate(current):
            if discharging[begin, s]:
                run_end = begin + int(np.argmin(np.r_[discharging[begin:, s], False]))
                intensity[begin:run_end, s] = state.discharge_intensity_g_per_kwh
        window = series.window(begin, end, storage_intensity_g_per_kwh=intensity[begin:end])
        result = solve_batch(window, losses, tol_mw=tol_mw)
        bus_e = result.accounts.bus_intensity_g_per_kwh[:, net.storage_bus]
        for t in range(end - begin):
            for s in range(len(current)):
                p = p_mw[begin + t, s]
                if p > tol_mw:
                    current[s] = current[s].charge(p, float(np.nan_to_num(bus_e[t, s])), hours[begin + t])
                elif p < -tol_mw:
                    current[s] = current[s].discharge(-p, hours[begin + t])
                energy_track[begin + t, s] = current[s].energy_mwh
                carbon_track[begin + t, s] = current[s].carbon_t
    # Windows were solved to learn the bus intensities that charge the stores; the whole series is
    # solved once more with every discharge intensity known, to return one result.
    full = solve_batch(
        series.window(0, series.n_time, storage_intensity_g_per_kwh=intensity), losses, tol_mw=tol_mw
    )
    return StorageSeriesResult(full, energy_track, carbon_track, tuple(current))

"""Set-points of every element for every interval: loads, renewables, battery and plant dispatch.

Times: ``start`` is timezone-aware; interval ``k`` covers ``(start + k·Δ, start + (k+1)·Δ]`` and is
stamped with its end (DESIGN §3).  Profiles are sampled at the interval midpoint, in local time
(``zone``, default Asia/Shanghai), and held for the interval.

Dispatch (``dispatch="merit"``, the reference grid): wind and solar take what the weather gives; the
other units follow demand in merit order (column ``merit``, lower first: hydro, CHP, the efficient coal
units, subcritical coal, CCGT, peaker), each within ``[p_min_mw, p_max_mw]`` and its ramp limit from the
previous interval; demand is the load plus battery charging, minus rooftop PV, plus an estimate of the
losses.  The slack unit (``gen.slack``) is dispatched like the others and the AC power flow gives it the
actual losses on top.  When must-run output exceeds demand, wind and solar are curtailed.

``dispatch="proportional"`` (imported grids): every unit keeps its share of the case's generation,
scaled with demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandapower as pp
import pandas as pd

from carbonflow.sim import profiles
from carbonflow.sim.errors import SimulationError

DEFAULT_START = datetime(2025, 6, 1, 16, 0, tzinfo=UTC)  # Monday 2025-06-02 00:00 in Asia/Shanghai
DEFAULT_ZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class SimConfig:
    start: datetime = DEFAULT_START
    interval_s: float = 60.0
    count: int = 1440
    seed: int = 0
    zone: str = DEFAULT_ZONE
    loss_estimate: float = 0.015  # share of demand added for the dispatch target; the slack takes the rest
    dispatch: str = "merit"  # merit | proportional
    battery_soc_start: float = 0.5  # fraction of capacity

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise SimulationError("start must be timezone-aware (e.g. 2025-06-01T16:00:00+00:00)")
        if not self.interval_s > 0:
            raise SimulationError(f"interval must be positive, got {self.interval_s} s")
        if self.count < 1:
            raise SimulationError(f"the number of intervals must be at least 1, got {self.count}")
        if self.dispatch not in ("merit", "proportional"):
            raise SimulationError(f"dispatch must be merit or proportional, got {self.dispatch!r}")

    @property
    def interval_h(self) -> float:
        return self.interval_s / 3600.0

    def interval_end(self, k: int) -> datetime:
        return self.start.astimezone(UTC) + timedelta(seconds=self.interval_s * (k + 1))


@dataclass(frozen=True, eq=False)
class Inputs:
    """Set-points, one row per interval, columns in each table's index order (all rows of the table)."""

    config: SimConfig
    ends_utc: pd.DatetimeIndex
    load_p_mw: np.ndarray
    load_q_mvar: np.ndarray
    sgen_p_mw: np.ndarray
    sgen_available_mw: np.ndarray
    gen_p_mw: np.ndarray
    storage_p_mw: np.ndarray
    storage_soc_mwh: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.ends_utc)


def _column(frame: pd.DataFrame, name: str, default: object) -> pd.Series:
    if name in frame:
        return frame[name].where(frame[name].notna(), default)
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def build_inputs(net: pp.pandapowerNet, config: SimConfig) -> Inputs:
    """Every set-point of every interval; deterministic for a given net, config and seed."""
    rng = np.random.default_rng(config.seed)
    step = config.interval_s
    start = pd.Timestamp(config.start).tz_convert("UTC")
    offsets = pd.to_timedelta(np.arange(config.count) * step, unit="s")
    midpoints = start + offsets + pd.Timedelta(seconds=step / 2)
    ends = start + offsets + pd.Timedelta(seconds=step)
    hour, weekday, doy = profiles.local_calendar(pd.DatetimeIndex(midpoints), config.zone)
    local_days = pd.DatetimeIndex(midpoints).tz_convert(config.zone).normalize()
    day_index = np.asarray((local_days - local_days[0]).days, dtype=int)

    # Loads: industry shape x AR(1) noise (2 %, 30 min memory); reactive power at the load's power factor.
    n_time = config.count
    load = net.load
    industries = _column(load, "industry", profiles.DEFAULT_INDUSTRY).astype(str)
    noise = 1.0 + profiles.ar1(rng, n_time, sigma=0.02, tau_steps=1800.0 / step, size=len(load))
    shapes = {name: profiles.load_fraction(name, hour, weekday) for name in set(industries)}
    base_p = load.p_mw.to_numpy(dtype=float)
    load_p = np.column_stack([shapes[name] for name in industries]) if len(load) else np.zeros((n_time, 0))
    load_p = load_p * noise.T * base_p[None, :]
    pf = _column(load, "pf", np.nan).astype(float).to_numpy()
    base_q = load.q_mvar.to_numpy(dtype=float)
    ratio = np.where(
        np.isfinite(pf),
        np.tan(np.arccos(np.clip(pf, 0.1, 1.0))),
        np.divide(base_q, base_p, out=np.zeros_like(base_q), where=base_p != 0),
    )
    load_q = load_p * ratio[None, :]
    in_service = load.in_service.to_numpy(dtype=bool)
    load_p[:, ~in_service] = 0.0
    load_q[:, ~in_service] = 0.0

    # Renewables (sgen): solar and wind by weather, others held at their case value.
    sgen = net.sgen
    kind = _column(sgen, "profile", "fixed").astype(str).to_numpy()
    rating = _column(sgen, "p_max_mw", np.nan).astype(float).to_numpy()
    rating = np.where(np.isfinite(rating), rating, sgen.p_mw.to_numpy(dtype=float))
    available = np.tile(sgen.p_mw.to_numpy(dtype=float), (n_time, 1))
    solar = profiles.solar_fraction(rng, hour, doy, day_index, step)
    wind_columns = np.flatnonzero(kind == "wind")
    wind = profiles.wind_fraction(rng, hour, step, max(len(wind_columns), 1))
    for column in np.flatnonzero(kind == "solar"):
        available[:, column] = solar * rating[column]
    for k, column in enumerate(wind_columns):
        available[:, column] = wind[k] * rating[column]
    available[:, ~sgen.in_service.to_numpy(dtype=bool)] = 0.0

    # Batteries.
    storage = net.storage
    storage_p = np.zeros((n_time, len(storage)))
    soc = np.zeros((n_time, len(storage)))
    for column, (_, row) in enumerate(storage.iterrows()):
        e_max = float(row.get("max_e_mwh", 0.0) or 0.0)
        p_max = float(row.get("p_max_mw", np.nan))
        p_max = p_max if np.isfinite(p_max) else float(row.get("sn_mva", 0.0) or 0.0)
        eta = float(row.get("eta", 1.0)) if np.isfinite(float(row.get("eta", np.nan))) else 1.0
        if e_max > 0 and p_max > 0 and bool(row.in_service):
            storage_p[:, column], soc[:, column] = profiles.battery_schedule(
                hour, p_max, e_max, eta, config.interval_h, config.battery_soc_start * e_max
            )
        else:
            storage_p[:, column] = float(row.p_mw) if bool(row.in_service) else 0.0

    if config.dispatch == "merit":
        gen_p, sgen_p = _merit_dispatch(net, config, load_p, available, storage_p)
    else:
        gen_p, sgen_p = _proportional_dispatch(net, load_p, available, storage_p)
    return Inputs(config, pd.DatetimeIndex(ends), load_p, load_q, sgen_p, available, gen_p, storage_p, soc)


def _merit_dispatch(
    net: pp.pandapowerNet, config: SimConfig, load_p: np.ndarray, available: np.ndarray, storage_p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    gen = net.gen
    on = gen.in_service.to_numpy(dtype=bool)
    p_max = _column(gen, "p_max_mw", np.nan).astype(float).to_numpy()
    p_max = np.where(
        np.isfinite(p_max), p_max, gen.max_p_mw.to_numpy(dtype=float) if "max_p_mw" in gen else 0.0
    )
    p_min = np.where(on, _column(gen, "p_min_mw", 0.0).astype(float).to_numpy(), 0.0)
    p_max = np.where(on, p_max, 0.0)
    ramp = _column(gen, "ramp_mw_per_min", np.inf).astype(float).to_numpy() * config.interval_s / 60.0
    order = np.argsort(_column(gen, "merit", 100).astype(int).to_numpy(), kind="stable")
    hydro = (_column(gen, "profile", "thermal").astype(str) == "hydro").to_numpy()

    n_time = load_p.shape[0]
    demand = (load_p.sum(axis=1) + storage_p.sum(axis=1)) * (1.0 + config.loss_estimate)
    renewable = available.sum(axis=1)
    gen_p = np.zeros((n_time, len(gen)))
    sgen_p = available.copy()
    hour, _weekday, _doy = profiles.local_calendar(
        pd.DatetimeIndex(
            pd.Timestamp(config.start).tz_convert("UTC")
            + pd.to_timedelta((np.arange(n_time) + 0.5) * config.interval_s, unit="s")
        ),
        config.zone,
    )
    # Pondage hydro: water for the day peak, a trickle at night.
    hydro_cap = np.where(((hour >= 7.0) & (hour < 23.0))[:, None], 0.95, 0.25) * p_max[None, :]
    previous = np.clip(p_min + 0.5 * (p_max - p_min), p_min, p_max)
    for t in range(n_time):
        upper = np.minimum(np.where(hydro, hydro_cap[t], p_max), previous + ramp)
        lower = np.minimum(np.maximum(p_min, previous - ramp), upper)
        need = demand[t] - renewable[t] - lower.sum()
        p = lower.copy()
        if need < 0:  # must-run exceeds demand: curtail wind and solar
            if renewable[t] > 0:
                sgen_p[t] *= max(renewable[t] + need, 0.0) / renewable[t]
        else:
            for g in order:
                take = min(need, upper[g] - lower[g])
                p[g] += take
                need -= take
                if need <= 0:
                    break
        gen_p[t] = p
        previous = p
    return gen_p, sgen_p


def _proportional_dispatch(
    net: pp.pandapowerNet, load_p: np.ndarray, available: np.ndarray, storage_p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    base_gen = np.where(net.gen.in_service.to_numpy(dtype=bool), net.gen.p_mw.to_numpy(dtype=float), 0.0)
    base_load = float(np.sum(np.where(net.load.in_service, net.load.p_mw, 0.0)))
    scale = (
        (load_p.sum(axis=1) + storage_p.sum(axis=1)) / base_load if base_load > 0 else np.ones(len(load_p))
    )
    return scale[:, None] * base_gen[None, :], available

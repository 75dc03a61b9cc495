"""Load, solar, wind and battery profiles: pure numpy functions of local time and a random generator.

Every profile is a fraction of the element's rating, sampled at interval midpoints.  Randomness (weather,
load noise) comes only from the ``numpy.random.Generator`` passed in, so a seed fixes the output.

Load shapes are piecewise-linear over the local day (hour, fraction of peak) for weekdays and weekends,
drawn from typical published shapes for Chinese provincial grids (industry shapes: flat for continuous
process industry, night-heavy for TOU-shifted cement grinding and arc furnaces, two-shift manufacturing,
evening-peak residential).  They are plausible, not measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter

LATITUDE_DEG = 31.8  # Hefei
LONGITUDE_DEG = 117.3

_Shape = Sequence[tuple[float, float]]
# industry -> (weekday shape, weekend shape) as (local hour, fraction of peak) breakpoints (cyclic)
LOAD_SHAPES: dict[str, tuple[_Shape, _Shape]] = {
    "steel": (
        [(0, 0.97), (7, 0.95), (8, 0.8), (11, 0.82), (12, 0.9), (17, 0.85), (22, 0.96)],
        [(0, 0.95), (12, 0.9)],
    ),
    "chemicals": ([(0, 0.9), (6, 0.88), (10, 0.93), (16, 0.92), (22, 0.9)], [(0, 0.88), (12, 0.9)]),
    "data_centre": ([(0, 0.86), (6, 0.85), (11, 0.92), (15, 0.95), (20, 0.9)], [(0, 0.86), (14, 0.92)]),
    "logistics": (
        [(0, 0.35), (5, 0.35), (7, 0.7), (10, 0.8), (12, 0.6), (14, 0.75), (18, 0.8), (22, 0.5)],
        [(0, 0.3), (8, 0.55), (12, 0.45), (18, 0.55), (22, 0.35)],
    ),
    "residential": (
        [
            (0, 0.42),
            (5, 0.35),
            (7, 0.65),
            (9, 0.5),
            (12, 0.58),
            (14, 0.5),
            (17, 0.72),
            (20, 1.0),
            (22, 0.8),
            (23, 0.55),
        ],
        [(0, 0.45), (5, 0.38), (9, 0.65), (12, 0.7), (15, 0.6), (20, 1.0), (22, 0.82), (23, 0.58)],
    ),
    "cement": (
        [(0, 1.0), (7, 0.98), (8, 0.5), (11, 0.45), (12, 0.7), (14, 0.55), (17, 0.45), (21, 0.6), (22, 0.98)],
        [(0, 0.95), (12, 0.75)],
    ),
    "hospital": (
        [(0, 0.6), (6, 0.62), (8, 0.92), (12, 0.95), (17, 0.9), (20, 0.75), (23, 0.62)],
        [(0, 0.6), (9, 0.8), (18, 0.75), (23, 0.6)],
    ),
    "semiconductor": ([(0, 0.93), (8, 0.94), (14, 0.96), (20, 0.94)], [(0, 0.93), (14, 0.95)]),
    "commercial": (
        [(0, 0.25), (7, 0.3), (9, 0.85), (12, 0.95), (15, 1.0), (19, 0.95), (21, 0.7), (23, 0.3)],
        [(0, 0.28), (8, 0.35), (10, 0.95), (15, 1.0), (20, 1.0), (22, 0.6), (23, 0.32)],
    ),
    "automotive": (
        [(0, 0.3), (6, 0.32), (7, 0.9), (12, 0.75), (13, 0.9), (22, 0.88), (23, 0.35)],
        [(0, 0.3), (8, 0.45), (17, 0.45), (20, 0.3)],
    ),
    "water": (
        [(0, 0.7), (5, 0.72), (7, 0.95), (10, 0.9), (18, 0.92), (21, 0.8)],
        [(0, 0.7), (9, 0.9), (20, 0.85)],
    ),
    "ev_charging": (
        [(0, 0.45), (5, 0.25), (8, 0.5), (12, 0.85), (14, 0.7), (18, 0.95), (21, 1.0), (23, 0.6)],
        [(0, 0.45), (6, 0.25), (11, 0.95), (16, 0.8), (20, 1.0), (23, 0.6)],
    ),
    "textile": ([(0, 0.85), (8, 0.88), (16, 0.86)], [(0, 0.8), (12, 0.78)]),
    "port": ([(0, 0.65), (6, 0.7), (8, 0.92), (17, 0.9), (20, 0.7)], [(0, 0.6), (9, 0.8), (18, 0.65)]),
    "mixed_urban": (
        [(0, 0.5), (5, 0.45), (8, 0.75), (11, 0.85), (13, 0.8), (16, 0.85), (20, 1.0), (23, 0.62)],
        [(0, 0.5), (6, 0.45), (10, 0.75), (14, 0.72), (20, 0.95), (23, 0.6)],
    ),
    "mixed_rural": (
        [(0, 0.45), (5, 0.42), (7, 0.65), (11, 0.62), (14, 0.58), (19, 1.0), (22, 0.7)],
        [(0, 0.45), (7, 0.6), (12, 0.65), (19, 1.0), (22, 0.7)],
    ),
    "mixed_industrial": (
        [(0, 0.68), (7, 0.7), (8, 0.95), (12, 0.85), (13, 0.95), (18, 0.9), (22, 0.72)],
        [(0, 0.65), (9, 0.75), (18, 0.72)],
    ),
}
DEFAULT_INDUSTRY = "mixed_urban"


def local_calendar(midpoints_utc: pd.DatetimeIndex, zone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local hour of day (fractional), weekday (Mon = 0) and day of year of each UTC time."""
    local = midpoints_utc.tz_convert(zone)
    hour = local.hour + local.minute / 60.0 + local.second / 3600.0
    return np.asarray(hour, dtype=float), np.asarray(local.dayofweek), np.asarray(local.dayofyear)


def _cyclic(shape: _Shape, hour: np.ndarray) -> np.ndarray:
    points = sorted(shape)
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    xs = np.r_[xs[-1] - 24.0, xs, xs[0] + 24.0]
    ys = np.r_[ys[-1], ys, ys[0]]
    return np.interp(hour, xs, ys)


def ar1(rng: np.random.Generator, n: int, sigma: float, tau_steps: float, size: int = 1) -> np.ndarray:
    """``size`` stationary AR(1) series of length ``n`` (std ``sigma``, correlation time ``tau_steps``)."""
    phi = math.exp(-1.0 / max(tau_steps, 1e-9))
    shocks = rng.standard_normal((size, n)) * sigma * math.sqrt(1 - phi * phi)
    shocks[:, 0] = rng.standard_normal(size) * sigma
    return lfilter([1.0], [1.0, -phi], shocks, axis=1)


def load_fraction(industry: str, hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Deterministic shape of one industry (fraction of peak) at the given local times."""
    weekday_shape, weekend_shape = LOAD_SHAPES.get(industry, LOAD_SHAPES[DEFAULT_INDUSTRY])
    return np.where(weekday >= 5, _cyclic(weekend_shape, hour), _cyclic(weekday_shape, hour))


def solar_elevation_sin(hour: np.ndarray, day_of_year: np.ndarray) -> np.ndarray:
    """Sine of the solar elevation at the grid's latitude (local clock time of UTC+8)."""
    declination = np.radians(23.44) * np.sin(2 * np.pi * (284 + day_of_year) / 365.0)
    solar_hour = hour + (LONGITUDE_DEG - 120.0) / 15.0
    omega = np.radians(15.0 * (solar_hour - 12.0))
    lat = math.radians(LATITUDE_DEG)
    return math.sin(lat) * np.sin(declination) + math.cos(lat) * np.cos(declination) * np.cos(omega)


def daily_clearness(rng: np.random.Generator, day_index: np.ndarray) -> np.ndarray:
    """Per-day clearness in [0.2, 1]: mostly sunny days, some overcast ones."""
    days = int(day_index.max()) + 1 if len(day_index) else 0
    per_day = 0.2 + 0.8 * rng.beta(4.0, 1.4, size=days)
    return per_day[day_index]


def solar_fraction(
    rng: np.random.Generator, hour: np.ndarray, day_of_year: np.ndarray, day_index: np.ndarray, step_s: float
) -> np.ndarray:
    """PV output as a fraction of peak: clear-sky shape x daily clearness x passing clouds."""
    clear = np.clip(solar_elevation_sin(hour, day_of_year), 0.0, None) ** 1.15 * 0.85
    kt = daily_clearness(rng, day_index)
    clouds = ar1(rng, len(hour), sigma=0.25, tau_steps=1200.0 / step_s)[0]
    factor = np.clip(kt - (1.0 - kt) * np.abs(clouds) * 2.0, 0.05, 1.0)
    return clear * factor


def wind_fraction(rng: np.random.Generator, hour: np.ndarray, step_s: float, size: int) -> np.ndarray:
    """``size`` wind farms' output fractions: AR(1) wind speed (6 h memory) through a power curve."""
    speed = 7.0 + 1.2 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)[None, :]
    speed = speed + ar1(rng, len(hour), sigma=3.0, tau_steps=6 * 3600.0 / step_s, size=size)
    speed = speed + ar1(rng, len(hour), sigma=0.6, tau_steps=300.0 / step_s, size=size)  # gusts
    cut_in, rated, cut_out = 3.0, 12.0, 25.0
    curve = np.clip((speed**3 - cut_in**3) / (rated**3 - cut_in**3), 0.0, 1.0)
    return np.where(speed >= cut_out, 0.0, curve)


def battery_schedule(
    hour: np.ndarray,
    p_max_mw: float,
    e_max_mwh: float,
    eta: float,
    step_h: float,
    soc_start_mwh: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Charging-positive power (MW) and state of charge at interval ends (MWh) of a peak-shaving battery.

    Charges at night (00:30-05:00) and at midday (11:00-14:00, on PV), discharges at the morning
    (08:30-10:30) and evening (18:00-21:30) peaks; the state of charge stays within [10 %, 95 %].
    """
    plan = np.zeros_like(hour)
    plan[(hour >= 0.5) & (hour < 5.0)] = 0.5 * p_max_mw
    plan[(hour >= 11.0) & (hour < 14.0)] = 0.6 * p_max_mw
    plan[(hour >= 8.5) & (hour < 10.5)] = -0.6 * p_max_mw
    plan[(hour >= 18.0) & (hour < 21.5)] = -0.8 * p_max_mw
    low, high = 0.10 * e_max_mwh, 0.95 * e_max_mwh
    p_mw = np.zeros_like(plan)
    soc = np.zeros_like(plan)
    level = soc_start_mwh
    for t, want in enumerate(plan):
        if want > 0:
            p = min(want, max(high - level, 0.0) / (eta * step_h))
            level += p * eta * step_h
        elif want < 0:
            p = -min(-want, max(level - low, 0.0) * eta / step_h)
            level += p / eta * step_h
        else:
            p = 0.0
        p_mw[t], soc[t] = p, level
    return p_mw, soc

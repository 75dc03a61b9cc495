"""Uncertainty of a metered interval, propagated from the uncertainty of its inputs.

The carbon emission flow is not linear in the powers (they set the mixing weights), and a small flow
can change direction within its uncertainty, so a first-order formula would mislead exactly where it
matters.  The propagation is therefore by Monte Carlo (GUM Supplement 1): ``samples`` draws of every
input from a normal distribution with its standard uncertainty, all solved at once with
:func:`solve_batch`; the standard uncertainty of an output is the standard deviation of its draws, and
the reported band is the expanded uncertainty ``k × u`` (``k = 2``: about 95 % coverage).

The draws are seeded, so the same interval always gives the same band.  Inputs are taken as
independent: a branch end derived from the others by the bus balance should be given the uncertainty
the balance gave it, which over-states, never under-states, the band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonflow.engine.batch import SnapshotSeries, solve_batch
from carbonflow.engine.cef import DEFAULT_TOL_MW
from carbonflow.engine.snapshot import Snapshot

DEFAULT_SAMPLES = 128
COVERAGE_FACTOR = 2.0
TOTALS = ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h", "residual_t_per_h")


@dataclass(frozen=True)
class InputUncertainty:
    """Standard uncertainties (1σ) of a snapshot's values, aligned with its id tuples (0: exact)."""

    gen_p_mw: np.ndarray
    gen_intensity_g_per_kwh: np.ndarray
    load_p_mw: np.ndarray
    branch_p_from_mw: np.ndarray
    branch_p_to_mw: np.ndarray
    storage_p_mw: np.ndarray

    @classmethod
    def exact(cls, snapshot: Snapshot) -> InputUncertainty:
        return cls(
            *(np.zeros(len(ids)) for ids in (snapshot.gen_ids, snapshot.gen_ids, snapshot.load_ids)),
            np.zeros(len(snapshot.branch_ids)),
            np.zeros(len(snapshot.branch_ids)),
            np.zeros(len(snapshot.storage_ids)),
        )


@dataclass(frozen=True)
class ResultUncertainty:
    """Expanded uncertainties (``coverage_factor`` × 1σ) of a snapshot's results."""

    bus_intensity_g_per_kwh: np.ndarray  # per bus; NaN where the bus has no intensity
    load_carbon_t_per_h: np.ndarray  # per load
    totals: dict[str, float]
    coverage_factor: float
    samples: int


def propagate(
    snapshot: Snapshot,
    inputs: InputUncertainty,
    losses: str = "receiving",
    *,
    samples: int = DEFAULT_SAMPLES,
    coverage_factor: float = COVERAGE_FACTOR,
    seed: int = 0,
    tol_mw: float = DEFAULT_TOL_MW,
) -> ResultUncertainty:
    """The band of every bus intensity, load carbon and total of ``snapshot``."""
    if samples < 2:
        raise ValueError("samples must be at least 2")
    random = np.random.default_rng(seed)

    def draw(values: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        sigma = np.nan_to_num(np.abs(np.asarray(sigma, dtype=float)))
        if sigma.shape != values.shape:
            raise ValueError(f"uncertainty shape {sigma.shape} does not match values {values.shape}")
        return values + random.standard_normal((samples, *values.shape)) * sigma

    series = SnapshotSeries(
        snapshot,
        gen_p_mw=draw(snapshot.gen_p_mw, inputs.gen_p_mw),
        branch_p_from_mw=draw(snapshot.branch_p_from_mw, inputs.branch_p_from_mw),
        load_p_mw=draw(snapshot.load_p_mw, inputs.load_p_mw),
        branch_p_to_mw=draw(snapshot.branch_p_to_mw, inputs.branch_p_to_mw),
        gen_intensity_g_per_kwh=np.clip(
            draw(snapshot.gen_intensity_g_per_kwh, inputs.gen_intensity_g_per_kwh), 0.0, None
        ),
        load_intensity_g_per_kwh=snapshot.load_intensity_g_per_kwh,
        storage_p_mw=draw(snapshot.storage_p_mw, inputs.storage_p_mw),
        storage_intensity_g_per_kwh=snapshot.storage_intensity_g_per_kwh,
    )
    result = solve_batch(series, losses, tol_mw=tol_mw)
    accounts = result.accounts

    def spread(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        known = np.isfinite(values)
        count = known.sum(axis=0)
        mean = np.where(count > 0, np.nansum(np.where(known, values, 0.0), axis=0) / np.maximum(count, 1), 0)
        squares = np.where(known, (values - mean) ** 2, 0.0).sum(axis=0)
        sigma = np.sqrt(squares / np.maximum(count - 1, 1))
        return np.where(count >= 2, coverage_factor * sigma, np.nan)

    load_slice = slice(len(snapshot.gen_ids), len(snapshot.gen_ids) + len(snapshot.load_ids))
    return ResultUncertainty(
        bus_intensity_g_per_kwh=spread(accounts.bus_intensity_g_per_kwh),
        load_carbon_t_per_h=spread(accounts.element_sink_carbon_t_per_h[:, load_slice]),
        totals={name: float(spread(getattr(accounts, name))) for name in TOTALS},
        coverage_factor=coverage_factor,
        samples=samples,
    )

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

A draw must be physically possible (GUM S1 §6.4.1: what is known for certain restricts the input
distributions).  Ends of a nearly idle branch drawn independently can both come out delivering power,
a storage unit of unknown carbon drawn discharging, a bus drawn to receive nothing while it consumes:
such a draw says nothing about the interval, and the engine rightly refuses it.  So the inputs are
drawn from their normal distributions *truncated* to the possible: a branch or a storage unit drawn
impossibly is drawn again (up to ``REDRAWS`` times, then given its measured value, which is possible),
and a whole draw the engine still refuses is left out (``rejected``).  The band of an interval whose
own values solve never makes the interval fail; with too few possible draws it is unknown (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonflow.engine.batch import BatchResult, SnapshotSeries, solve_batch
from carbonflow.engine.cef import DEFAULT_TOL_MW
from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.flows import both_ends_receiving
from carbonflow.engine.snapshot import Snapshot

DEFAULT_SAMPLES = 128
COVERAGE_FACTOR = 2.0
REDRAWS = 32  # attempts at a possible value for one branch or storage unit of one draw
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
    samples: int  # draws the band rests on
    rejected: int = 0  # draws left out: the engine refused them even after the redraws


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

    # drawn in this order, each at once: the same seed gives the same draws as before any redraw
    values = {
        "gen_p_mw": draw(snapshot.gen_p_mw, inputs.gen_p_mw),
        "branch_p_from_mw": draw(snapshot.branch_p_from_mw, inputs.branch_p_from_mw),
        "load_p_mw": draw(snapshot.load_p_mw, inputs.load_p_mw),
        "branch_p_to_mw": draw(snapshot.branch_p_to_mw, inputs.branch_p_to_mw),
        "gen_intensity_g_per_kwh": np.clip(
            draw(snapshot.gen_intensity_g_per_kwh, inputs.gen_intensity_g_per_kwh), 0.0, None
        ),
        "storage_p_mw": draw(snapshot.storage_p_mw, inputs.storage_p_mw),
    }
    _redraw_impossible(snapshot, inputs, values, random, tol_mw)
    result, rejected = _solve_possible(snapshot, values, losses, tol_mw)
    if result is None:
        nan = np.full(len(snapshot.bus_ids), np.nan)
        return ResultUncertainty(
            nan, np.full(len(snapshot.load_ids), np.nan), dict.fromkeys(TOTALS, float("nan")),
            coverage_factor, 0, rejected,
        )  # fmt: skip
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
        samples=samples - rejected,
        rejected=rejected,
    )


def _redraw_impossible(
    snapshot: Snapshot,
    inputs: InputUncertainty,
    values: dict[str, np.ndarray],
    random: np.random.Generator,
    tol_mw: float,
) -> None:
    """Draw again, in place, each branch drawn delivering power at both ends and each storage unit of
    unknown carbon drawn discharging; what stays impossible after ``REDRAWS`` gets its measured value."""
    ends = (
        ("branch_p_from_mw", snapshot.branch_p_from_mw, inputs.branch_p_from_mw),
        ("branch_p_to_mw", snapshot.branch_p_to_mw, inputs.branch_p_to_mw),
    )
    unknown_carbon = np.isnan(np.asarray(snapshot.storage_intensity_g_per_kwh, dtype=float))
    storage = (("storage_p_mw", snapshot.storage_p_mw, inputs.storage_p_mw),)

    def impossible_branches() -> np.ndarray:
        return both_ends_receiving(values["branch_p_from_mw"], values["branch_p_to_mw"], tol_mw)

    def impossible_storage() -> np.ndarray:
        return unknown_carbon & (values["storage_p_mw"] < -tol_mw)

    for impossible, fields in ((impossible_branches, ends), (impossible_storage, storage)):
        for _ in range(REDRAWS):
            mask = impossible()
            if not mask.any():
                break
            _, columns = np.nonzero(mask)
            for name, measured, sigma in fields:
                spread = np.nan_to_num(np.abs(np.asarray(sigma, dtype=float)))[columns]
                values[name][mask] = (
                    np.asarray(measured, dtype=float)[columns] + random.standard_normal(len(columns)) * spread
                )
        mask = impossible()
        if mask.any():
            _, columns = np.nonzero(mask)
            for name, measured, _sigma in fields:
                values[name][mask] = np.asarray(measured, dtype=float)[columns]


def _solve_possible(
    snapshot: Snapshot, values: dict[str, np.ndarray], losses: str, tol_mw: float
) -> tuple[BatchResult | None, int]:
    """The draws solved, leaving out each one the engine refuses (a bus drawn to consume what nothing
    sends it); None when fewer than half of them are possible (the band is then unknown)."""
    samples = len(values["gen_p_mw"])
    keep = np.arange(samples)
    while len(keep) >= max(2, samples / 2):
        series = SnapshotSeries(
            snapshot,
            **{name: array[keep] for name, array in values.items()},
            load_intensity_g_per_kwh=snapshot.load_intensity_g_per_kwh,
            storage_intensity_g_per_kwh=snapshot.storage_intensity_g_per_kwh,
        )
        try:
            return solve_batch(series, losses, tol_mw=tol_mw), samples - len(keep)
        except SnapshotError as error:
            if error.snapshot is None:
                raise
            keep = np.delete(keep, error.snapshot)
    return None, samples - len(keep)

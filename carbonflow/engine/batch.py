"""Many snapshots of one network in one call (e.g. a year of hourly data).

``method="auto"`` (= ``"kernel"``): the compiled kernel (kernel.py) solves every snapshot in one
call — Kahn sweep per snapshot over its own flow DAG, sparse LU only for snapshots with a directed
cycle, accounts in the same pass — writing into arrays allocated once for the whole series.

The numpy paths stay as references: ``"lu"`` (sparse LU per snapshot) and ``"sweep"`` (snapshots
grouped by their pattern of branch directions, one vectorised level sweep per acyclic pattern over
an ``(N, T)`` array, LU for patterns with a directed cycle), solved ``chunk`` snapshots at a time.
Results equal :func:`solve` snapshot by snapshot (tested).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from carbonflow.engine import kernel
from carbonflow.engine.accounts import (
    LOSS_CONVENTIONS,
    Accounts,
    account,
    carbon_weights,
    nodal_carbon_injection,
    nodal_flux,
    scatter_rows,
)
from carbonflow.engine.cef import DEFAULT_TOL_MW, CefResult, solve
from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.flows import (
    BOTH_SENDING,
    FORWARD,
    REVERSE,
    BranchFlows,
    Injections,
    both_ends_receiving,
    branch_flows,
    injections,
)
from carbonflow.engine.linear import SingularSystemError, flow_levels, solve_lu, sweep
from carbonflow.engine.snapshot import Snapshot

TIME_CHUNK = 256  # snapshots solved together by the numpy reference paths; see solve_batch


@dataclass(frozen=True, eq=False)
class SnapshotSeries:
    """``T`` snapshots of one network: the network's ids and buses come from ``network``; every value
    array has a leading time axis (intensities may also be given once, without it)."""

    network: Snapshot
    gen_p_mw: np.ndarray  # (T, G)
    branch_p_from_mw: np.ndarray  # (T, B)
    load_p_mw: np.ndarray  # (T, L)
    branch_p_to_mw: np.ndarray | None = None  # (T, B); None: lossless (p_to = -p_from)
    gen_intensity_g_per_kwh: np.ndarray | None = None  # (G,) or (T, G); None: the network's
    load_intensity_g_per_kwh: np.ndarray | None = None
    storage_p_mw: np.ndarray | None = None  # (T, S)
    storage_intensity_g_per_kwh: np.ndarray | None = None  # (T, S) or (S,)
    arrays: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        net = self.network
        n_time = (
            np.shape(self.gen_p_mw)[0] if np.ndim(self.gen_p_mw) == 2 else np.shape(self.branch_p_from_mw)[0]
        )

        def timed(name: str, value: np.ndarray | None, default: np.ndarray, width: int) -> np.ndarray:
            array = np.asarray(default if value is None else value, dtype=float)
            if array.ndim == 1:
                array = np.broadcast_to(array, (n_time, width))
            if array.shape != (n_time, width):
                raise SnapshotError(f"series: {name} has shape {array.shape}, expected ({n_time}, {width})")
            if not np.all(np.isfinite(array) | np.isnan(default if value is None else array)):
                raise SnapshotError(f"series: {name} contains NaN or infinity")
            return array

        n_gen, n_load, n_branch, n_storage = (
            len(net.gen_ids),
            len(net.load_ids),
            len(net.branch_ids),
            len(net.storage_ids),
        )
        p_from = timed("branch_p_from_mw", self.branch_p_from_mw, net.branch_p_from_mw, n_branch)
        arrays = {
            "gen_p_mw": timed("gen_p_mw", self.gen_p_mw, net.gen_p_mw, n_gen),
            "gen_intensity_g_per_kwh": timed(
                "gen_intensity_g_per_kwh", self.gen_intensity_g_per_kwh, net.gen_intensity_g_per_kwh, n_gen
            ),
            "load_p_mw": timed("load_p_mw", self.load_p_mw, net.load_p_mw, n_load),
            "load_intensity_g_per_kwh": timed(
                "load_intensity_g_per_kwh",
                self.load_intensity_g_per_kwh,
                net.load_intensity_g_per_kwh,
                n_load,
            ),
            "branch_p_from_mw": p_from,
            "branch_p_to_mw": -p_from
            if self.branch_p_to_mw is None
            else timed("branch_p_to_mw", self.branch_p_to_mw, net.branch_p_to_mw, n_branch),
            "storage_p_mw": timed("storage_p_mw", self.storage_p_mw, np.zeros(n_storage), n_storage),
            "storage_intensity_g_per_kwh": timed(
                "storage_intensity_g_per_kwh",
                self.storage_intensity_g_per_kwh,
                np.full(n_storage, np.nan),
                n_storage,
            ),
        }
        if np.any(arrays["gen_intensity_g_per_kwh"] < 0):
            raise SnapshotError("series: gen_intensity_g_per_kwh has a negative intensity")
        object.__setattr__(self, "arrays", arrays)

    @property
    def n_time(self) -> int:
        return self.arrays["gen_p_mw"].shape[0]

    def snapshot(self, t: int) -> Snapshot:
        return self.network.with_values(**{name: values[t] for name, values in self.arrays.items()})

    def window(self, start: int, stop: int, **replace: np.ndarray) -> SnapshotSeries:
        values = {name: values[start:stop] for name, values in self.arrays.items()}
        values.update(replace)
        return SnapshotSeries(self.network, **values)


@dataclass(frozen=True, eq=False)
class BatchResult:
    series: SnapshotSeries
    losses: str
    accounts: Accounts  # every array with a leading time axis
    tol_mw: float
    n_patterns: int  # distinct flow-direction patterns met
    n_lu_snapshots: int  # snapshots solved by LU (directed cycles)
    given_flows: BranchFlows | None = field(default=None, repr=False)  # None: derived on access
    given_injections: Injections | None = field(default=None, repr=False)

    @property
    def n_time(self) -> int:
        return self.series.n_time

    @functools.cached_property
    def flows(self) -> BranchFlows:
        """Directions and powers of every branch, ``(T, B)``.  The kernel keeps only the accounts;
        then these are derived from the series on first access by the reference definition
        (:func:`~carbonflow.engine.flows.branch_flows`)."""
        return self.given_flows if self.given_flows is not None else self._flows(slice(None))

    @functools.cached_property
    def injections(self) -> Injections:
        """Sources and sinks of every element, ``(T, E)``; derived on first access like ``flows``."""
        return self.given_injections if self.given_injections is not None else self._injections(slice(None))

    def _flows(self, rows: int | slice) -> BranchFlows:
        net, a = self.series.network, self.series.arrays
        p_from, p_to = a["branch_p_from_mw"][rows], a["branch_p_to_mw"][rows]
        return branch_flows(net.branch_from, net.branch_to, p_from, p_to, self.tol_mw)

    def _injections(self, rows: int | slice) -> Injections:
        net, a = self.series.network, {name: values[rows] for name, values in self.series.arrays.items()}
        return injections(
            net.gen_bus, a["gen_p_mw"], a["gen_intensity_g_per_kwh"],
            net.load_bus, a["load_p_mw"], a["load_intensity_g_per_kwh"],
            net.storage_bus, a["storage_p_mw"], a["storage_intensity_g_per_kwh"],
        )  # fmt: skip

    def at(self, t: int) -> CefResult:
        """The result of snapshot ``t`` as a single-snapshot result."""
        pick = {name: getattr(self.accounts, name)[t] for name in self.accounts.__dataclass_fields__}
        if self.given_flows is None:
            flows, injection = self._flows(t), self._injections(t)
        else:
            flows = BranchFlows(
                **{name: getattr(self.flows, name)[t] for name in self.flows.__dataclass_fields__}
            )
            inj = self.injections
            injection = Injections(
                inj.bus, inj.source_mw[t], inj.sink_mw[t], inj.source_intensity_g_per_kwh[t]
            )
        return CefResult(
            self.series.snapshot(t), self.losses, "batch", Accounts(**pick), flows, injection, self.tol_mw
        )


def _first_bad_snapshot(series: SnapshotSeries, bad: np.ndarray, losses: str, tol_mw: float) -> NoReturn:
    """Re-solve the first offending snapshot alone so its error names the record; prefix the time."""
    t = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
    try:
        solve(series.snapshot(t), losses, tol_mw=tol_mw)
    except SnapshotError as error:
        raise SnapshotError(f"snapshot {t}: {error}", snapshot=t) from None
    raise SnapshotError(f"snapshot {t}: cannot be metered", snapshot=t)


def solve_batch(
    series: SnapshotSeries,
    losses: str = "receiving",
    *,
    tol_mw: float = DEFAULT_TOL_MW,
    method: str = "auto",
    chunk: int = TIME_CHUNK,
) -> BatchResult:
    """Carbon emission flow of every snapshot of ``series``.  ``method="auto"`` (= ``"kernel"``):
    the compiled kernel; ``"lu"``: the sparse LU for every snapshot (the reference path);
    ``"sweep"``: the numpy level sweep of every acyclic direction pattern.

    The numpy paths solve long series ``chunk`` snapshots at a time: their vectorised accounting
    over (T, N) arrays is memory-bound, and cache-sized chunks made a year ~2x faster."""
    if method not in ("auto", "kernel", "lu", "sweep"):
        raise ValueError(f"method must be auto, kernel, lu or sweep, got {method!r}")
    if losses not in LOSS_CONVENTIONS:
        raise ValueError(f"losses must be one of {LOSS_CONVENTIONS}, got {losses!r}")
    if method in ("auto", "kernel"):
        return _solve_kernel(series, losses, tol_mw)
    if series.n_time <= chunk:
        return _solve_chunk(series, losses, tol_mw, method)
    parts = []
    for start in range(0, series.n_time, chunk):
        try:
            parts.append(_solve_chunk(series.window(start, start + chunk), losses, tol_mw, method))
        except SnapshotError as error:
            t = None if error.snapshot is None else error.snapshot + start
            raise SnapshotError(_shift_snapshot_number(str(error), start), snapshot=t) from None
    return BatchResult(
        series,
        losses,
        Accounts(**_stack(parts, "accounts")),
        tol_mw,
        sum(part.n_patterns for part in parts),
        sum(part.n_lu_snapshots for part in parts),
        BranchFlows(**_stack(parts, "flows")),
        Injections(parts[0].injections.bus, **_stack(parts, "injections", skip=("bus",))),
    )


def _stack(parts: list[BatchResult], name: str, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    first = getattr(parts[0], name)
    return {
        field_name: np.concatenate([getattr(getattr(part, name), field_name) for part in parts])
        for field_name in first.__dataclass_fields__
        if field_name not in skip
    }


def _shift_snapshot_number(message: str, offset: int) -> str:
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("snapshot ") and head[9:].isdigit():
        return f"snapshot {int(head[9:]) + offset}: {rest}"
    return message


def _solve_chunk(series: SnapshotSeries, losses: str, tol_mw: float, method: str) -> BatchResult:
    net, a = series.network, series.arrays
    n_bus, n_time = net.n_bus, series.n_time
    p_from, p_to = a["branch_p_from_mw"], a["branch_p_to_mw"]
    discharging_unknown = (a["storage_p_mw"] < -tol_mw) & np.isnan(a["storage_intensity_g_per_kwh"])
    for bad in (both_ends_receiving(p_from, p_to, tol_mw), discharging_unknown):
        if np.any(bad):
            _first_bad_snapshot(series, bad, losses, tol_mw)

    flows = branch_flows(net.branch_from, net.branch_to, p_from, p_to, tol_mw)
    inj = injections(
        net.gen_bus, a["gen_p_mw"], a["gen_intensity_g_per_kwh"],
        net.load_bus, a["load_p_mw"], a["load_intensity_g_per_kwh"],
        net.storage_bus, a["storage_p_mw"], a["storage_intensity_g_per_kwh"],
    )  # fmt: skip
    flux = nodal_flux(n_bus, flows, inj)
    rhs = nodal_carbon_injection(n_bus, inj)
    live = flux > tol_mw
    sending = (flows.direction == FORWARD) | (flows.direction == REVERSE)
    sink = scatter_rows(np.broadcast_to(inj.bus, inj.sink_mw.shape), inj.sink_mw, n_bus)
    starving = ~live & (sink > tol_mw)
    dead_sender = sending & ~np.take_along_axis(live, flows.sending_bus, axis=1)
    both = flows.direction == BOTH_SENDING
    dead_sender |= both & ~(live[:, net.branch_from] & live[:, net.branch_to])
    for bad in (starving, dead_sender):
        if np.any(bad):
            _first_bad_snapshot(series, bad, losses, tol_mw)

    weights = carbon_weights(flows, losses, tol_mw)
    intensity = np.full((n_time, n_bus), np.nan)
    patterns, pattern_of = np.unique(flows.direction, axis=0, return_inverse=True)
    pattern_of = pattern_of.reshape(-1)
    lu_snapshots = 0
    for p, pattern in enumerate(patterns):
        members = np.flatnonzero(pattern_of == p)
        edges = np.flatnonzero((pattern == FORWARD) | (pattern == REVERSE))
        src, dst = flows.sending_bus[members[0], edges], flows.receiving_bus[members[0], edges]
        levels = flow_levels(n_bus, src, dst) if method == "sweep" else None
        if levels is not None:
            swept = sweep(levels, src, weights[members][:, edges].T, flux[members].T, rhs[members].T, tol_mw)
            intensity[members] = swept.T
            continue
        for t in members:
            carrying = sending[t] & (weights[t] > 0)
            try:
                intensity[t] = solve_lu(
                    n_bus, flows.sending_bus[t, carrying], flows.receiving_bus[t, carrying],
                    weights[t, carrying], flux[t], rhs[t], live[t], keep_factor=False,
                ).intensity  # fmt: skip
            except SingularSystemError:
                _first_bad_snapshot(series, np.arange(n_time) == t, losses, tol_mw)
        lu_snapshots += len(members)

    intensity = _clip_rows(intensity, inj, losses)
    accounts = account(
        intensity, flux, flows, net.branch_from, net.branch_to, p_from, p_to, inj, losses, tol_mw
    )
    return BatchResult(series, losses, accounts, tol_mw, len(patterns), lu_snapshots, flows, inj)


def _solve_kernel(series: SnapshotSeries, losses: str, tol_mw: float) -> BatchResult:
    net = series.network
    try:
        out = kernel.run(net.n_bus, tol_mw, losses, net, kernel.series_values(series.arrays), full=False)
    except kernel.CycleSingularError as error:
        _first_bad_snapshot(series, np.arange(series.n_time) == error.t, losses, tol_mw)
    bad = out.status == kernel.BAD
    if np.any(bad):
        _first_bad_snapshot(series, bad, losses, tol_mw)
    return BatchResult(
        series, losses, out.accounts(), tol_mw, count_patterns(out.direction), len(out.lu_rows)
    )


def count_patterns(direction: np.ndarray) -> int:
    """Distinct rows of a (T, B) direction array."""
    if direction.shape[1] == 0:
        return min(len(direction), 1)
    rows = np.ascontiguousarray(direction).view(np.dtype((np.void, direction.shape[1])))
    return len(np.unique(rows))


def _clip_rows(intensity: np.ndarray, inj: Injections, losses: str) -> np.ndarray:
    """Row-wise :func:`carbonflow.engine.cef.clip_to_sources`."""
    if losses == "consumer":
        return np.clip(intensity, 0.0, None)
    injecting = inj.source_mw > 0
    e = inj.source_intensity_g_per_kwh
    low = np.where(injecting, e, np.inf).min(axis=1, initial=np.inf)
    high = np.where(injecting, e, -np.inf).max(axis=1, initial=-np.inf)
    has_source = injecting.any(axis=1)
    low, high = np.where(has_source, low, -np.inf), np.where(has_source, high, np.inf)
    return np.clip(intensity, low[:, None], high[:, None])

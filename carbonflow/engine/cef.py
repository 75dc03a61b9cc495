"""Carbon emission flow of one snapshot: ``solve(snapshot) -> CefResult``.

Pipeline: directions and injections (flows.py) → checks that name the offending record →
nodal intensities (sparse LU, or the topological sweep) → clip round-off → accounts (accounts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonflow.engine import kernel
from carbonflow.engine.accounts import (
    LOSS_CONVENTIONS,
    Accounts,
    account,
    carbon_weights,
    nodal_carbon_injection,
    nodal_flux,
)
from carbonflow.engine.diagnose import check_supply, describe_singular_system
from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.flows import (
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

# Flows below 1 W are measurement noise or solver leftovers (reference §11 pitfall 12).
DEFAULT_TOL_MW = 1e-6
METHODS = ("auto", "kernel", "lu", "sweep")


@dataclass(frozen=True, eq=False)
class CefResult:
    """Everything the engine computes for one snapshot.  Arrays align with the snapshot's ids."""

    snapshot: Snapshot
    losses: str
    method: str
    accounts: Accounts
    flows: BranchFlows
    injections: Injections
    tol_mw: float

    # Buses -------------------------------------------------------------------------------------
    @property
    def bus_flux_mw(self) -> np.ndarray:
        return self.accounts.bus_flux_mw

    @property
    def bus_intensity_g_per_kwh(self) -> np.ndarray:
        return self.accounts.bus_intensity_g_per_kwh

    @property
    def bus_load_mw(self) -> np.ndarray:
        return self.accounts.bus_load_mw

    @property
    def bus_load_carbon_t_per_h(self) -> np.ndarray:
        return self.accounts.bus_load_carbon_t_per_h

    # Elements ----------------------------------------------------------------------------------
    def _element_slice(self, kind: str) -> slice:
        n_gen, n_load = len(self.snapshot.gen_ids), len(self.snapshot.load_ids)
        return {
            "generator": slice(0, n_gen),
            "load": slice(n_gen, n_gen + n_load),
            "storage": slice(n_gen + n_load, None),
        }[kind]

    def injected_carbon_t_per_h(self, kind: str) -> np.ndarray:
        """Carbon each element of ``kind`` brings into the grid (generation side)."""
        return self.accounts.element_source_carbon_t_per_h[self._element_slice(kind)]

    def absorbed_carbon_t_per_h(self, kind: str) -> np.ndarray:
        """Carbon each element of ``kind`` takes out of the grid (consumption side)."""
        return self.accounts.element_sink_carbon_t_per_h[self._element_slice(kind)]

    @property
    def gen_carbon_t_per_h(self) -> np.ndarray:
        return self.injected_carbon_t_per_h("generator")

    @property
    def load_carbon_t_per_h(self) -> np.ndarray:
        return self.absorbed_carbon_t_per_h("load")

    # Branches ----------------------------------------------------------------------------------
    @property
    def branch_density_g_per_kwh(self) -> np.ndarray:
        return self.accounts.branch_density_g_per_kwh

    @property
    def branch_carbon_send_t_per_h(self) -> np.ndarray:
        return self.accounts.branch_carbon_send_t_per_h

    @property
    def branch_carbon_recv_t_per_h(self) -> np.ndarray:
        return self.accounts.branch_carbon_recv_t_per_h

    @property
    def branch_loss_carbon_t_per_h(self) -> np.ndarray:
        return self.accounts.branch_loss_carbon_t_per_h

    # Totals ------------------------------------------------------------------------------------
    @property
    def totals(self) -> dict[str, float]:
        acc = self.accounts
        return {
            "generation_carbon_t_per_h": float(acc.generation_carbon_t_per_h),
            "load_carbon_t_per_h": float(acc.load_carbon_t_per_h),
            "loss_carbon_t_per_h": float(acc.loss_carbon_t_per_h),
            "residual_t_per_h": float(acc.residual_t_per_h),
            "generation_mw": float(self.injections.source_mw.sum()),
            "load_mw": float(self.injections.sink_mw.sum()),
            "loss_mw": float(self.flows.p_loss_mw.sum()),
        }


def _check_losses(losses: str) -> None:
    if losses not in LOSS_CONVENTIONS:
        raise ValueError(f"losses must be one of {LOSS_CONVENTIONS}, got {losses!r}")


def _check_branches(snapshot: Snapshot, tol_mw: float) -> None:
    bad = both_ends_receiving(snapshot.branch_p_from_mw, snapshot.branch_p_to_mw, tol_mw)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise SnapshotError(
            f'branches (id "{snapshot.branch_ids[k]}"): both ends deliver power '
            f"(p_from_mw={snapshot.branch_p_from_mw[k]:g}, p_to_mw={snapshot.branch_p_to_mw[k]:g}); "
            "a passive branch cannot create power"
        )


def _check_storage(snapshot: Snapshot, tol_mw: float) -> None:
    unknown = (snapshot.storage_p_mw < -tol_mw) & np.isnan(snapshot.storage_intensity_g_per_kwh)
    if np.any(unknown):
        k = int(np.flatnonzero(unknown)[0])
        raise SnapshotError(
            f'storage (id "{snapshot.storage_ids[k]}"): discharges {-snapshot.storage_p_mw[k]:g} MW but '
            "has no intensity_g_per_kwh (give it, or meter a series with the storage carbon state)"
        )


def prepare(snapshot: Snapshot, tol_mw: float) -> tuple[BranchFlows, Injections]:
    _check_branches(snapshot, tol_mw)
    _check_storage(snapshot, tol_mw)
    flows = branch_flows(
        snapshot.branch_from, snapshot.branch_to, snapshot.branch_p_from_mw, snapshot.branch_p_to_mw, tol_mw
    )
    inj = injections(
        snapshot.gen_bus,
        snapshot.gen_p_mw,
        snapshot.gen_intensity_g_per_kwh,
        snapshot.load_bus,
        snapshot.load_p_mw,
        snapshot.load_intensity_g_per_kwh,
        snapshot.storage_bus,
        snapshot.storage_p_mw,
        snapshot.storage_intensity_g_per_kwh,
    )
    return flows, inj


def carrying_edges(flows: BranchFlows, weights: np.ndarray) -> np.ndarray:
    """Branches that carry carbon from their sending to their receiving bus."""
    return ((flows.direction == FORWARD) | (flows.direction == REVERSE)) & (weights > 0)


def clip_to_sources(intensity: np.ndarray, inj: Injections, losses: str) -> np.ndarray:
    """Clip round-off.  Under ``receiving`` every nodal intensity is a convex mix of source
    intensities (P_N is built from the same inflows); under ``consumer`` losses amplify upstream
    intensities, so only non-negativity bounds them.  (kernel.py's ``_clip`` is the compiled twin.)"""
    if losses == "consumer":
        return np.clip(intensity, 0.0, None)
    injecting = inj.source_mw > 0
    if not np.any(injecting):
        return intensity
    source_e = inj.source_intensity_g_per_kwh[injecting]
    return np.clip(intensity, source_e.min(), source_e.max())


def solve(
    snapshot: Snapshot,
    losses: str = "receiving",
    *,
    method: str = "auto",
    tol_mw: float = DEFAULT_TOL_MW,
) -> CefResult:
    """Carbon emission flow of one snapshot.

    ``losses``: ``"receiving"`` (convention A: loss carbon reported as grid-side emissions,
    generation = load + loss) or ``"consumer"`` (convention C: loss carbon inside consumer
    intensities, generation = load).  ``method``: ``"auto"`` = ``"kernel"`` (the compiled fast
    path, kernel.py: Kahn sweep, sparse LU only for a directed cycle), ``"lu"`` (the numpy reference
    path: sparse LU, any flow pattern) or ``"sweep"`` (numpy topological levels; falls back to LU on a
    directed cycle).  All agree within round-off (tests/test_engine_fastpath.py).
    """
    _check_losses(losses)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("auto", "kernel"):
        return _solve_kernel(snapshot, losses, tol_mw)
    flows, inj = prepare(snapshot, tol_mw)
    n_bus = snapshot.n_bus
    flux = nodal_flux(n_bus, flows, inj)
    rhs = nodal_carbon_injection(n_bus, inj)
    live = flux > tol_mw
    check_supply(snapshot, flows, inj, live, tol_mw)
    weights = carbon_weights(flows, losses, tol_mw)
    edges = carrying_edges(flows, weights)
    src, dst, weight = flows.sending_bus[edges], flows.receiving_bus[edges], weights[edges]

    used = "lu"
    levels = flow_levels(n_bus, src, dst) if method == "sweep" else None
    if levels is not None:
        intensity = sweep(levels, src, weight, flux, rhs, tol_mw)
        used = "sweep"
    else:
        try:
            intensity = solve_lu(n_bus, src, dst, weight, flux, rhs, live, keep_factor=False).intensity
        except SingularSystemError:
            raise SnapshotError(describe_singular_system(snapshot, src, dst, inj, live)) from None
    intensity = clip_to_sources(intensity, inj, losses)
    accounts = account(
        intensity,
        flux,
        flows,
        snapshot.branch_from,
        snapshot.branch_to,
        snapshot.branch_p_from_mw,
        snapshot.branch_p_to_mw,
        inj,
        losses,
        tol_mw,
    )
    return CefResult(snapshot, losses, used, accounts, flows, inj, tol_mw)


def _solve_kernel(snapshot: Snapshot, losses: str, tol_mw: float) -> CefResult:
    try:
        out = kernel.run(snapshot.n_bus, tol_mw, losses, snapshot, kernel.single_values(snapshot))
    except kernel.CycleSingularError:
        out = None
    if out is None or out.status[0] == kernel.BAD:
        # the reference path raises the error that names the offending record
        return solve(snapshot, losses, method="lu", tol_mw=tol_mw)
    used = "lu" if len(out.lu_rows) else "kernel"
    return CefResult(snapshot, losses, used, out.accounts(0), out.flows(0), out.injections(0), tol_mw)


def warm_up() -> CefResult:
    """Load the compiled kernel (or compile it: a few seconds without numba's on-disk cache) and
    solve a two-bus snapshot with it, so that the first real snapshot pays no compilation."""
    bus, power = np.arange(2, dtype=np.intp), np.array([10.0])
    snapshot = Snapshot(
        bus_ids=("1", "2"),
        gen_ids=("G",),
        gen_bus=bus[:1],
        gen_p_mw=power,
        gen_intensity_g_per_kwh=np.array([500.0]),
        load_ids=("L",),
        load_bus=bus[1:],
        load_p_mw=power,
        load_intensity_g_per_kwh=np.array([np.nan]),
        branch_ids=("b",),
        branch_from=bus[:1],
        branch_to=bus[1:],
        branch_p_from_mw=power,
        branch_p_to_mw=-power,
    )
    return solve(snapshot)

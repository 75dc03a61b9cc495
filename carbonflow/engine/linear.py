"""The two ways to solve the nodal carbon balance ``(P_N − P_Bᵀ) e = P_Gᵀ E_G`` (reference §3.2).

* :func:`solve_lu` — sparse LU (SuperLU via scipy) on the energised buses; the general path, valid
  for any flow pattern including directed cycles.  Never a dense inverse.
* :func:`flow_levels` + :func:`sweep` — where the flow graph is acyclic, forward substitution in
  topological levels, vectorised over any number of snapshots that share the flow directions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla


class SingularSystemError(ArithmeticError):
    """The carbon system has no unique solution (flow without a source, inconsistent flows)."""


@dataclass(frozen=True)
class LuSolution:
    intensity: np.ndarray  # (N,), NaN at buses outside ``live``
    factor: sla.SuperLU | None  # None when the caller did not ask to keep it
    live_index: np.ndarray  # positions of the energised buses, in factor order


def carbon_matrix(
    n_bus: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, flux: np.ndarray, live: np.ndarray
) -> tuple[sp.csc_array, np.ndarray]:
    """``diag(P_N) − P_Bᵀ`` restricted to live buses (COO sums parallel branches)."""
    live_index = np.flatnonzero(live)
    position = np.full(n_bus, -1, dtype=np.intp)
    position[live_index] = np.arange(len(live_index))
    n_live = len(live_index)
    diagonal = np.arange(n_live)
    rows = np.concatenate([diagonal, position[dst]])
    cols = np.concatenate([diagonal, position[src]])
    values = np.concatenate([flux[live_index], -weight])
    return sp.csc_array((values, (rows, cols)), shape=(n_live, n_live)), live_index


def solve_lu(
    n_bus: int,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    flux: np.ndarray,
    rhs: np.ndarray,
    live: np.ndarray,
    keep_factor: bool = True,
) -> LuSolution:
    """Edges must join live buses only (the caller has checked that dead buses send nothing).
    ``keep_factor`` keeps the LU factors for further solves (the origin matrix needs them)."""
    matrix, live_index = carbon_matrix(n_bus, src, dst, weight, flux, live)
    factor = None
    try:
        if keep_factor:
            factor = sla.splu(matrix)
            solution = factor.solve(rhs[live_index])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", sla.MatrixRankWarning)
                solution = sla.spsolve(matrix, rhs[live_index])
    except (RuntimeError, sla.MatrixRankWarning) as error:  # SuperLU: "Factor is exactly singular"
        raise SingularSystemError(str(error)) from None
    if not np.all(np.isfinite(solution)):
        raise SingularSystemError("carbon system is numerically singular")
    intensity = np.full(n_bus, np.nan)
    intensity[live_index] = solution
    return LuSolution(intensity, factor, live_index)


@dataclass(frozen=True)
class FlowLevels:
    """Topological levels of an acyclic flow graph, arranged for vectorised substitution."""

    n_bus: int
    node_order: np.ndarray  # buses sorted by (level, position)
    node_starts: np.ndarray  # node_order[node_starts[l]:node_starts[l+1]] are the buses of level l
    edge_order: np.ndarray  # edges sorted by (level of receiving bus, receiving bus)
    edge_starts: np.ndarray  # edge_order[edge_starts[l]:edge_starts[l+1]] feed level l
    segment_offsets: tuple[np.ndarray, ...]  # per level >= 1: reduceat offsets of each receiving bus

    @property
    def depth(self) -> int:
        return len(self.node_starts) - 1


def flow_levels(n_bus: int, src: np.ndarray, dst: np.ndarray) -> FlowLevels | None:
    """Levels of the directed flow graph (longest path from a source bus), or ``None`` if it has a
    directed cycle.  Kahn's peeling, one vectorised step per level: O(N + E) work in all."""
    out_order = np.argsort(src, kind="stable")
    out_start = np.searchsorted(src[out_order], np.arange(n_bus + 1))
    remaining_in = np.bincount(dst, minlength=n_bus)
    level = np.zeros(n_bus, dtype=np.intp)
    frontier = np.flatnonzero(remaining_in == 0)
    placed, depth = 0, 0
    while len(frontier):
        level[frontier] = depth
        placed += len(frontier)
        counts = out_start[frontier + 1] - out_start[frontier]
        if not counts.sum():
            break
        # the out-edges of every frontier bus, gathered without a Python loop
        firsts = np.repeat(out_start[frontier] - np.cumsum(counts) + counts, counts)
        edges = out_order[firsts + np.arange(counts.sum())]
        targets, hits = np.unique(dst[edges], return_counts=True)
        remaining_in[targets] -= hits
        frontier = targets[remaining_in[targets] == 0]
        depth += 1
    if placed < n_bus:
        return None
    node_order = np.argsort(level, kind="stable")
    depth = int(level.max(initial=0)) + 1
    node_starts = np.searchsorted(level[node_order], np.arange(depth + 1))
    edge_level = level[dst]
    edge_order = np.lexsort((dst, edge_level))
    edge_starts = np.searchsorted(edge_level[edge_order], np.arange(depth + 1))
    offsets = []
    for lvl in range(1, depth):
        receiving = dst[edge_order[edge_starts[lvl] : edge_starts[lvl + 1]]]
        offsets.append(np.flatnonzero(np.r_[True, receiving[1:] != receiving[:-1]]))
    return FlowLevels(n_bus, node_order, node_starts, edge_order, edge_starts, tuple(offsets))


def sweep(
    levels: FlowLevels,
    src: np.ndarray,
    weight: np.ndarray,
    flux: np.ndarray,
    rhs: np.ndarray,
    tol_mw: float,
) -> np.ndarray:
    """Nodal intensities by forward substitution, level by level.

    ``weight`` is ``(E,)`` or ``(E, T)``; ``flux`` and ``rhs`` are ``(N,)`` or ``(N, T)``.  Buses whose
    flux is at most ``tol_mw`` get NaN.
    """
    single = flux.ndim == 1
    if single:
        weight, flux, rhs = weight[:, None], flux[:, None], rhs[:, None]
    dead = flux <= tol_mw
    safe_flux = np.where(dead, 1.0, flux)
    intensity = np.empty_like(flux)
    first = levels.node_order[: levels.node_starts[1]]
    intensity[first] = rhs[first] / safe_flux[first]
    for lvl in range(1, levels.depth):
        nodes = levels.node_order[levels.node_starts[lvl] : levels.node_starts[lvl + 1]]
        edges = levels.edge_order[levels.edge_starts[lvl] : levels.edge_starts[lvl + 1]]
        inflow = np.add.reduceat(
            weight[edges] * intensity[src[edges]], levels.segment_offsets[lvl - 1], axis=0
        )
        intensity[nodes] = (rhs[nodes] + inflow) / safe_flux[nodes]
    intensity[dead] = np.nan
    return intensity[:, 0] if single else intensity

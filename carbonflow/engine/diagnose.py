"""Checks that turn an unmeterable snapshot into one sentence naming the bus or island at fault.

Run before solving (cheap checks) or only after a solve failed (graph searches), so that the normal
path stays fast.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.flows import BOTH_SENDING, IDLE, BranchFlows, Injections
from carbonflow.engine.snapshot import Snapshot


def islands(n_bus: int, flows: BranchFlows) -> np.ndarray:
    """Island label of every bus: connected through branches that carry power."""
    energised = flows.direction != IDLE
    graph = sp.csr_array(
        (np.ones(int(energised.sum())), (flows.sending_bus[energised], flows.receiving_bus[energised])),
        shape=(n_bus, n_bus),
    )
    return connected_components(graph, directed=False)[1]


def _bus_list(snapshot: Snapshot, positions: np.ndarray, limit: int = 5) -> str:
    names = [f'"{snapshot.bus_ids[p]}"' for p in positions[:limit]]
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    return ", ".join(names) + more


def check_supply(
    snapshot: Snapshot, flows: BranchFlows, inj: Injections, live: np.ndarray, tol_mw: float
) -> None:
    """A bus with no inflow and no generation may neither consume nor send power."""
    n_bus = snapshot.n_bus
    sink = np.bincount(inj.bus, inj.sink_mw, n_bus)
    starving = ~live & (sink > tol_mw)
    if np.any(starving):
        bus = int(np.flatnonzero(starving)[0])
        label = islands(n_bus, flows)
        members = np.flatnonzero(label == label[bus])
        source = np.bincount(inj.bus, inj.source_mw, n_bus)
        if source[members].sum() <= tol_mw:
            raise SnapshotError(
                f"island of {len(members)} bus(es) ({_bus_list(snapshot, members)}) has "
                f"{sink[members].sum():g} MW of load but no source"
            )
        raise SnapshotError(
            f'buses (id "{snapshot.bus_ids[bus]}"): has {sink[bus]:g} MW of load but receives no power '
            "and has no generation"
        )
    sends = (flows.direction != IDLE) & (flows.direction != BOTH_SENDING)
    dead_sender = sends & ~live[flows.sending_bus]
    both = flows.direction == BOTH_SENDING
    dead_sender |= both & (~live[snapshot.branch_from] | ~live[snapshot.branch_to])
    if np.any(dead_sender):
        k = int(np.flatnonzero(dead_sender)[0])
        bus = int(flows.sending_bus[k]) if not both[k] else int(snapshot.branch_from[k])
        raise SnapshotError(
            f'branches (id "{snapshot.branch_ids[k]}"): bus "{snapshot.bus_ids[bus]}" sends '
            f"{flows.p_send_mw[k]:g} MW into it but receives no power and has no generation"
        )


def describe_singular_system(
    snapshot: Snapshot, src: np.ndarray, dst: np.ndarray, inj: Injections, live: np.ndarray
) -> str:
    """Why the carbon system is singular: which buses carry power no source supplies."""
    n_bus = snapshot.n_bus
    super_source = n_bus
    sources = np.unique(inj.bus[inj.source_mw > 0])
    rows = np.concatenate([src, np.full(len(sources), super_source)])
    cols = np.concatenate([dst, sources])
    graph = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_bus + 1, n_bus + 1))
    reached = np.zeros(n_bus + 1, dtype=bool)
    reached[breadth_first_order(graph, super_source, directed=True, return_predecessors=False)] = True
    unsupplied = np.flatnonzero(live & ~reached[:n_bus])
    if len(unsupplied):
        return (
            f"buses {_bus_list(snapshot, unsupplied)} carry power that no source supplies "
            "(a flow cycle without a source, or inconsistent flow measurements)"
        )
    return "the carbon balance has no unique solution: flows are inconsistent (check KCL at every bus)"

"""From raw element powers to the directed flow picture the carbon model needs.

Works on one snapshot (arrays of shape ``(n,)``) and on a batch (``(T, n)``) alike, so the single
and batch solvers share one definition of direction, sending/receiving power, sources and sinks.

Branch directions (reference notes §4, §4.4):
* ``FORWARD``: power enters at the from end (``p_from > tol``), arrives at the to end;
* ``REVERSE``: the mirror image;
* ``BOTH_SENDING``: both ends push power into the branch — all of it is lost, nothing is delivered;
* ``IDLE``: no flow above the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IDLE, FORWARD, REVERSE, BOTH_SENDING = 0, 1, 2, 3
SENDING_CODES = (FORWARD, REVERSE)


@dataclass(frozen=True)
class BranchFlows:
    """Per-branch direction and powers.  Arrays have the shape of the input flows."""

    direction: np.ndarray  # int8 codes above
    sending_bus: np.ndarray  # bus position of the sending end (from bus for idle/both)
    receiving_bus: np.ndarray
    p_send_mw: np.ndarray  # power entering the branch (for BOTH_SENDING: entering at both ends)
    p_recv_mw: np.ndarray  # power delivered at the receiving end (0 unless FORWARD/REVERSE)

    @property
    def p_loss_mw(self) -> np.ndarray:
        return self.p_send_mw - self.p_recv_mw


def branch_flows(
    branch_from: np.ndarray, branch_to: np.ndarray, p_from_mw: np.ndarray, p_to_mw: np.ndarray, tol_mw: float
) -> BranchFlows:
    sends_at_from = p_from_mw > tol_mw
    sends_at_to = p_to_mw > tol_mw
    direction = np.full(np.shape(p_from_mw), IDLE, dtype=np.int8)
    direction[sends_at_from & ~sends_at_to] = FORWARD
    direction[sends_at_to & ~sends_at_from] = REVERSE
    direction[sends_at_from & sends_at_to] = BOTH_SENDING
    reverse = direction == REVERSE
    sending_bus = np.where(reverse, branch_to, branch_from)
    receiving_bus = np.where(reverse, branch_from, branch_to)
    forward = direction == FORWARD
    p_send = np.where(forward, p_from_mw, 0.0)
    p_send = np.where(reverse, p_to_mw, p_send)
    p_send = np.where(direction == BOTH_SENDING, p_from_mw + p_to_mw, p_send)
    p_recv = np.where(forward, np.maximum(-p_to_mw, 0.0), 0.0)
    p_recv = np.where(reverse, np.maximum(-p_from_mw, 0.0), p_recv)
    # Delivered power below the tolerance is noise: the branch then only loses power (consistently in
    # the flux, the matrix and the accounts).
    p_recv = np.where(p_recv > tol_mw, p_recv, 0.0)
    return BranchFlows(direction, sending_bus, receiving_bus, p_send, p_recv)


def both_ends_receiving(p_from_mw: np.ndarray, p_to_mw: np.ndarray, tol_mw: float) -> np.ndarray:
    """Mask of branches that deliver power at both ends: a passive branch cannot create power."""
    return (p_from_mw < -tol_mw) & (p_to_mw < -tol_mw)


@dataclass(frozen=True)
class Injections:
    """Every element as a source (power injected with a known intensity) and/or a sink.

    Element order is generators, then loads, then storage; ``source_intensity`` of an element that
    is not injecting may be NaN.
    """

    bus: np.ndarray  # (E,) bus position of each element
    source_mw: np.ndarray  # (..., E) power injected into the grid, >= 0
    sink_mw: np.ndarray  # (..., E) power taken from the grid, >= 0
    source_intensity_g_per_kwh: np.ndarray  # (..., E)


def injections(
    gen_bus: np.ndarray,
    gen_p_mw: np.ndarray,
    gen_intensity: np.ndarray,
    load_bus: np.ndarray,
    load_p_mw: np.ndarray,
    load_intensity: np.ndarray,
    storage_bus: np.ndarray,
    storage_p_mw: np.ndarray,
    storage_intensity: np.ndarray,
) -> Injections:
    """Negative generation becomes a sink; a negative load becomes a source (zero-carbon unless it
    carries an intensity); storage charges as a sink and discharges as a source (reference §5.3-5.4)."""
    bus = np.concatenate([gen_bus, load_bus, storage_bus])
    source = np.concatenate(
        [np.maximum(gen_p_mw, 0.0), np.maximum(-load_p_mw, 0.0), np.maximum(-storage_p_mw, 0.0)], axis=-1
    )
    sink = np.concatenate(
        [np.maximum(-gen_p_mw, 0.0), np.maximum(load_p_mw, 0.0), np.maximum(storage_p_mw, 0.0)], axis=-1
    )
    batch_shape = np.shape(source)[:-1]
    load_e = np.nan_to_num(
        np.broadcast_to(load_intensity, batch_shape + np.shape(load_intensity)[-1:]), nan=0.0
    )
    intensity = np.concatenate(
        [
            np.broadcast_to(gen_intensity, batch_shape + np.shape(gen_intensity)[-1:]),
            load_e,
            np.broadcast_to(storage_intensity, batch_shape + np.shape(storage_intensity)[-1:]),
        ],
        axis=-1,
    )
    return Injections(bus, source, sink, intensity)

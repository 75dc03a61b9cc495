"""The engine's compiled fast path (numba): a whole snapshot, or a chunk of snapshots, in one call.

Per snapshot, in one pass of compiled code: branch directions and powers (flows.py's rules),
element injections, nodal flux and carbon injection, the input checks of :func:`solve`, nodal
intensities by Kahn's topological sweep over the flow DAG, clipping and every account
(accounts.py's formulas).  The numpy modules stay the reference path (``method="lu"``); tests hold
the two equal within 1e-9.

* A snapshot whose carrying flow graph has a directed cycle gets status ``CYCLE``: its intensities
  come from the sparse LU (linear.py) and the kernel runs once more on it with them given.
* A snapshot that fails a check gets status ``BAD``; the caller re-solves it on the reference path,
  which raises the error naming the offending record.

Pure maths: no I/O.  Compiled on first use (cached on disk by numba, ``cache=True``); call
:func:`warm_up` at start-up to keep compilation off the first metering.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit, types

from carbonflow.engine.accounts import Accounts, carbon_weights, nodal_carbon_injection, nodal_flux
from carbonflow.engine.flows import (
    BOTH_SENDING,
    FORWARD,
    IDLE,
    REVERSE,
    BranchFlows,
    Injections,
    branch_flows,
    injections,
)
from carbonflow.engine.linear import solve_lu

OK, CYCLE, BAD = 0, 1, 2
_SCALE = 1e-3  # MW * g/kWh -> t/h
# Planes of the output blocks (leading axis), so that each quantity is one contiguous (T, n) array.
# Accounts (T rows, always):
BRANCH_PLANES = ("density", "carbon_send", "carbon_recv", "loss_carbon")
BUS_PLANES = ("flux", "intensity", "load", "load_carbon")
ELEMENT_CARBON_PLANES = ("source_carbon", "sink_carbon")
TOTAL_PLANES = ("generation", "load", "loss", "residual")
# Flows and injections (T rows if ``full``, else one row of scratch reused by every snapshot):
ENDS_PLANES = ("sending_bus", "receiving_bus")
FLOW_PLANES = ("p_send_mw", "p_recv_mw")
INJECTION_PLANES = ("source_mw", "sink_mw", "source_intensity")
VALUE_ORDER = (
    "branch_p_from_mw", "branch_p_to_mw", "gen_p_mw", "gen_intensity_g_per_kwh",
    "load_p_mw", "load_intensity_g_per_kwh", "storage_p_mw", "storage_intensity_g_per_kwh",
)  # fmt: skip
ROW_CHUNK = 256  # snapshots per call when column-major inputs are copied to rows
_FIRST_ROW, _NO_ROWS = np.zeros(1, np.intp), np.zeros(0, np.intp)
_NOTHING_GIVEN = np.zeros((0, 0))


@njit(cache=True)
def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


@njit(cache=True)
def _sending(code) -> bool:
    return code in (FORWARD, REVERSE)


@njit(cache=True)
def _branches(t, tt, tol, consumer, b_from, b_to, p_from, p_to, direction, ends, fl, flux, weight):
    """Directions, sending/receiving power, carbon weights and the branch part of the flux.
    Returns False if a branch delivers power at both ends."""
    ok = True
    for k in range(len(b_from)):
        pf, pt = p_from[t, k], p_to[t, k]
        if pf < -tol and pt < -tol:
            ok = False
        sf, st = pf > tol, pt > tol
        s, r, p_send, p_recv = b_from[k], b_to[k], 0.0, 0.0
        code = IDLE
        if sf and not st:
            code, p_send, p_recv = FORWARD, pf, max(-pt, 0.0)
        elif st and not sf:
            code, s, r, p_send, p_recv = REVERSE, b_to[k], b_from[k], pt, max(-pf, 0.0)
        elif sf and st:
            code, p_send = BOTH_SENDING, pf + pt
        if not p_recv > tol:
            p_recv = 0.0
        direction[t, k] = code
        ends[0, tt, k], ends[1, tt, k] = s, r
        fl[0, tt, k], fl[1, tt, k] = p_send, p_recv
        flux[r] += p_recv
        if consumer:
            weight[k] = p_send if _sending(code) and p_recv > tol else 0.0
        else:
            weight[k] = p_recv
    return ok


@njit(cache=True)
def _elements(t, tt, offset, sign, nan_is_zero, bus, p, e, inj, ec, el_bus, flux, rhs, sink_bus):
    """Sources and sinks of one element kind (``sign`` +1: generation positive, -1: consumption)."""
    for j in range(len(bus)):
        el_bus[offset + j] = bus[j]
        injected = sign * p[t, j]
        source, sink = max(injected, 0.0), max(-injected, 0.0)
        intensity = e[t, j]
        if nan_is_zero and math.isnan(intensity):
            intensity = 0.0
        carbon = source * intensity if source > 0 else 0.0
        b = bus[j]
        inj[0, tt, offset + j], inj[1, tt, offset + j], inj[2, tt, offset + j] = source, sink, intensity
        ec[0, t, offset + j] = carbon * _SCALE
        flux[b] += source
        rhs[b] += carbon
        sink_bus[b] += sink


@njit(cache=True)
def _supplied(tol, b_from, b_to, direction, ends_t, flux, sink_bus) -> bool:
    """solve()'s check_supply: no dead bus consumes power or sends it into a branch."""
    for b in range(len(flux)):
        if not flux[b] > tol and sink_bus[b] > tol:
            return False
    for k in range(len(b_from)):
        code = direction[k]
        if _sending(code) and not flux[ends_t[k]] > tol:
            return False
        if code == BOTH_SENDING and not (flux[b_from[k]] > tol and flux[b_to[k]] > tol):
            return False
    return True


@njit(cache=True)
def _kahn(tol, direction, ends_t, weight, flux, rhs, intensity, scratch) -> bool:
    """Nodal intensities in topological order over the carrying edges; False on a directed cycle."""
    n_bus, n_branch = len(flux), len(weight)
    indegree, start, queue = scratch[0], scratch[1], scratch[2]
    out_edges, acc = scratch[3], intensity  # intensity doubles as the inflow accumulator
    indegree[: n_bus + 1] = 0
    start[: n_bus + 2] = 0
    for k in range(n_branch):
        code = direction[k]
        if _sending(code) and weight[k] > 0:
            indegree[ends_t[1, k]] += 1
            start[ends_t[0, k] + 2] += 1
    for b in range(n_bus):
        start[b + 2] += start[b + 1]
    for k in range(n_branch):  # counting sort of the carrying edges by sending bus
        code = direction[k]
        if _sending(code) and weight[k] > 0:
            position = start[ends_t[0, k] + 1]
            out_edges[position] = k
            start[ends_t[0, k] + 1] = position + 1
    head = tail = 0
    for b in range(n_bus):
        acc[b] = rhs[b]
        if indegree[b] == 0:
            queue[tail] = b
            tail += 1
    while head < tail:
        u = queue[head]
        head += 1
        e_u = acc[u] / flux[u] if flux[u] > tol else np.nan
        intensity[u] = e_u
        for position in range(start[u], start[u + 1]):
            k = out_edges[position]
            v = ends_t[1, k]
            acc[v] += weight[k] * e_u
            indegree[v] -= 1
            if indegree[v] == 0:
                queue[tail] = v
                tail += 1
    return tail == n_bus


@njit(cache=True)
def _clip(consumer, tt, inj, intensity):
    """cef.clip_to_sources: receiving -> [min, max] of the injecting source intensities."""
    if consumer:
        for b in range(len(intensity)):
            if intensity[b] < 0.0:
                intensity[b] = 0.0
        return
    low, high, any_source = np.inf, -np.inf, False
    for j in range(inj.shape[2]):
        if inj[0, tt, j] > 0:
            any_source = True
            low, high = min(low, inj[2, tt, j]), max(high, inj[2, tt, j])
    if any_source:
        for b in range(len(intensity)):
            x = intensity[b]
            if x < low:
                intensity[b] = low
            elif x > high:
                intensity[b] = high


@njit(cache=True)
def _accounts(t, tt, tol, consumer, b_from, b_to, p_from, p_to, direction, ends, fl, br, bus, inj, ec,
              el_bus, totals):  # fmt: skip
    """accounts.account for snapshot ``t`` from its intensities (bus plane 1)."""
    intensity = bus[1, t]
    loss_total = 0.0
    for k in range(len(b_from)):
        code = direction[t, k]
        density, send, recv = np.nan, 0.0, 0.0
        if _sending(code):
            density = intensity[ends[0, tt, k]]
            send = _nan0(density) * fl[0, tt, k] * _SCALE
            delivered = fl[1, tt, k]
            recv = (send if delivered > tol else 0.0) if consumer else _nan0(density) * delivered * _SCALE
        elif code == BOTH_SENDING:
            e_from, e_to = _nan0(intensity[b_from[k]]), _nan0(intensity[b_to[k]])
            send = (e_from * p_from[t, k] + e_to * p_to[t, k]) * _SCALE
        br[0, t, k], br[1, t, k], br[2, t, k], br[3, t, k] = density, send, recv, send - recv
        loss_total += send - recv
    generation = load = 0.0
    for j in range(len(el_bus)):
        sink_carbon = inj[1, tt, j] * _nan0(intensity[el_bus[j]]) * _SCALE
        ec[1, t, j] = sink_carbon
        load += sink_carbon
        generation += ec[0, t, j]
    for b in range(len(intensity)):
        bus[3, t, b] = bus[2, t, b] * _nan0(intensity[b]) * _SCALE
    totals[0, t], totals[1, t], totals[2, t] = generation, load, loss_total
    totals[3, t] = generation - load - loss_total


def _chunk(rows, use_given, given, full, n_bus, tol, consumer, b_from, b_to, p_from, p_to,
           gen_bus, gen_p, gen_e, load_bus, load_p, load_e, st_bus, st_p, st_e, el_bus,
           direction, ends, fl, inj, br, bus, ec, totals, status):  # fmt: skip
    """Every snapshot ``rows[i]``: everything but the LU (module docstring).  ``full``: keep ends,
    flows and injections of every snapshot (else row 0 of ``ends``, ``fl``, ``inj`` is scratch)."""
    n_gen, n_load = len(gen_bus), len(load_bus)
    rhs = np.empty(n_bus)
    weight = np.empty(len(b_from))
    scratch = np.empty((4, max(n_bus, len(b_from)) + 2), dtype=np.intp)
    for i in range(len(rows)):
        t = rows[i]
        tt = t if full else 0
        flux, sink_bus = bus[0, t], bus[2, t]
        flux[:] = 0.0
        sink_bus[:] = 0.0
        rhs[:] = 0.0
        ok = _branches(t, tt, tol, consumer, b_from, b_to, p_from, p_to, direction, ends, fl, flux, weight)
        _elements(t, tt, 0, 1.0, False, gen_bus, gen_p, gen_e, inj, ec, el_bus, flux, rhs, sink_bus)
        _elements(t, tt, n_gen, -1.0, True, load_bus, load_p, load_e, inj, ec, el_bus, flux, rhs, sink_bus)
        _elements(
            t, tt, n_gen + n_load, -1.0, False, st_bus, st_p, st_e, inj, ec, el_bus, flux, rhs, sink_bus
        )
        for j in range(len(st_bus)):
            if st_p[t, j] < -tol and math.isnan(st_e[t, j]):
                ok = False
        if not (ok and _supplied(tol, b_from, b_to, direction[t], ends[0, tt], flux, sink_bus)):
            status[t] = BAD
            continue
        if use_given:
            bus[1, t, :] = given[i]
        elif not _kahn(tol, direction[t], ends[:, tt], weight, flux, rhs, bus[1, t], scratch):
            status[t] = CYCLE
            continue
        status[t] = OK
        _clip(consumer, tt, inj, bus[1, t])
        _accounts(t, tt, tol, consumer, b_from, b_to, p_from, p_to, direction, ends, fl, br, bus, inj, ec,
                  el_bus, totals)  # fmt: skip


def _signature():
    def array(dtype, ndim: int, readonly: bool = True):
        return types.Array(dtype, ndim, "A", readonly=readonly)

    f8, ip = types.float64, types.intp
    inputs = [array(f8, 2), array(f8, 2)]  # p, e of one element kind
    return types.void(
        array(ip, 1), types.boolean, array(f8, 2), types.boolean, ip, f8, types.boolean,
        array(ip, 1), array(ip, 1), array(f8, 2), array(f8, 2),
        array(ip, 1), *inputs, array(ip, 1), *inputs, array(ip, 1), *inputs, array(ip, 1, False),
        array(types.int8, 2, False), array(ip, 3, False), array(f8, 3, False), array(f8, 3, False),
        array(f8, 3, False), array(f8, 3, False), array(f8, 3, False), array(f8, 2, False),
        array(types.int8, 1, False),
    )  # fmt: skip


@functools.cache
def compiled():
    """The chunk kernel, compiled for one signature (any layout, read-only inputs accepted): numba
    loads it from its on-disk cache when the source has not changed, else compiles (a few seconds)."""
    return njit(_signature(), cache=True, nogil=True)(_chunk)


@dataclass(eq=False)
class KernelOutput:
    """Everything the kernel wrote, planes first (see ``*_PLANES``); time axis second."""

    full: bool  # ends, flow and injection hold every snapshot (else one row of scratch)
    direction: np.ndarray  # (T, B) int8
    ends: np.ndarray  # (2, T or 1, B) sending, receiving bus
    flow: np.ndarray  # (2, T or 1, B)
    injection: np.ndarray  # (3, T or 1, E)
    branch: np.ndarray  # (4, T, B)
    bus: np.ndarray  # (4, T, N)
    element_carbon: np.ndarray  # (2, T, E)
    totals: np.ndarray  # (4, T)
    status: np.ndarray  # (T,) OK, CYCLE or BAD
    element_bus: np.ndarray  # (E,)
    lu_rows: np.ndarray | None = None  # snapshots solved by the LU fallback (directed cycles)

    def part(self, rows: slice) -> KernelOutput:
        """Views of the snapshots ``rows`` (same element buses and scratch)."""
        keep = rows if self.full else slice(None)
        return KernelOutput(
            self.full, self.direction[rows], self.ends[:, keep], self.flow[:, keep],
            self.injection[:, keep], self.branch[:, rows], self.bus[:, rows],
            self.element_carbon[:, rows], self.totals[:, rows], self.status[rows], self.element_bus,
        )  # fmt: skip

    def flows(self, t: int | slice = slice(None)) -> BranchFlows:
        fl = self.flow
        return BranchFlows(self.direction[t], self.ends[0, t], self.ends[1, t], fl[0, t], fl[1, t])

    def injections(self, t: int | slice = slice(None)) -> Injections:
        inj = self.injection
        return Injections(self.element_bus, inj[0, t], inj[1, t], inj[2, t])

    def accounts(self, t: int | slice = slice(None)) -> Accounts:
        bus, br, ec, tot = self.bus, self.branch, self.element_carbon, self.totals
        return Accounts(
            bus[0, t], bus[1, t], bus[2, t], bus[3, t], br[0, t], br[1, t], br[2, t], br[3, t],
            ec[0, t], ec[1, t], tot[0, t], tot[1, t], tot[2, t], tot[3, t],
        )  # fmt: skip


class CycleSingularError(ArithmeticError):
    """The LU fallback of snapshot ``t`` (a directed cycle) found the carbon system singular."""

    def __init__(self, t: int) -> None:
        super().__init__(f"snapshot {t}: singular carbon system")
        self.t = t


def run(
    n_bus: int, tol_mw: float, losses: str, network, values: list[np.ndarray], full: bool = True
) -> KernelOutput:
    """Solve ``T`` snapshots: ``network`` gives buses and branch ends (a Snapshot), ``values`` the
    (T, n) value arrays in ``VALUE_ORDER`` (:func:`series_values`, :func:`single_values`).
    Snapshots with status BAD are left for the caller; CYCLE snapshots before the first BAD one are
    solved by LU (status becomes OK).  Raises :class:`CycleSingularError` if such an LU finds no
    unique solution.  ``full=False`` keeps the accounts only (a batch derives flows and injections
    on demand): 40 % less memory to fault in and write for a year.  Lean on purpose: for a small
    grid, Python overhead is most of the time."""
    n_time, n_branch = values[0].shape
    n_element = len(network.gen_bus) + len(network.load_bus) + len(network.storage_bus)
    kept = n_time if full else 1
    out = KernelOutput(
        full,
        np.empty((n_time, n_branch), np.int8),
        np.empty((2, kept, n_branch), np.intp),
        np.empty((2, kept, n_branch)),
        np.empty((3, kept, n_element)),
        np.empty((4, n_time, n_branch)),
        np.empty((4, n_time, n_bus)),
        np.empty((2, n_time, n_element)),
        np.empty((4, n_time)),
        np.empty(n_time, np.int8),
        np.empty(n_element, np.intp),
    )
    kernel, consumer = compiled(), losses == "consumer"
    b_from, b_to, gen_bus, load_bus, st_bus = (
        np.asarray(getattr(network, name), np.intp)  # no copy unless given as another integer type
        for name in ("branch_from", "branch_to", "gen_bus", "load_bus", "storage_bus")
    )

    def call(
        rows: np.ndarray, given: np.ndarray, arrays: list[np.ndarray], part: slice | None = None
    ) -> None:
        p_from, p_to, gen_p, gen_e, load_p, load_e, st_p, st_e = arrays
        o = out if part is None else out.part(part)
        kernel(
            rows, len(given) > 0, given, full, n_bus, tol_mw, consumer, b_from, b_to,
            p_from, p_to, gen_bus, gen_p, gen_e, load_bus, load_p, load_e,
            st_bus, st_p, st_e, o.element_bus, o.direction, o.ends, o.flow, o.injection,
            o.branch, o.bus, o.element_carbon, o.totals, o.status,
        )  # fmt: skip

    if n_time == 1:
        call(_FIRST_ROW, _NOTHING_GIVEN, values)
        cycles = _FIRST_ROW if out.status[0] == CYCLE else _NO_ROWS
    else:
        if all(_row_major(a) for a in values):
            call(np.arange(n_time), _NOTHING_GIVEN, values)
        else:  # e.g. DC flows solved for all hours at once come column-major: copy rows per chunk
            for start in range(0, n_time, ROW_CHUNK):
                part = slice(start, min(start + ROW_CHUNK, n_time))
                rows = [a[part] if _row_major(a) else np.ascontiguousarray(a[part]) for a in values]
                call(np.arange(part.stop - part.start), _NOTHING_GIVEN, rows, part)
        cycles = np.flatnonzero(out.status == CYCLE)
        bad = np.flatnonzero(out.status == BAD)
        if len(bad):
            cycles = cycles[cycles < bad[0]]
    if len(cycles):
        row_values = ([a[t] for a in values] for t in cycles)
        buses = (b_from, b_to, gen_bus, load_bus, st_bus)
        given = np.stack(
            [_lu_intensity(int(t), row, buses, n_bus, losses, tol_mw) for t, row in zip(cycles, row_values)]
        )
        call(cycles, given, values)
    out.lu_rows = cycles
    return out


def _row_major(array: np.ndarray) -> bool:
    """Each snapshot's values adjacent in memory (C order, or rows broadcast from one)."""
    return array.shape[1] <= 1 or array.strides[1] == array.itemsize


def _lu_intensity(
    t: int, row: list[np.ndarray], buses: tuple, n_bus: int, losses: str, tol: float
) -> np.ndarray:
    """Intensities of snapshot ``t`` (a directed cycle) by the reference path's own definitions."""
    p_from, p_to, gen_p, gen_e, load_p, load_e, st_p, st_e = row
    b_from, b_to, gen_bus, load_bus, st_bus = buses
    flows = branch_flows(b_from, b_to, p_from, p_to, tol)
    inj = injections(gen_bus, gen_p, gen_e, load_bus, load_p, load_e, st_bus, st_p, st_e)
    weights = carbon_weights(flows, losses, tol)
    edges = ((flows.direction == FORWARD) | (flows.direction == REVERSE)) & (weights > 0)
    flux = nodal_flux(n_bus, flows, inj)
    src, dst = flows.sending_bus[edges], flows.receiving_bus[edges]
    rhs, live = nodal_carbon_injection(n_bus, inj), flux > tol
    try:
        return solve_lu(n_bus, src, dst, weights[edges], flux, rhs, live, keep_factor=False).intensity
    except ArithmeticError:
        raise CycleSingularError(t) from None


def single_values(snapshot) -> list[np.ndarray]:
    """A snapshot's value arrays as a series of one, in ``VALUE_ORDER`` (views, no copies)."""
    return [np.asarray(getattr(snapshot, name), np.float64)[None] for name in VALUE_ORDER]


def series_values(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``SnapshotSeries.arrays`` in ``VALUE_ORDER``."""
    return [np.asarray(arrays[name], np.float64) for name in VALUE_ORDER]

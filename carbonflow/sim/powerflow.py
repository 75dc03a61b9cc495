"""AC power flow per interval, fast: Newton-Raphson on the admittance matrices pandapower builds.

``pp.runpp`` spends most of its 10-30 ms per call converting tables to the internal case and back.  The
network's structure does not change between intervals, only the injections do, so
:class:`FastPowerFlow` runs ``pp.runpp`` once, keeps the internal ``Ybus``/``Yf``/``Yt`` and the
bus/branch lookups, and then solves each interval with its own Newton-Raphson (the textbook polar
formulation of MATPOWER's ``newtonpf``, as pandapower uses), warm-started from the previous interval.
The results equal ``pp.runpp`` with default options (constant-power loads, no reactive limits) to the
convergence tolerance; the tests compare both.

Supported element tables: bus, line, trafo, load, sgen, gen, ext_grid, storage, shunt.  A network with
anything else (switches, 3-winding transformers, impedances, wards, DC lines, ...) is solved by
:class:`PandapowerFlow`, which calls ``pp.runpp`` per interval (slower, same results).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from carbonflow.sim.errors import SimulationError

SUPPORTED = {"bus", "line", "trafo", "load", "sgen", "gen", "ext_grid", "storage", "shunt"}
_ELEMENT_TABLES = (
    "switch",
    "trafo3w",
    "impedance",
    "ward",
    "xward",
    "dcline",
    "motor",
    "asymmetric_load",
    "asymmetric_sgen",
    "svc",
    "ssc",
    "tcsc",
    "vsc",
    "line_dc",
    "bus_dc",
)
TOLERANCE_PU = 1e-9  # max power mismatch in per unit of sn_mva (pandapower default: 1e-8 MVA)


def runpp(net: pp.pandapowerNet, **kwargs) -> None:
    """``pp.runpp`` without numba (not installed) and without its chatter."""
    logger = logging.getLogger("pandapower")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False, **kwargs)
    finally:
        logger.setLevel(level)


def fast_path_blockers(net: pp.pandapowerNet) -> list[str]:
    """Element tables present in ``net`` that the fast path does not model."""
    return [name for name in _ELEMENT_TABLES if name in net and len(net[name]) > 0]


@dataclass(frozen=True, eq=False)
class FlowResult:
    """One interval's solution; arrays follow each table's row order (all rows; out of service: 0/NaN)."""

    vm_pu: np.ndarray  # per net.bus row
    va_degree: np.ndarray
    gen_p_mw: np.ndarray
    gen_q_mvar: np.ndarray
    ext_grid_p_mw: np.ndarray
    ext_grid_q_mvar: np.ndarray
    shunt_p_mw: np.ndarray
    line: np.ndarray  # (4, n_line): p_from_mw, q_from_mvar, p_to_mw, q_to_mvar
    trafo: np.ndarray  # (4, n_trafo): p_hv_mw, q_hv_mvar, p_lv_mw, q_lv_mvar
    iterations: int


class FastPowerFlow:
    """Newton-Raphson on a prepared network; call :meth:`solve` once per interval."""

    def __init__(self, net: pp.pandapowerNet) -> None:
        blockers = fast_path_blockers(net)
        if blockers:
            raise SimulationError(f"fast power flow does not model {', '.join(blockers)}; use PandapowerFlow")
        try:
            runpp(net)
        except pp.LoadflowNotConverged:
            raise SimulationError("the base case of the network does not converge (pp.runpp)") from None
        self.net = net
        internal = net._ppc["internal"]
        self.base_mva = float(internal["baseMVA"])
        self.ybus = sp.csr_matrix(internal["Ybus"])
        self.yf = sp.csr_matrix(internal["Yf"])
        self.yt = sp.csr_matrix(internal["Yt"])
        self.ref = np.asarray(internal["ref"], dtype=np.int64)
        self.pv = np.asarray(internal["pv"], dtype=np.int64)
        self.pq = np.asarray(internal["pq"], dtype=np.int64)
        self.pvpq = np.r_[self.pv, self.pq]
        self.n = self.ybus.shape[0]
        self.v = np.asarray(internal["V"], dtype=complex).copy()
        self.v_start = self.v.copy()
        lookup = np.asarray(net._pd2ppc_lookups["bus"])
        self.bus_internal = lookup[net.bus.index.to_numpy()]
        self.bus_live = net.bus.in_service.to_numpy(dtype=bool) & (self.bus_internal >= 0)
        self.bus_live &= np.isfinite(net.res_bus.vm_pu.reindex(net.bus.index).to_numpy(dtype=float))
        branch_rows = np.cumsum(internal["branch_is"]) - 1
        branch_rows[~np.asarray(internal["branch_is"], dtype=bool)] = -1
        ranges = net._pd2ppc_lookups["branch"]
        self.rows = {}
        for table in ("line", "trafo"):
            start, stop = ranges.get(table, (0, 0))
            rows = branch_rows[start:stop] if stop > start else np.zeros(0, dtype=np.int64)
            self.rows[table] = rows
        self.incidence = {
            table: self._incidence(table) for table in ("load", "sgen", "storage", "gen", "ext_grid", "shunt")
        }
        gen = net.gen
        self.gen_slack = (
            gen.slack.to_numpy(dtype=bool) if "slack" in gen else np.zeros(len(gen), dtype=bool)
        ) & gen.in_service.to_numpy(dtype=bool)
        self.gen_on = gen.in_service.to_numpy(dtype=bool)
        self.ext_on = net.ext_grid.in_service.to_numpy(dtype=bool)
        # Every slack element at a reference bus shares that bus's balance equally (one per bus is usual).
        slack_at_bus = self.incidence["gen"] @ self.gen_slack.astype(float) + self.incidence[
            "ext_grid"
        ] @ self.ext_on.astype(float)
        self.slack_count = np.where(slack_at_bus > 0, slack_at_bus, 1.0)
        gens_at_bus = self.incidence["gen"] @ self.gen_on.astype(float) + self.incidence[
            "ext_grid"
        ] @ self.ext_on.astype(float)
        self.gens_at_bus = np.where(gens_at_bus > 0, gens_at_bus, 1.0)
        shunt = net.shunt
        self.shunt_p_mw = (shunt.p_mw * shunt.step).to_numpy(dtype=float) if len(shunt) else np.zeros(0)
        self.shunt_on = shunt.in_service.to_numpy(dtype=bool) if len(shunt) else np.zeros(0, dtype=bool)
        self._prepare_jacobian()

    def _incidence(self, table: str) -> sp.csr_matrix:
        """Internal bus x element matrix (1 where the in-service element sits)."""
        frame = self.net[table]
        if len(frame) == 0:
            return sp.csr_matrix((self.n, 0))
        lookup = np.asarray(self.net._pd2ppc_lookups["bus"])
        buses = lookup[frame.bus.to_numpy(dtype=np.int64)]
        on = frame.in_service.to_numpy(dtype=bool) & (buses >= 0)
        bus_on = self.net.bus.in_service.reindex(frame.bus).to_numpy(dtype=bool)
        on &= bus_on
        columns = np.flatnonzero(on)
        return sp.csr_matrix((np.ones(len(columns)), (buses[columns], columns)), shape=(self.n, len(frame)))

    def reset(self) -> None:
        """Start the next solve from the base case again (forget the warm start)."""
        self.v = self.v_start.copy()

    def solve(
        self,
        load_p_mw: np.ndarray,
        load_q_mvar: np.ndarray,
        sgen_p_mw: np.ndarray,
        sgen_q_mvar: np.ndarray | None,
        gen_p_mw: np.ndarray,
        storage_p_mw: np.ndarray,
        storage_q_mvar: np.ndarray | None = None,
        *,
        max_iterations: int = 20,
    ) -> FlowResult:
        inc = self.incidence
        sgen_q = np.zeros_like(sgen_p_mw) if sgen_q_mvar is None else sgen_q_mvar
        storage_q = np.zeros_like(storage_p_mw) if storage_q_mvar is None else storage_q_mvar
        fixed = (
            inc["sgen"] @ (sgen_p_mw + 1j * sgen_q)
            - inc["load"] @ (load_p_mw + 1j * load_q_mvar)
            - inc["storage"] @ (storage_p_mw + 1j * storage_q)
        )
        gen_p = np.where(self.gen_slack, 0.0, gen_p_mw)
        scheduled = (fixed + inc["gen"] @ gen_p) / self.base_mva
        v, iterations = self._newton(scheduled, max_iterations)
        self.v = v
        return self._results(v, fixed, gen_p, iterations)

    def _prepare_jacobian(self) -> None:
        """Index maps that turn derivative values on the Ybus pattern straight into the Jacobian (CSC)."""
        n = self.n
        pattern = (abs(self.ybus) + sp.eye(n, format="csr")).tocoo()
        rows, cols = pattern.row.astype(np.int64), pattern.col.astype(np.int64)
        self._y_entries = np.asarray(self.ybus[rows, cols]).ravel()
        self._rows, self._cols, self._diag = rows, cols, rows == cols
        n_pvpq = len(self.pvpq)
        p_row = np.full(n, -1)
        p_row[self.pvpq] = np.arange(n_pvpq)
        q_row = np.full(n, -1)
        q_row[self.pq] = n_pvpq + np.arange(len(self.pq))
        blocks = []  # (entry mask, derivative: 0 = angle, 1 = magnitude, part: real/imag, J rows, J cols)
        for row_map, part in ((p_row, "real"), (q_row, "imag")):
            for col_map, derivative in ((p_row, 0), (q_row, 1)):
                mask = (row_map[rows] >= 0) & (col_map[cols] >= 0)
                blocks.append((mask, derivative, part, row_map[rows[mask]], col_map[cols[mask]]))
        self._blocks = blocks
        j_rows = np.concatenate([b[3] for b in blocks])
        j_cols = np.concatenate([b[4] for b in blocks])
        size = n_pvpq + len(self.pq)
        order = sp.csc_matrix(
            (np.arange(1, len(j_rows) + 1, dtype=float), (j_rows, j_cols)), shape=(size, size)
        )
        order.sort_indices()
        self._j_perm = order.data.astype(np.int64) - 1
        self._j_indices, self._j_indptr, self._j_shape = (
            order.indices.copy(),
            order.indptr.copy(),
            (size, size),
        )

    def _mismatch(self, v: np.ndarray, scheduled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        current = self.ybus @ v
        mis = v * np.conj(current) - scheduled
        return np.r_[mis[self.pvpq].real, mis[self.pq].imag], current

    def _jacobian(self, v: np.ndarray, current: np.ndarray) -> sp.csc_matrix:
        rows, cols, y, diag = self._rows, self._cols, self._y_entries, self._diag
        vnorm = v / np.abs(v)
        v_row = v[rows]
        ds_dvm = v_row * np.conj(y * vnorm[cols])
        ds_dva = -1j * v_row * np.conj(y * v[cols])
        ds_dvm[diag] += np.conj(current[rows[diag]]) * vnorm[rows[diag]]
        ds_dva[diag] += 1j * v_row[diag] * np.conj(current[rows[diag]])
        values = []
        for mask, derivative, part, _r, _c in self._blocks:
            chosen = (ds_dva if derivative == 0 else ds_dvm)[mask]
            values.append(chosen.real if part == "real" else chosen.imag)
        data = np.concatenate(values)[self._j_perm]
        return sp.csc_matrix((data, self._j_indices, self._j_indptr), shape=self._j_shape)

    def _newton(self, scheduled: np.ndarray, max_iterations: int) -> tuple[np.ndarray, int]:
        v = self.v.copy()
        va, vm = np.angle(v), np.abs(v)
        n_pvpq = len(self.pvpq)
        for iteration in range(max_iterations):
            f, current = self._mismatch(v, scheduled)
            if np.max(np.abs(f), initial=0.0) < TOLERANCE_PU:
                return v, iteration
            jac = self._jacobian(v, current)
            dx = sla.splu(jac).solve(-f)
            va[self.pvpq] += dx[:n_pvpq]
            vm[self.pq] += dx[n_pvpq:]
            v = vm * np.exp(1j * va)
        f, _ = self._mismatch(v, scheduled)
        if np.max(np.abs(f), initial=0.0) < TOLERANCE_PU and np.all(np.isfinite(v)):
            return v, max_iterations
        worst = int(np.concatenate([self.pvpq, self.pq])[np.argmax(np.abs(f))]) if len(f) else -1
        names = self.net.bus.name.to_numpy()[np.flatnonzero(self.bus_internal == worst)]
        where = f"bus {names[0]}" if len(names) else f"internal bus {worst}"
        raise SimulationError(
            f"AC power flow did not converge (largest mismatch {np.max(np.abs(f)) * self.base_mva:.3g} MVA "
            f"at {where})"
        )

    def _results(self, v: np.ndarray, fixed: np.ndarray, gen_p: np.ndarray, iterations: int) -> FlowResult:
        base = self.base_mva
        injection = v * np.conj(self.ybus @ v) * base
        inc = self.incidence
        # Whatever a bus injects beyond its fixed elements and non-slack units is its slack units' output
        # (P) or its voltage-controlling units' output (Q), shared equally.
        residual = injection - fixed - inc["gen"] @ gen_p
        gen_bus_t, ext_bus_t = inc["gen"].T.tocsr(), inc["ext_grid"].T.tocsr()
        slack_p = residual.real / self.slack_count
        q_share = residual.imag / self.gens_at_bus
        gen_p_out = np.where(self.gen_slack, gen_bus_t @ slack_p, gen_p)
        gen_p_out = np.where(self.gen_on, gen_p_out, 0.0)
        gen_q = np.where(self.gen_on, gen_bus_t @ q_share, 0.0)
        ext_p = np.where(self.ext_on, ext_bus_t @ slack_p, 0.0)
        ext_q = np.where(self.ext_on, ext_bus_t @ q_share, 0.0)
        vm_all = np.full(len(self.bus_internal), np.nan)
        va_all = np.full(len(self.bus_internal), np.nan)
        live = self.bus_live
        vm_all[live] = np.abs(v[self.bus_internal[live]])
        ref_angle = 0.0
        va_all[live] = np.degrees(np.angle(v[self.bus_internal[live]])) - ref_angle
        shunt_vm = np.abs(inc["shunt"].T @ v) if len(self.shunt_p_mw) else np.zeros(0)
        shunt_p = np.where(self.shunt_on, self.shunt_p_mw * shunt_vm**2, 0.0)
        s_from = v[self._ends("f")] * np.conj(self.yf @ v) * base if self.yf.shape[0] else np.zeros(0)
        s_to = v[self._ends("t")] * np.conj(self.yt @ v) * base if self.yt.shape[0] else np.zeros(0)
        tables = {}
        for table in ("line", "trafo"):
            rows = self.rows[table]
            values = np.zeros((4, len(rows)))
            live_rows = rows >= 0
            picked = rows[live_rows]
            values[:, live_rows] = [
                s_from[picked].real,
                s_from[picked].imag,
                s_to[picked].real,
                s_to[picked].imag,
            ]
            tables[table] = values
        return FlowResult(
            vm_all,
            va_all,
            gen_p_out,
            gen_q,
            ext_p,
            ext_q,
            shunt_p,
            tables["line"],
            tables["trafo"],
            iterations,
        )

    def _ends(self, end: str) -> np.ndarray:
        if not hasattr(self, "_end_cache"):
            branch = self.net._ppc["internal"]["branch"]
            self._end_cache = {
                "f": np.real(branch[:, 0]).astype(np.int64),
                "t": np.real(branch[:, 1]).astype(np.int64),
            }
        return self._end_cache[end]


class PandapowerFlow:
    """The reference path: set the tables and call ``pp.runpp`` (warm start) for every interval."""

    def __init__(self, net: pp.pandapowerNet) -> None:
        self.net = net
        try:
            runpp(net)
        except pp.LoadflowNotConverged:
            raise SimulationError("the base case of the network does not converge (pp.runpp)") from None

    def reset(self) -> None:
        """Nothing to forget: every solve starts from the previous results."""

    def solve(
        self,
        load_p_mw: np.ndarray,
        load_q_mvar: np.ndarray,
        sgen_p_mw: np.ndarray,
        sgen_q_mvar: np.ndarray | None,
        gen_p_mw: np.ndarray,
        storage_p_mw: np.ndarray,
        storage_q_mvar: np.ndarray | None = None,
        *,
        max_iterations: int = 20,
    ) -> FlowResult:
        net = self.net
        net.load["p_mw"], net.load["q_mvar"] = load_p_mw, load_q_mvar
        net.sgen["p_mw"] = sgen_p_mw
        if sgen_q_mvar is not None:
            net.sgen["q_mvar"] = sgen_q_mvar
        net.gen["p_mw"] = gen_p_mw
        net.storage["p_mw"] = storage_p_mw
        if storage_q_mvar is not None:
            net.storage["q_mvar"] = storage_q_mvar
        try:
            runpp(net, init="results", max_iteration=max_iterations)
        except pp.LoadflowNotConverged:
            raise SimulationError("AC power flow did not converge (pp.runpp)") from None
        return flow_result_from_net(net)


def flow_result_from_net(net: pp.pandapowerNet) -> FlowResult:
    """A :class:`FlowResult` read from the ``res_*`` tables of a solved net."""

    def res(table: str, column: str) -> np.ndarray:
        frame = net[f"res_{table}"]
        return (
            frame[column].reindex(net[table].index).to_numpy(dtype=float) if len(net[table]) else np.zeros(0)
        )

    def zero(values: np.ndarray) -> np.ndarray:
        return np.nan_to_num(values)

    line = np.array([res("line", c) for c in ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar")])
    trafo = np.array([res("trafo", c) for c in ("p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar")])
    return FlowResult(
        res("bus", "vm_pu"),
        res("bus", "va_degree"),
        zero(res("gen", "p_mw")),
        zero(res("gen", "q_mvar")),
        zero(res("ext_grid", "p_mw")),
        zero(res("ext_grid", "q_mvar")),
        zero(res("shunt", "p_mw")),
        zero(line.reshape(4, -1)),
        zero(trafo.reshape(4, -1)),
        -1,
    )


def power_flow_for(net: pp.pandapowerNet, method: str = "auto") -> FastPowerFlow | PandapowerFlow:
    """``fast`` (refuses networks it cannot model), ``pandapower``, or ``auto`` (fast when it can)."""
    if method not in ("auto", "fast", "pandapower"):
        raise SimulationError(f"power-flow method must be auto, fast or pandapower, got {method!r}")
    if method == "pandapower" or (method == "auto" and fast_path_blockers(net)):
        return PandapowerFlow(net)
    return FastPowerFlow(net)

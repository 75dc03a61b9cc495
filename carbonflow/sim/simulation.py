"""Run a grid over time: set-points → AC power flow → C1 snapshot → engine → truth, chunk by chunk.

The snapshot's structure (which records, in which order, with which ids) is fixed once from the base
case with :func:`carbonflow.sim.importers.snapshot_dict_from_pandapower`, so the truth uses exactly the
importer's conventions; per interval only the values change.  Element ids are the ``name`` column of
each pandapower table when those names are unique non-empty strings across the element kind (the
reference grid's ``"G3-1"``, ``"L012"``, ``"U07"``), otherwise the importer's ``"{table}:{index}"``.

The engine runs once per chunk with :func:`carbonflow.engine.batch.solve_batch` (vectorised over the
chunk); with storage, :func:`carbonflow.engine.storage.solve_series_with_storage` carries each battery's
carbon state across intervals and chunks.  Batteries start holding carbon at
``storage_start_intensity_g_per_kwh`` (600 g/kWh unless given).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandapower as pp

from carbonflow.engine.batch import SnapshotSeries, solve_batch
from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.snapshot import snapshot_from_dict
from carbonflow.engine.storage import StorageState, solve_series_with_storage
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.importers import snapshot_dict_from_pandapower
from carbonflow.sim.powerflow import FastPowerFlow, FlowResult, PandapowerFlow, power_flow_for
from carbonflow.sim.timeseries import Inputs, SimConfig, build_inputs
from carbonflow.sim.truth import TruthChunk, TruthIndex

DEFAULT_INTENSITY_G_PER_KWH = 820.0
_CATEGORIES = {
    "generators": ("ext_grid", "gen", "sgen"),
    "loads": ("load", "shunt"),
    "storage": ("storage",),
    "branches": ("line", "trafo"),
}


def element_ids(net: pp.pandapowerNet) -> dict[str, str]:
    """Importer id (``"gen:3"``) -> carbonflow id (the table's ``name`` when usable, see module doc)."""
    mapping: dict[str, str] = {}
    for tables in _CATEGORIES.values():
        keys, names = [], []
        for table in tables:
            frame = net.get(table, None)
            if frame is None or len(frame) == 0:
                continue
            for index in frame.index:
                keys.append(f"{table}:{index}")
                name = frame.at[index, "name"] if "name" in frame else None
                names.append(name.strip() if isinstance(name, str) else "")
        usable = all(names) and len(set(names)) == len(names)
        mapping.update(zip(keys, names if usable else keys, strict=True))
    return mapping


def generator_intensities(net: pp.pandapowerNet, default: float | None) -> dict[str, float]:
    """Importer generator id -> gCO2/kWh from the ``intensity_g_per_kwh`` columns (``default`` if NaN)."""
    table: dict[str, float] = {}
    for name in _CATEGORIES["generators"]:
        frame = net[name]
        column = frame.get("intensity_g_per_kwh", None)
        for index in frame.index:
            value = float(column[index]) if column is not None and column[index] is not None else float("nan")
            if not np.isfinite(value):
                if default is None:
                    raise SimulationError(
                        f"{name}:{index} has no intensity_g_per_kwh and no default was given"
                    )
                value = default
            table[f"{name}:{index}"] = value
    return table


class Simulation:
    """One run of a grid: ``for chunk in Simulation(net, config).chunks(): ...``."""

    def __init__(
        self,
        net: pp.pandapowerNet,
        config: SimConfig,
        *,
        method: str = "auto",
        losses: str = "receiving",
        chunk_size: int = 240,
        default_intensity_g_per_kwh: float | None = DEFAULT_INTENSITY_G_PER_KWH,
        storage_start_intensity_g_per_kwh: float = 600.0,
    ) -> None:
        self.config = config
        self.losses = losses
        self.chunk_size = max(1, int(chunk_size))
        self.inputs: Inputs = build_inputs(net, config)
        self.net = copy.deepcopy(net)
        self.flow: FastPowerFlow | PandapowerFlow = power_flow_for(self.net, method)
        self.ids = element_ids(self.net)
        self.intensity = generator_intensities(self.net, default_intensity_g_per_kwh)
        self.template = self._template()
        network = snapshot_from_dict(self.template)
        self.network = network
        vn = self.net.bus.set_index("name").vn_kv if "name" in self.net.bus else None
        bus_kv = np.array([float(vn.get(b, np.nan)) if vn is not None else np.nan for b in network.bus_ids])
        records = self.template["branches"]
        self.index = TruthIndex(
            network.bus_ids,
            bus_kv,
            network.gen_ids,
            network.load_ids,
            network.storage_ids,
            network.branch_ids,
            tuple(r["from_bus"] for r in records),
            tuple(r["to_bus"] for r in records),
        )
        self._plan()
        soc = self.inputs.storage_soc_mwh
        self.states = {}
        for k, sid in enumerate(network.storage_ids):
            row = self._storage_rows[k]
            start_mwh = float(
                soc[0, row]
                - (
                    self.inputs.storage_p_mw[0, row]
                    * config.interval_h
                    * (self._eta[k] if self.inputs.storage_p_mw[0, row] > 0 else 1 / self._eta[k])
                )
            )
            start_mwh = max(start_mwh, 0.0)
            self.states[sid] = StorageState(
                start_mwh,
                start_mwh * storage_start_intensity_g_per_kwh * 1e-3,
                self._eta[k],
                self._eta[k],
                storage_start_intensity_g_per_kwh,
            )
        self.counters: dict[str, np.ndarray] = {}

    # -- structure ------------------------------------------------------------------------------------
    def _template(self) -> dict[str, Any]:
        document = snapshot_dict_from_pandapower(self.net, self.intensity)
        for section in ("generators", "loads", "storage", "branches"):
            for record in document.get(section, []):
                record["source"] = record["id"]
                record["id"] = self.ids.get(record["id"], record["id"])
        return document

    def _plan(self) -> None:
        """Where each snapshot record's value comes from in a :class:`FlowResult` or the inputs."""
        net = self.net

        def position(source: str) -> tuple[str, int]:
            table, _, index = source.partition(":")
            if table not in net or not index.lstrip("-").isdigit():
                return table, -1
            return table, int(net[table].index.get_loc(int(index)))

        self._gen_rows = [position(r["source"]) for r in self.template["generators"]]
        self._load_rows = [position(r["source"]) for r in self.template["loads"]]
        self._storage_rows = [position(r["source"])[1] for r in self.template.get("storage", [])]
        self._branch_rows = [position(r["source"]) for r in self.template["branches"]]
        supported = all(table in ("line", "trafo") and row >= 0 for table, row in self._branch_rows) and all(
            table in ("load", "shunt") for table, _ in self._load_rows
        )
        self._direct = isinstance(self.flow, FastPowerFlow) and supported
        eta = net.storage.get("eta", None)
        self._eta = [
            float(eta.iloc[row]) if eta is not None and np.isfinite(eta.iloc[row]) else 1.0
            for row in self._storage_rows
        ]

    # -- running --------------------------------------------------------------------------------------
    def chunks(self, progress: Callable[[int, int], None] | None = None) -> Iterator[TruthChunk]:
        total = self.inputs.count
        for first in range(0, total, self.chunk_size):
            last = min(first + self.chunk_size, total)
            yield self._chunk(first, last, progress, total)

    def intervals(self, progress: Callable[[int, int], None] | None = None):
        for chunk in self.chunks(progress):
            yield from chunk

    def _solve(self, k: int) -> FlowResult:
        inp = self.inputs
        try:
            return self.flow.solve(
                inp.load_p_mw[k],
                inp.load_q_mvar[k],
                inp.sgen_p_mw[k],
                None,
                inp.gen_p_mw[k],
                inp.storage_p_mw[k],
            )
        except SimulationError as error:
            when = self.config.interval_end(k).isoformat()
            raise SimulationError(f"interval {k} (ending {when}): {error}") from None

    def _chunk(self, first: int, last: int, progress, total: int) -> TruthChunk:
        n = last - first
        g, lo, b = len(self.index.gen_ids), len(self.index.load_ids), len(self.index.branch_ids)
        s, nb = len(self.index.storage_ids), len(self.index.bus_ids)
        gen_p, gen_q = np.zeros((n, g)), np.zeros((n, g))
        load_p, load_q = np.zeros((n, lo)), np.zeros((n, lo))
        storage_p = np.zeros((n, s))
        branch = np.zeros((4, n, b))
        vm, va = np.zeros((n, nb)), np.zeros((n, nb))
        iterations = np.zeros(n, dtype=int)
        bus_rows = self._bus_rows()
        for t in range(n):
            k = first + t
            result = self._solve(k)
            iterations[t] = result.iterations
            vm[t], va[t] = result.vm_pu[bus_rows], result.va_degree[bus_rows]
            if self._direct:
                self._fill_direct(result, k, t, gen_p, gen_q, load_p, load_q, storage_p, branch)
            else:
                self._fill_from_net(t, gen_p, gen_q, load_p, load_q, storage_p, branch)
            if progress is not None:
                progress(k + 1, total)
        series = SnapshotSeries(
            self.network,
            gen_p,
            branch[0],
            load_p,
            branch_p_to_mw=branch[2],
            storage_p_mw=storage_p if s else None,
        )
        try:
            if s:
                stored = solve_series_with_storage(series, self.states, self.config.interval_h, self.losses)
                batch = stored.batch
                self.states = dict(zip(self.index.storage_ids, stored.final_states, strict=True))
                soc, stored_carbon = stored.storage_energy_mwh, stored.storage_carbon_t
            else:
                batch = solve_batch(series, self.losses)
                soc = stored_carbon = np.zeros((n, 0))
        except SnapshotError as error:
            raise SimulationError(f"engine, intervals {first}-{last - 1}: {error}") from None
        values = self._values(
            batch, gen_p, gen_q, load_p, load_q, storage_p, soc, stored_carbon, branch, vm, va
        )
        ends = tuple(self.config.interval_end(k) for k in range(first, last))
        return TruthChunk(self.index, first, ends, self.config.interval_s, values, batch, iterations)

    def _bus_rows(self) -> np.ndarray:
        if not hasattr(self, "_bus_rows_cache"):
            names = self.net.bus.name.astype(str).tolist() if "name" in self.net.bus else []
            by_id = {}
            if len(set(names)) == len(names) and all(names):
                by_id = {name: k for k, name in enumerate(names)}
            else:
                by_id = {str(index): k for k, index in enumerate(self.net.bus.index)}
            self._bus_rows_cache = np.array([by_id[bus_id] for bus_id in self.index.bus_ids], dtype=np.int64)
        return self._bus_rows_cache

    def _fill_direct(self, result: FlowResult, k, t, gen_p, gen_q, load_p, load_q, storage_p, branch) -> None:
        inp = self.inputs
        for j, (table, row) in enumerate(self._gen_rows):
            if table == "gen":
                gen_p[t, j], gen_q[t, j] = result.gen_p_mw[row], result.gen_q_mvar[row]
            elif table == "ext_grid":
                gen_p[t, j], gen_q[t, j] = result.ext_grid_p_mw[row], result.ext_grid_q_mvar[row]
            else:
                gen_p[t, j] = inp.sgen_p_mw[k, row]
        for j, (table, row) in enumerate(self._load_rows):
            if table == "load":
                load_p[t, j], load_q[t, j] = inp.load_p_mw[k, row], inp.load_q_mvar[k, row]
            else:
                load_p[t, j] = result.shunt_p_mw[row]
        for j, row in enumerate(self._storage_rows):
            storage_p[t, j] = inp.storage_p_mw[k, row]
        for j, (table, row) in enumerate(self._branch_rows):
            branch[:, t, j] = (result.line if table == "line" else result.trafo)[:, row]

    def _fill_from_net(self, t, gen_p, gen_q, load_p, load_q, storage_p, branch) -> None:
        """The general path: the importer reads the solved net (any element pandapower models)."""
        document = snapshot_dict_from_pandapower(self.net, self.intensity)
        for section, target in (("generators", gen_p), ("loads", load_p), ("storage", storage_p)):
            values = {self.ids.get(r["id"], r["id"]): r["p_mw"] for r in document.get(section, [])}
            ids = {
                "generators": self.index.gen_ids,
                "loads": self.index.load_ids,
                "storage": self.index.storage_ids,
            }
            for j, element_id in enumerate(ids[section]):
                target[t, j] = values.get(element_id, 0.0)
        flows = {self.ids.get(r["id"], r["id"]): r for r in document["branches"]}
        for j, branch_id in enumerate(self.index.branch_ids):
            record = flows.get(branch_id)
            if record is None:
                raise SimulationError(f"branch {branch_id} changed its structure during the run")
            branch[0, t, j], branch[2, t, j] = record["p_from_mw"], record["p_to_mw"]

    def _values(self, batch, gen_p, gen_q, load_p, load_q, storage_p, soc, stored_carbon, branch, vm, va):
        acc, flows = batch.accounts, batch.flows
        n = gen_p.shape[0]
        hours = self.config.interval_h
        load_bus = batch.series.network.load_bus
        gen_carbon = acc.element_source_carbon_t_per_h[:, : gen_p.shape[1]]
        n_gen, n_load = gen_p.shape[1], load_p.shape[1]
        load_carbon = acc.element_sink_carbon_t_per_h[:, n_gen : n_gen + n_load]
        storage_intensity = batch.series.arrays["storage_intensity_g_per_kwh"]
        values: dict[str, dict[str, np.ndarray]] = {
            "bus": {
                "vm_pu": vm,
                "va_degree": va,
                "u_kv": vm * self.index.bus_vn_kv[None, :],
                "intensity_g_per_kwh": acc.bus_intensity_g_per_kwh,
                "flux_mw": acc.bus_flux_mw,
                "load_mw": acc.bus_load_mw,
            },
            "generator": {
                "p_mw": gen_p,
                "q_mvar": gen_q,
                "carbon_t_per_h": gen_carbon,
                "intensity_g_per_kwh": batch.series.arrays["gen_intensity_g_per_kwh"],
            },
            "load": {
                "p_mw": load_p,
                "q_mvar": load_q,
                "carbon_t_per_h": load_carbon,
                "intensity_g_per_kwh": acc.bus_intensity_g_per_kwh[:, load_bus],
            },
            "storage": {
                "p_mw": storage_p,
                "soc_mwh": soc,
                "stored_carbon_t": stored_carbon,
                "intensity_g_per_kwh": storage_intensity,
            },
            "branch": {
                "p_mw@from": branch[0],
                "q_mvar@from": branch[1],
                "p_mw@to": branch[2],
                "q_mvar@to": branch[3],
                "loss_mw": branch[0] + branch[2],
                "density_g_per_kwh": acc.branch_density_g_per_kwh,
                "carbon_send_t_per_h": acc.branch_carbon_send_t_per_h,
                "loss_carbon_t_per_h": acc.branch_loss_carbon_t_per_h,
            },
        }
        kwh = hours * 1000.0
        increments = {
            ("generator", "export_energy_kwh"): np.clip(gen_p, 0, None) * kwh,
            ("generator", "carbon_kg"): gen_carbon * kwh,
            ("load", "import_energy_kwh"): np.clip(load_p, 0, None) * kwh,
            ("load", "export_energy_kwh"): np.clip(-load_p, 0, None) * kwh,
            ("load", "carbon_kg"): load_carbon * kwh,
            ("storage", "charge_energy_kwh"): np.clip(storage_p, 0, None) * kwh,
            ("storage", "discharge_energy_kwh"): np.clip(-storage_p, 0, None) * kwh,
            ("branch", "import_energy_kwh@from"): np.clip(-branch[0], 0, None) * kwh,
            ("branch", "export_energy_kwh@from"): np.clip(branch[0], 0, None) * kwh,
            ("branch", "import_energy_kwh@to"): np.clip(-branch[2], 0, None) * kwh,
            ("branch", "export_energy_kwh@to"): np.clip(branch[2], 0, None) * kwh,
        }
        for (kind, key), increase in increments.items():
            start = self.counters.get(f"{kind}/{key}", np.zeros(increase.shape[1]))
            total = start[None, :] + np.cumsum(increase, axis=0)
            if n:
                self.counters[f"{kind}/{key}"] = total[-1]
            values[kind][key] = total
            values[kind][f"{key}#increase"] = increase
        del flows
        return values

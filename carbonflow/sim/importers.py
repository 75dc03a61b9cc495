"""Snapshots from a solved pandapower network, so users can meter their own grids.

Every value comes from the ``res_*`` tables, never from set-points, so the snapshot is exactly the
solved state.  Sign conventions (pandapower docs, checked by the nodal-balance tests): ``res_ext_grid``,
``res_gen``, ``res_sgen``, ``res_asymmetric_sgen`` are generation-positive; ``res_load``,
``res_asymmetric_load``, ``res_shunt``, ``res_motor``, ``res_ward``, ``res_xward`` are consumption-positive;
``res_storage`` is charging-positive; branch results are power into the branch at each end (MATPOWER's
sign), which is what C1 wants.

Ids and structure:

* bus id = ``net.bus.name`` when the names are unique, non-empty strings or integers (case files converted
  from MATPOWER carry the bus numbers there), otherwise ``str(index)``;
* element ids ``"{table}:{index}"`` (``"gen:0"``, ``"line:12"``); ``intensities`` uses the same keys and
  ``default_intensity`` covers every generator (ext_grid, gen, sgen) without its own entry;
* buses joined by a closed bus-bus switch without impedance are one electrical node in pandapower, so they
  are merged onto the id of the first of them in ``net.bus``; a switch with ``z_ohm > 0`` is a branch
  ``"switch:{index}"``;
* buses the power flow did not energise (out of service, or in an island without slack: NaN voltage) are
  left out with what sits on them.  A branch that does not join two distinct energised buses (one end
  dead or open, or both ends merged) becomes a load with the branch's id drawing what it takes from the
  energised side (charging losses), so the nodal balance still holds;
* a three-winding transformer becomes a star bus ``"trafo3w:{index}:star"`` and legs
  ``"trafo3w:{index}:hv|mv|lv"`` from each winding's bus to the star.  Each leg's ``p_from_mw`` is the
  winding's result; the losses ``p_hv + p_mv + p_lv`` are placed at the star end of the legs that feed
  the star, in proportion to their inflow.  In normal operation one winding feeds and the loss sits on
  that one leg; when two windings feed, it is shared.  The star balances exactly, no leg ever sends from
  both ends (cef-model §4.4), and the loss carbon equals the loss times the star's mixed intensity
  whichever way power flows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd

from carbonflow.engine.snapshot import Snapshot, snapshot_from_dict
from carbonflow.sim.errors import GridImportError
from carbonflow.sim.intensities import IntensityTable

__all__ = [
    "GridImportError",
    "load_pandapower_json",
    "snapshot_dict_from_pandapower",
    "snapshot_from_pandapower",
]

_GENERATORS = ("ext_grid", "gen", "sgen", "asymmetric_sgen")
_LOADS = ("load", "asymmetric_load", "shunt", "motor", "ward", "xward")
# (table, from column, to column, result p at from, result p at to)
_BRANCHES = (
    ("line", "from_bus", "to_bus", "p_from_mw", "p_to_mw"),
    ("trafo", "hv_bus", "lv_bus", "p_hv_mw", "p_lv_mw"),
    ("impedance", "from_bus", "to_bus", "p_from_mw", "p_to_mw"),
    ("tcsc", "from_bus", "to_bus", "p_from_mw", "p_to_mw"),
    ("dcline", "from_bus", "to_bus", "p_from_mw", "p_to_mw"),
)
_WINDINGS = ("hv", "mv", "lv")
# Tables that move active power through a DC grid; their balance is not an AC network's.
_UNSUPPORTED = ("vsc", "vsc_bipolar", "vsc_stacked", "b2b_vsc", "line_dc", "source_dc", "load_dc")


def load_pandapower_json(path: str | Path) -> pp.pandapowerNet:
    """A network saved with ``pandapower.to_json`` (results included if they were saved)."""
    return pp.from_json(str(path))


def _table(net: pp.pandapowerNet, name: str) -> pd.DataFrame:
    table = net.get(name, None)
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame()


def _in_service(net: pp.pandapowerNet, name: str) -> pd.DataFrame:
    """Rows of an element table that take part in the power flow, checked against their results."""
    table = _table(net, name)
    if "in_service" in table:
        table = table[table["in_service"].astype(bool)]
    if table.empty:
        return table
    result = _table(net, f"res_{name}")
    if not table.index.isin(result.index).all():
        raise GridImportError(f"res_{name} does not match net.{name}; run the power flow again")
    return table


def _result(net: pp.pandapowerNet, name: str, index: Any, column: str, required: bool = True) -> float:
    """One result value; a NaN is only acceptable where the caller will not use it (a dead end)."""
    value = float(net[f"res_{name}"].at[index, column])
    if required and not math.isfinite(value):
        raise GridImportError(f"{name}:{index}: result {column} is not a number; run the power flow again")
    return value


def _check_solved(net: pp.pandapowerNet) -> None:
    if _table(net, "res_bus").empty or not (net.get("converged") or net.get("OPF_converged")):
        raise GridImportError(
            "network has no converged power-flow results (res_* tables); run pandapower.runpp/rundcpp first"
        )
    if not net.bus.index.isin(net.res_bus.index).all():
        raise GridImportError("res_bus does not match net.bus; run the power flow again")
    for name in _UNSUPPORTED:
        table = _table(net, name)
        if not table.empty and ("in_service" not in table or table["in_service"].astype(bool).any()):
            raise GridImportError(f"network has in-service {name} elements; only AC networks can be imported")


def _bus_names(net: pp.pandapowerNet) -> dict[Any, str]:
    """Bus ids: names when they identify buses, otherwise the table index (see module docstring)."""
    names = net.bus["name"].tolist() if "name" in net.bus else []

    def usable(name: Any) -> bool:
        if isinstance(name, bool | np.bool_):
            return False
        return isinstance(name, int | np.integer) or (isinstance(name, str) and name.strip() != "")

    texts = [str(name) for name in names]
    if names and all(usable(name) for name in names) and len(set(texts)) == len(texts):
        return dict(zip(net.bus.index, texts, strict=True))
    return {index: str(index) for index in net.bus.index}


class _Buses:
    """Energised buses after merging closed bus-bus switches (union-find onto the first bus in order)."""

    def __init__(self, net: pp.pandapowerNet) -> None:
        names = _bus_names(net)
        order = {index: position for position, index in enumerate(net.bus.index)}
        parent = {index: index for index in net.bus.index}

        def root(index: Any) -> Any:
            while parent[index] != index:
                parent[index] = parent[parent[index]]
                index = parent[index]
            return index

        in_service = net.bus["in_service"].astype(bool)
        switches = _table(net, "switch")
        if not switches.empty:
            fused = (switches["et"] == "b") & switches["closed"].astype(bool)
            if "z_ohm" in switches:
                fused &= switches["z_ohm"].fillna(0.0) <= 0
            for bus, other in zip(switches.loc[fused, "bus"], switches.loc[fused, "element"], strict=True):
                if bus in parent and other in parent and in_service[bus] and in_service[other]:
                    first, second = sorted((root(bus), root(other)), key=order.__getitem__)
                    parent[second] = first
        vm = net.res_bus["vm_pu"].reindex(net.bus.index).to_numpy(dtype=float)
        energised = in_service.to_numpy() & np.isfinite(vm)
        self.id_of = {
            index: names[root(index)] for index, live in zip(net.bus.index, energised, strict=True) if live
        }
        self.ids = list(dict.fromkeys(self.id_of.values()))

    def get(self, index: Any) -> str | None:
        return self.id_of.get(index)


class _Builder:
    """Collects C1 records; one place decides what becomes of a branch with a dead or merged end."""

    def __init__(self, net: pp.pandapowerNet, table: IntensityTable) -> None:
        self.net = net
        self.table = table
        self.buses = _Buses(net)
        self.extra_buses: list[str] = []
        self.generators: list[dict[str, Any]] = []
        self.loads: list[dict[str, Any]] = []
        self.storage: list[dict[str, Any]] = []
        self.branches: list[dict[str, Any]] = []

    def injections(self) -> None:
        for name in (*_GENERATORS, *_LOADS, "storage"):
            for index, bus in _in_service(self.net, name)["bus"].items():
                bus_id = self.buses.get(bus)
                if bus_id is None:
                    continue
                element_id = f"{name}:{index}"
                record = {"id": element_id, "bus": bus_id, "p_mw": _result(self.net, name, index, "p_mw")}
                if name in _GENERATORS:
                    self.generators.append(
                        {**record, "intensity_g_per_kwh": self.table.generator(element_id)}
                    )
                elif name == "storage":
                    self.storage.append({**record, **self.table.optional(element_id)})
                else:
                    self.loads.append({**record, **self.table.optional(element_id)})

    def branch(self, branch_id: str, ends: tuple[Any, Any], flows: tuple[float, float]) -> None:
        from_bus, to_bus = (self.buses.get(bus) for bus in ends)
        for bus_id, p_mw in ((from_bus, flows[0]), (to_bus, flows[1])):
            if bus_id is not None and not math.isfinite(p_mw):
                raise GridImportError(f"{branch_id}: result at bus {bus_id} is not a number; solve again")
        if from_bus is not None and to_bus is not None and from_bus != to_bus:
            self.branches.append(
                {
                    "id": branch_id,
                    "from_bus": from_bus,
                    "to_bus": to_bus,
                    "p_from_mw": flows[0],
                    "p_to_mw": flows[1],
                }
            )
            return
        drawn: dict[str, float] = {}
        for bus_id, p_mw in ((from_bus, flows[0]), (to_bus, flows[1])):
            if bus_id is not None:
                drawn[bus_id] = drawn.get(bus_id, 0.0) + p_mw
        for position, (bus_id, p_mw) in enumerate(drawn.items()):
            if p_mw != 0.0:
                load_id = branch_id if position == 0 else f"{branch_id}:to"
                self.loads.append({"id": load_id, "bus": bus_id, "p_mw": p_mw})

    def two_end_branches(self) -> None:
        for name, from_column, to_column, p_from, p_to in _BRANCHES:
            for index, row in _in_service(self.net, name).iterrows():
                flows = (
                    _result(self.net, name, index, p_from, required=False),
                    _result(self.net, name, index, p_to, required=False),
                )
                self.branch(f"{name}:{index}", (row[from_column], row[to_column]), flows)
        switches = _table(self.net, "switch")
        if switches.empty or "z_ohm" not in switches:
            return
        impedant = switches[
            (switches["et"] == "b") & switches["closed"].astype(bool) & (switches["z_ohm"] > 0)
        ]
        if not impedant.index.isin(_table(self.net, "res_switch").index).all():
            raise GridImportError("res_switch does not match net.switch; run the power flow again")
        for index, row in impedant.iterrows():
            flows = (
                _result(self.net, "switch", index, "p_from_mw", required=False),
                _result(self.net, "switch", index, "p_to_mw", required=False),
            )
            self.branch(f"switch:{index}", (row["bus"], row["element"]), flows)

    def three_winding_transformers(self) -> None:
        for index, row in _in_service(self.net, "trafo3w").iterrows():
            legs = []
            for winding in _WINDINGS:
                p_mw = _result(self.net, "trafo3w", index, f"p_{winding}_mw", required=False)
                legs.append((winding, row[f"{winding}_bus"], p_mw))
            live = [leg for leg in legs if self.buses.get(leg[1]) is not None]
            for winding, _bus, p_mw in live:
                if not math.isfinite(p_mw):
                    raise GridImportError(f"trafo3w:{index}: result p_{winding}_mw is not a number")
            if len(live) < 2:
                for winding, bus, p_mw in live:
                    self.branch(f"trafo3w:{index}:{winding}", (bus, None), (p_mw, 0.0))
                continue
            star = f"trafo3w:{index}:star"
            if star in self.buses.ids:
                raise GridImportError(f'bus id "{star}" collides with the star bus of trafo3w {index}')
            self.extra_buses.append(star)
            self.buses.id_of[star] = star
            loss = sum(p_mw for _, _, p_mw in live)
            weights = [max(p_mw, 0.0) for _, _, p_mw in live]
            if sum(weights) == 0.0:
                weights = [abs(p_mw) for _, _, p_mw in live]
            total = sum(weights)
            for (winding, bus, p_mw), weight in zip(live, weights, strict=True):
                share = loss * weight / total if total > 0 else 0.0
                self.branch(f"trafo3w:{index}:{winding}", (bus, star), (p_mw, -(p_mw - share)))

    def check_balance(self, tolerance_mw: float) -> None:
        """Refuse results that do not balance: stale ``res_*`` tables, or elements the power flow ignored
        (pandapower's DC power flow leaves out asymmetric loads yet reports them), would otherwise
        surface much later as an unexplained carbon residual."""
        net_injection: dict[str, float] = {}
        for sign, records in ((1.0, self.generators), (-1.0, self.loads), (-1.0, self.storage)):
            for record in records:
                net_injection[record["bus"]] = net_injection.get(record["bus"], 0.0) + sign * record["p_mw"]
        for record in self.branches:
            for end, flow in (("from_bus", "p_from_mw"), ("to_bus", "p_to_mw")):
                net_injection[record[end]] = net_injection.get(record[end], 0.0) - record[flow]
        for bus_id, mismatch in net_injection.items():
            if abs(mismatch) > tolerance_mw:
                raise GridImportError(
                    f"power-flow results do not balance at bus {bus_id} ({mismatch:+.6g} MW): stale res_* "
                    "tables or elements the power flow ignored; run the power flow again"
                )

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "buses": [{"id": bus_id} for bus_id in [*self.buses.ids, *self.extra_buses]],
            "generators": self.generators,
            "loads": self.loads,
            "branches": self.branches,
        }
        if self.storage:
            document["storage"] = self.storage
        return document


def _element_ids(net: pp.pandapowerNet) -> set[str]:
    return {
        f"{name}:{index}" for name in (*_GENERATORS, *_LOADS, "storage") for index in _table(net, name).index
    }


def snapshot_dict_from_pandapower(
    net: pp.pandapowerNet,
    intensities: Mapping[str, float] | None = None,
    default_intensity: float | None = None,
    *,
    balance_tol_mw: float = 1e-3,
) -> dict[str, Any]:
    """The C1 snapshot document of a solved pandapower network (see the module docstring for ids).

    Every bus of the result must balance within ``balance_tol_mw``; the default is far above
    pandapower's convergence tolerance and far below anything a meter would notice.
    """
    _check_solved(net)
    builder = _Builder(net, IntensityTable(intensities, default_intensity, _element_ids(net)))
    builder.injections()
    builder.two_end_branches()
    builder.three_winding_transformers()
    builder.check_balance(balance_tol_mw)
    return builder.document()


def snapshot_from_pandapower(
    net: pp.pandapowerNet,
    intensities: Mapping[str, float] | None = None,
    default_intensity: float | None = None,
    *,
    balance_tol_mw: float = 1e-3,
) -> Snapshot:
    """The engine snapshot of a solved pandapower network, validated like any C1 document."""
    document = snapshot_dict_from_pandapower(
        net, intensities, default_intensity, balance_tol_mw=balance_tol_mw
    )
    return snapshot_from_dict(document)

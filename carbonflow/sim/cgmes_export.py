"""The simulator's grid (a pandapower net) as a CGMES 2.4.15 set: EQ, TP, SSH and SV profiles.

Mapping (pandapower -> CIM; the reader in ``cgmes_import`` is its inverse):

* bus -> ConnectivityNode + BusbarSection (EQ); buses joined by closed bus-bus switches share one
  TopologicalNode (TP), every other bus has its own; buses joined by transformers or switches share a
  Substation, one VoltageLevel per nominal voltage in it; ``bus.region``
  ``"AH/HF/FX"`` -> GeographicalRegion ``AH`` and SubGeographicalRegion ``HF/FX``;
* line -> ACLineSegment (inside a Line) with the totals over its length and parallel circuits:
  ``r``/``x`` in ohm, ``bch``/``gch`` in siemens (the pi model's whole shunt admittance);
* trafo -> PowerTransformer with two PowerTransformerEnds; impedance and magnetising admittance on end
  1 (HV) in ohm/siemens at its ``ratedU``, a RatioTapChanger on the tap side, the fixed phase shift as
  ``phaseAngleClock`` (multiples of 30°) plus a PhaseTapChangerLinear for any rest;
* gen -> SynchronousMachine with a voltage RegulatingControl; sgen -> SynchronousMachine without one;
  ext_grid -> ExternalNetworkInjection; the slack gets ``referencePriority`` 1 (SSH); each machine has a
  GeneratingUnit of the class its fuel implies (Thermal + FossilFuel, Hydro, Wind, Solar, Nuclear);
* load -> EnergyConsumer (SSH ``p``/``q`` = ``p_mw``/``q_mvar`` × scaling); shunt ->
  LinearShuntCompensator;
* bus-bus switch -> Breaker / Disconnector / LoadBreakSwitch / Switch (SSH ``open``); an open line or
  transformer switch -> ``connected = false`` on the Terminal of that end (closed ones change nothing);
* SV: SvVoltage per TopologicalNode, SvPowerFlow per Terminal (load sign: into the equipment),
  SvTapStep per tap changer, from the solved AC power flow.

Not mapped (reported in :attr:`CgmesExport.notes`): storage, three-winding transformers, switches with
impedance, impedances, wards, DC lines and every other table.  mRIDs are UUID5 of the element ids, so
the same grid always gives the same ids.
"""

from __future__ import annotations

import copy
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandapower as pp
import pandas as pd

from carbonflow.sim.cgmes_export_machines import MachineWriter
from carbonflow.sim.cgmes_rdf import CF, ENTSOE, NO_LIMIT_KA, Document, finite, groups, mrid
from carbonflow.sim.importers import _bus_names
from carbonflow.sim.powerflow import runpp

MAPPED = ("bus", "line", "trafo", "gen", "sgen", "ext_grid", "load", "shunt", "switch")
_SWITCH_CLASS = {"CB": "Breaker", "DS": "Disconnector", "LBS": "LoadBreakSwitch"}
_NOT_MAPPED = ("storage", "trafo3w", "impedance", "ward", "xward", "dcline", "motor", "svc", "tcsc")


@dataclass
class CgmesExport:
    """What was written: the files, and one note per kind of element the set does not carry."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _solved(net: pp.pandapowerNet) -> pp.pandapowerNet:
    """The net with converged AC results (a solved copy when it has none), for the SV profile."""
    if net.get("converged") and len(net.res_bus) == len(net.bus):
        return net
    solved = copy.deepcopy(net)
    runpp(solved)
    return solved


def _joined(net: pp.pandapowerNet, pairs: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """Bus index -> the lowest bus index of its group, buses of a pair being in one group."""
    return groups(net.bus.index, pairs)


def _bus_switches(net: pp.pandapowerNet) -> pd.DataFrame:
    """Bus-bus switches without impedance (a switch with ``z_ohm > 0`` is a branch: not mapped)."""
    switch = net.switch
    if switch.empty:
        return switch
    plain = switch.et == "b"
    if "z_ohm" in switch:
        plain &= switch.z_ohm.fillna(0.0) <= 0
    return switch[plain]


class _Writer(MachineWriter):
    def __init__(self, net: pp.pandapowerNet, model_name: str, scenario_time: str) -> None:
        self.net = net
        self.model = model_name
        ids = {profile: mrid(model_name, "model", profile) for profile in ("EQ", "TP", "SSH", "SV")}
        self.eq = Document("EQ", ids["EQ"], scenario_time)
        self.tp = Document("TP", ids["TP"], scenario_time, [ids["EQ"]])
        self.ssh = Document("SSH", ids["SSH"], scenario_time, [ids["EQ"]])
        self.sv = Document("SV", ids["SV"], scenario_time, [ids["TP"], ids["SSH"]])
        self.bus_name = _bus_names(net)
        self.bus_vn_kv = net.bus.vn_kv.astype(float).to_dict()
        self.node: dict[Any, str] = {}  # bus index -> ConnectivityNode id
        self.topological: dict[Any, str] = {}  # bus index -> TopologicalNode id
        self.level: dict[Any, str] = {}  # bus index -> VoltageLevel id
        self.substation: dict[Any, str] = {}  # bus index -> Substation id
        self.base_voltage: dict[float, str] = {}
        self.levels_made: set[str] = set()
        self.patl: str | None = None  # the one OperationalLimitType every current limit uses
        self.skipped_taps = 0  # Symmetrical/Ideal/Tabular tap changers (not mapped)
        switch = net.switch
        opened = switch[switch.et.isin(("l", "t")) & ~switch.closed.astype(bool)] if len(switch) else switch
        # an open line or transformer switch is the connection state of the terminal it opens
        self.open_ends = (
            set(zip(opened.et, opened.element, opened.bus, strict=True)) if len(opened) else set()
        )

    def id(self, *parts: object) -> str:
        return mrid(self.model, *parts)

    # -- containers and nodes ------------------------------------------------------------------------
    def base(self, kv: float) -> str:
        if kv not in self.base_voltage:
            object_id = self.base_voltage[kv] = self.id("BaseVoltage", kv)
            element = self.eq.new("BaseVoltage", object_id, f"{kv:g} kV")
            self.eq.text(element, "BaseVoltage.nominalVoltage", kv)
        return self.base_voltage[kv]

    def regions(self) -> dict[Any, str]:
        """Bus index -> SubGeographicalRegion id, creating the regions the buses name."""
        bus = self.net.bus
        paths = bus["region"] if "region" in bus else [None] * len(bus)
        made: dict[str, str] = {}
        result = {}
        for index, path in zip(bus.index, paths, strict=True):
            path = str(path) if isinstance(path, str) and path.strip() else "XX/C1"
            province, _, rest = path.partition("/")
            rest = rest or "C1"
            if province not in made:
                made[province] = self.id("GeographicalRegion", province)
                self.eq.new("GeographicalRegion", made[province], province)
            key = f"{province}/{rest}"
            if key not in made:
                made[key] = self.id("SubGeographicalRegion", key)
                element = self.eq.new("SubGeographicalRegion", made[key], rest)
                self.eq.ref(element, "SubGeographicalRegion.Region", made[province])
            result[index] = made[key]
        return result

    def buses(self) -> None:
        net, eq, tp, sv = self.net, self.eq, self.tp, self.sv
        region = self.regions()
        switches = _bus_switches(net)
        # buses joined by a transformer or a switch stand in one substation (CIM wants a PowerTransformer
        # and a Breaker inside one); buses joined by a closed switch are one TopologicalNode
        first_of = _joined(
            net,
            [
                *zip(net.trafo.hv_bus, net.trafo.lv_bus, strict=True),
                *zip(switches.bus, switches.element, strict=True),
            ],
        )
        closed = switches[switches.closed.astype(bool)]
        node_of = _joined(net, zip(closed.bus, closed.element, strict=True))
        for index in dict.fromkeys(first_of.values()):
            object_id = self.substation[index] = self.id("Substation", self.bus_name[index])
            element = eq.new("Substation", object_id, self.bus_name[index])
            eq.ref(element, "Substation.Region", region[index])
        kind = net.bus["kind"] if "kind" in net.bus else [None] * len(net.bus)
        for index, bus_kind in zip(net.bus.index, kind, strict=True):
            name, kv = self.bus_name[index], self.bus_vn_kv[index]
            station = self.substation[first_of[index]]
            level_key = (station, kv)
            self.substation[index] = station
            level_id = self.id("VoltageLevel", *level_key)
            if level_id not in self.levels_made:
                self.levels_made.add(level_id)
                element = eq.new("VoltageLevel", level_id, f"{self.bus_name[first_of[index]]} {kv:g} kV")
                eq.ref(element, "VoltageLevel.Substation", station)
                eq.ref(element, "VoltageLevel.BaseVoltage", self.base(kv))
            self.level[index] = level_id
            node_id = self.node[index] = self.id("ConnectivityNode", name)
            topological_id = self.topological[index] = self.id(
                "TopologicalNode", self.bus_name[node_of[index]]
            )
            element = eq.new("ConnectivityNode", node_id, name)
            eq.ref(element, "ConnectivityNode.ConnectivityNodeContainer", level_id)
            if isinstance(bus_kind, str) and bus_kind:
                eq.text(element, "ConnectivityNode.kind", bus_kind, CF)
            busbar = self.id("BusbarSection", name)
            element = eq.new("BusbarSection", busbar, name)
            eq.ref(element, "Equipment.EquipmentContainer", level_id)
            eq.ref(element, "ConductingEquipment.BaseVoltage", self.base(kv))
            self.terminals("BusbarSection", busbar, [index], [True], [(0.0, 0.0)])
            tp.ref(tp.about("ConnectivityNode", node_id), "ConnectivityNode.TopologicalNode", topological_id)
            if node_of[index] != index:
                continue  # the TopologicalNode and its voltage are the group's first bus's
            element = tp.new("TopologicalNode", topological_id, name)
            tp.ref(element, "TopologicalNode.BaseVoltage", self.base(kv))
            tp.ref(element, "TopologicalNode.ConnectivityNodeContainer", level_id)
            vm_pu, va_degree = (float(net.res_bus.at[index, c]) for c in ("vm_pu", "va_degree"))
            if math.isfinite(vm_pu):
                element = sv.new("SvVoltage", self.id("SvVoltage", name))
                sv.text(element, "SvVoltage.v", vm_pu * kv)
                sv.text(element, "SvVoltage.angle", va_degree)
                sv.ref(element, "SvVoltage.TopologicalNode", topological_id)

    def terminals(
        self,
        owner_class: str,
        owner: str,
        buses: list[Any],
        connected: list[bool],
        flows: list[tuple[float, float]],
    ) -> list[str]:
        """Terminals of one piece of equipment (sequence 1, 2, ...) with their SSH and SV parts."""
        ids = []
        for number, (bus, on, (p_mw, q_mvar)) in enumerate(zip(buses, connected, flows, strict=True), 1):
            terminal = self.id(owner, "Terminal", number)
            element = self.eq.new("Terminal", terminal, f"{owner_class} T{number}")
            self.eq.text(element, "ACDCTerminal.sequenceNumber", number)
            self.eq.ref(element, "Terminal.ConductingEquipment", owner)
            self.eq.ref(element, "Terminal.ConnectivityNode", self.node[bus])
            self.tp.ref(
                self.tp.about("Terminal", terminal), "Terminal.TopologicalNode", self.topological[bus]
            )
            self.ssh.text(self.ssh.about("Terminal", terminal), "ACDCTerminal.connected", bool(on))
            if on and math.isfinite(p_mw) and owner_class != "BusbarSection":
                element = self.sv.new("SvPowerFlow", self.id(owner, "SvPowerFlow", number))
                self.sv.text(element, "SvPowerFlow.p", p_mw)
                self.sv.text(element, "SvPowerFlow.q", finite(q_mvar, 0.0))
                self.sv.ref(element, "SvPowerFlow.Terminal", terminal)
            ids.append(terminal)
        return ids

    def equipment(self, cim_class: str, table: str, index: Any, container: str | None = None) -> tuple:
        """A ConductingEquipment of ``net[table]`` row ``index``: its id and EQ element."""
        row = self.net[table].loc[index]
        name = row.get("name")
        name = str(name) if isinstance(name, str) and name else f"{table}:{index}"
        object_id = self.id(table, index)
        element = self.eq.new(cim_class, object_id, name)
        if container is not None:
            self.eq.ref(element, "Equipment.EquipmentContainer", container)
        return object_id, element, row

    # -- branches ------------------------------------------------------------------------------------
    def lines(self) -> None:
        net, f_hz = self.net, float(self.net.f_hz)
        for index in net.line.index:
            line_id = self.id("Line", index)
            object_id, element, row = self.equipment("ACLineSegment", "line", index)
            self.eq.new("Line", line_id, element[0].text)
            self.eq.ref(element, "Equipment.EquipmentContainer", line_id)
            self.eq.ref(element, "ConductingEquipment.BaseVoltage", self.base(self.bus_vn_kv[row.from_bus]))
            length_km, parallel = float(row.length_km), float(row.parallel)
            c_nf_per_km = finite(row.get("c_nf_per_km"), 0.0)
            g_us_per_km = finite(row.get("g_us_per_km"), 0.0)
            self.eq.text(element, "Conductor.length", length_km)
            self.eq.text(element, "ACLineSegment.r", float(row.r_ohm_per_km) * length_km / parallel)
            self.eq.text(element, "ACLineSegment.x", float(row.x_ohm_per_km) * length_km / parallel)
            self.eq.text(
                element, "ACLineSegment.bch", 2 * math.pi * f_hz * c_nf_per_km * 1e-9 * length_km * parallel
            )
            self.eq.text(element, "ACLineSegment.gch", g_us_per_km * 1e-6 * length_km * parallel)
            res = net.res_line.loc[index]
            terminals = self.terminals(
                "ACLineSegment",
                object_id,
                [row.from_bus, row.to_bus],
                [
                    bool(row.in_service) and ("l", index, bus) not in self.open_ends
                    for bus in (row.from_bus, row.to_bus)
                ],
                [(res.p_from_mw, res.q_from_mvar), (res.p_to_mw, res.q_to_mvar)],
            )
            max_i_ka = finite(row.get("max_i_ka"), math.inf)
            if max_i_ka < NO_LIMIT_KA:
                self.current_limit(object_id, terminals[0], max_i_ka * 1000 * parallel)

    def current_limit(self, owner: str, terminal: str, limit_a: float) -> None:
        """The permanent current limit (PATL) of a branch, in A, on its first terminal: what the
        simulator sizes meters and CTs on."""
        if self.patl is None:
            self.patl = self.id("OperationalLimitType", "PATL")
            element = self.eq.new("OperationalLimitType", self.patl, "PATL")
            self.eq.enum(
                element, "OperationalLimitType.direction", "OperationalLimitDirectionKind.absoluteValue"
            )
            self.eq.enum(element, "OperationalLimitType.limitType", "LimitTypeKind.patl", ENTSOE)
        limit_set = self.id(owner, "OperationalLimitSet")
        element = self.eq.new("OperationalLimitSet", limit_set, "ratings")
        self.eq.ref(element, "OperationalLimitSet.Terminal", terminal)
        element = self.eq.new("CurrentLimit", self.id(owner, "CurrentLimit"), "PATL")
        self.eq.ref(element, "OperationalLimit.OperationalLimitSet", limit_set)
        self.eq.ref(element, "OperationalLimit.OperationalLimitType", self.patl)
        self.eq.text(element, "CurrentLimit.value", limit_a)

    def transformers(self) -> None:
        net = self.net
        for index in net.trafo.index:
            row = net.trafo.loc[index]
            object_id, element, row = self.equipment(
                "PowerTransformer", "trafo", index, self.substation[row.hv_bus]
            )
            res = net.res_trafo.loc[index]
            terminals = self.terminals(
                "PowerTransformer",
                object_id,
                [row.hv_bus, row.lv_bus],
                [
                    bool(row.in_service) and ("t", index, bus) not in self.open_ends
                    for bus in (row.hv_bus, row.lv_bus)
                ],
                [(res.p_hv_mw, res.q_hv_mvar), (res.p_lv_mw, res.q_lv_mvar)],
            )
            # parallel units are one equivalent transformer: rating and admittances times the count
            sn_mva = float(row.sn_mva) * float(row.parallel)
            u_hv_kv, u_lv_kv = float(row.vn_hv_kv), float(row.vn_lv_kv)
            z_base_ohm = u_hv_kv**2 / sn_mva
            r_ohm = float(row.vkr_percent) / 100 * z_base_ohm
            z_ohm = float(row.vk_percent) / 100 * z_base_ohm
            g_s = finite(row.pfe_kw, 0.0) * float(row.parallel) / 1000 / u_hv_kv**2
            y_s = finite(row.i0_percent, 0.0) / 100 * sn_mva / u_hv_kv**2
            b_s = -math.sqrt(max(y_s**2 - g_s**2, 0.0))  # magnetising is inductive: negative susceptance
            shift_degree = finite(row.shift_degree, 0.0)
            clock = round(shift_degree / 30) % 12
            rest_degree = shift_degree - round(shift_degree / 30) * 30
            ends = []
            for number, (kv, terminal) in enumerate(zip((u_hv_kv, u_lv_kv), terminals, strict=True), 1):
                end_id = self.id("trafo", index, "end", number)
                end = self.eq.new("PowerTransformerEnd", end_id, f"{element[0].text} end {number}")
                self.eq.text(end, "TransformerEnd.endNumber", number)
                self.eq.ref(end, "TransformerEnd.Terminal", terminal)
                self.eq.ref(
                    end,
                    "TransformerEnd.BaseVoltage",
                    self.base(self.bus_vn_kv[row.hv_bus if number == 1 else row.lv_bus]),
                )
                self.eq.ref(end, "PowerTransformerEnd.PowerTransformer", object_id)
                self.eq.text(end, "PowerTransformerEnd.ratedU", kv)
                self.eq.text(end, "PowerTransformerEnd.ratedS", sn_mva)
                hv = number == 1
                self.eq.text(end, "PowerTransformerEnd.r", r_ohm if hv else 0.0)
                self.eq.text(
                    end, "PowerTransformerEnd.x", math.sqrt(max(z_ohm**2 - r_ohm**2, 0.0)) if hv else 0.0
                )
                self.eq.text(end, "PowerTransformerEnd.g", g_s if hv else 0.0)
                self.eq.text(end, "PowerTransformerEnd.b", b_s if hv else 0.0)
                self.eq.text(end, "PowerTransformerEnd.phaseAngleClock", 0 if hv else clock)
                self.eq.enum(end, "PowerTransformerEnd.connectionKind", "WindingConnection.Y")
                ends.append(end_id)
            self.tap_changers(index, row, ends, rest_degree)

    def tap_changers(self, index: Any, row: Any, ends: list[str], rest_degree: float) -> None:
        step_percent, position = finite(row.tap_step_percent, math.nan), finite(row.tap_pos, math.nan)
        # pandapower 3 applies a tap only with tap_changer_type "Ratio" (older versions have no column):
        # the set must describe the solved state, so an ignored tap is not exported either
        kind = row.get("tap_changer_type", "Ratio")
        if kind != "Ratio":
            if math.isfinite(position) and isinstance(kind, str):
                self.skipped_taps += 1
        elif math.isfinite(step_percent) and math.isfinite(position) and row.tap_side in ("hv", "lv"):
            neutral = finite(row.tap_neutral, 0.0)
            end = ends[0] if row.tap_side == "hv" else ends[1]
            self.tap_changer(
                "RatioTapChanger",
                self.id("trafo", index, "ratio"),
                end,
                (neutral, position),
                (finite(row.tap_min, min(neutral, position)), finite(row.tap_max, max(neutral, position))),
                ("RatioTapChanger.stepVoltageIncrement", step_percent),
                float(row.vn_hv_kv if row.tap_side == "hv" else row.vn_lv_kv),
            )
        if rest_degree != 0.0:
            # a fixed shift that is no multiple of 30°: one step of a linear phase tap changer, in use
            self.tap_changer(
                "PhaseTapChangerLinear",
                self.id("trafo", index, "phase"),
                ends[1],
                (0.0, 1.0),
                (0.0, 1.0),
                ("PhaseTapChangerLinear.stepPhaseShiftIncrement", rest_degree),
                float(row.vn_lv_kv),
            )

    def tap_changer(self, cim_class, object_id, end, steps, limits, increment, neutral_kv) -> None:
        (neutral, position), (low, high) = steps, limits
        element = self.eq.new(cim_class, object_id, cim_class)
        self.eq.ref(element, f"{cim_class.removesuffix('Linear')}.TransformerEnd", end)
        for prop, value in (
            ("TapChanger.lowStep", int(low)),
            ("TapChanger.highStep", int(high)),
            ("TapChanger.neutralStep", int(neutral)),
            ("TapChanger.normalStep", int(position)),
            ("TapChanger.neutralU", neutral_kv),
            ("TapChanger.ltcFlag", False),
            (*increment,),
        ):
            self.eq.text(element, prop, value)
        state = self.ssh.about(cim_class, object_id)
        self.ssh.text(state, "TapChanger.step", float(position))
        self.ssh.text(state, "TapChanger.controlEnabled", False)
        element = self.sv.new("SvTapStep", self.id(object_id, "SvTapStep"))
        self.sv.text(element, "SvTapStep.position", float(position))
        self.sv.ref(element, "SvTapStep.TapChanger", object_id)

    def loads(self) -> None:
        net = self.net
        for index in net.load.index:
            row = net.load.loc[index]
            object_id, element, row = self.equipment("EnergyConsumer", "load", index, self.level[row.bus])
            industry = row.get("industry")
            if isinstance(industry, str) and industry:
                self.eq.text(element, "EnergyConsumer.industry", industry, CF)
            res = net.res_load.loc[index]
            self.terminals(
                "EnergyConsumer", object_id, [row.bus], [bool(row.in_service)], [(res.p_mw, res.q_mvar)]
            )
            scaling = finite(row.get("scaling"), 1.0)
            state = self.ssh.about("EnergyConsumer", object_id)
            self.ssh.text(state, "EnergyConsumer.p", float(row.p_mw) * scaling)
            self.ssh.text(state, "EnergyConsumer.q", float(row.q_mvar) * scaling)

    def switches(self) -> None:
        for index in _bus_switches(self.net).index:
            row = self.net.switch.loc[index]
            cim_class = _SWITCH_CLASS.get(str(row.get("type")), "Switch")
            object_id, element, row = self.equipment(cim_class, "switch", index, self.level[row.bus])
            is_open = not bool(row.closed)
            self.eq.text(element, "Switch.normalOpen", is_open)
            self.eq.text(element, "Switch.retained", False)
            self.terminals(cim_class, object_id, [row.bus, row.element], [True, True], [(math.nan, 0.0)] * 2)
            self.ssh.text(self.ssh.about(cim_class, object_id), "Switch.open", is_open)

    def shunts(self) -> None:
        net = self.net
        for index in net.shunt.index:
            row = net.shunt.loc[index]
            object_id, element, row = self.equipment(
                "LinearShuntCompensator", "shunt", index, self.level[row.bus]
            )
            kv = finite(row.get("vn_kv"), self.bus_vn_kv[row.bus])
            # pandapower gives MW/MVAr drawn per step at vn_kv (consumption positive): b = -Q/U², g = P/U²
            self.eq.text(element, "ShuntCompensator.nomU", kv)
            self.eq.text(element, "LinearShuntCompensator.bPerSection", -float(row.q_mvar) / kv**2)
            self.eq.text(element, "LinearShuntCompensator.gPerSection", float(row.p_mw) / kv**2)
            self.eq.text(element, "ShuntCompensator.maximumSections", int(finite(row.get("max_step"), 1)))
            self.eq.text(element, "ShuntCompensator.normalSections", int(finite(row.get("step"), 1)))
            res = net.res_shunt.loc[index]
            self.terminals(
                "LinearShuntCompensator",
                object_id,
                [row.bus],
                [bool(row.in_service)],
                [(res.p_mw, res.q_mvar)],
            )
            state = self.ssh.about("LinearShuntCompensator", object_id)
            self.ssh.text(state, "ShuntCompensator.sections", float(finite(row.get("step"), 1)))
            self.ssh.text(state, "RegulatingCondEq.controlEnabled", False)


def cgmes_documents(
    net: pp.pandapowerNet, *, model_name: str | None = None, scenario_time: datetime | None = None
) -> tuple[dict[str, bytes], list[str]]:
    """The four profiles of ``net`` (solved on a copy first if it has no results) and the notes."""
    solved = _solved(net)
    moment = (scenario_time or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    writer = _Writer(solved, model_name or str(net.name or "grid"), moment)
    writer.buses()
    writer.lines()
    writer.transformers()
    writer.machines()
    writer.external_grids()
    writer.loads()
    writer.shunts()
    writer.switches()
    notes = [
        f"{len(net[table])} {table} element(s) not exported (CGMES 2.4.15 mapping not built)"
        for table in _NOT_MAPPED
        if table in net and len(net[table])
    ]
    impedant = len(net.switch) - len(_bus_switches(net)) - int(net.switch.et.isin(("l", "t")).sum())
    if impedant:
        notes.append(f"{impedant} switch(es) with impedance not exported")
    if writer.skipped_taps:
        notes.append(f"{writer.skipped_taps} phase-shifting or tabular tap changer(s) not exported")
    documents = {doc.profile: doc.to_bytes() for doc in (writer.eq, writer.tp, writer.ssh, writer.sv)}
    return documents, notes


def write_cgmes(
    net: pp.pandapowerNet,
    target: str | Path,
    *,
    model_name: str | None = None,
    scenario_time: datetime | None = None,
) -> CgmesExport:
    """Write ``{stem}_EQ.xml`` … ``_SV.xml`` into directory ``target``, or into a zip if it ends in .zip."""
    target = Path(target)
    documents, notes = cgmes_documents(net, model_name=model_name, scenario_time=scenario_time)
    stem = "".join(c if c.isalnum() else "_" for c in (model_name or "grid"))[:40] or "grid"
    result = CgmesExport(notes=notes)
    if target.suffix.lower() == ".zip":
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for profile, data in documents.items():
                archive.writestr(f"{stem}_{profile}.xml", data)
        result.files.append(target)
        return result
    target.mkdir(parents=True, exist_ok=True)
    for profile, data in documents.items():
        path = target / f"{stem}_{profile}.xml"
        path.write_bytes(data)
        result.files.append(path)
    return result

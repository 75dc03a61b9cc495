"""A pandapower net from a CGMES set (EQ + SSH required, TP and SV used when present; a directory or zip).

Buses are the TopologicalNodes (TP), or the ConnectivityNodes when the set has no TP profile; each
bus's nominal voltage is its BaseVoltage (the node's own, else its VoltageLevel's) and its region
``{GeographicalRegion}/{SubGeographicalRegion}`` (names) through VoltageLevel -> Substation.

* ACLineSegment -> line (``length``, ``r``/``x`` ohm, ``bch``/``gch`` siemens over the whole length);
* two-end PowerTransformer -> trafo: every end's impedance and magnetising admittance referred to the
  HV end; RatioTapChanger -> tap; ``phaseAngleClock`` and PhaseTapChangerLinear -> ``shift_degree``;
* SynchronousMachine with an enabled voltage RegulatingControl -> gen (``vm_pu`` = target kV / bus kV),
  otherwise sgen; ExternalNetworkInjection -> ext_grid when it is the slack, else gen/sgen likewise;
* slack, one per island (lines, transformers, closed switches): the lowest positive SSH
  ``referencePriority``; without one, the first regulating external network injection, else the
  largest regulating machine (``ratedS``);
* switches (Breaker, Disconnector, LoadBreakSwitch, Switch, Fuse, Jumper) -> bus-bus switches, open or
  closed as SSH says, when every Terminal has a ConnectivityNode (buses are then those nodes);
* EnergyConsumer, ConformLoad, NonConformLoad, StationSupply -> load; LinearShuntCompensator -> shunt;
* fuel from the GeneratingUnit class (FossilFuel type for thermal units); intensity from carbonflow's
  ``cf:`` extension when the set carries it, else ``cgmes_import_machines.FUEL_INTENSITY_G_PER_KWH``,
  else the default.

A Terminal whose SSH ``connected`` is false puts its equipment out of service; on one end of a line
or transformer only, it is an open line/transformer switch there.  Everything else is listed
in :attr:`CgmesImport.notes`.  Any structural problem (missing profile, missing terminal, unknown base
voltage, a reference to an object not in the set) raises :class:`GridImportError` naming the object.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandapower as pp

from carbonflow.sim.cgmes_import_machines import MachineReader, bulk_columns
from carbonflow.sim.cgmes_rdf import NO_LIMIT_KA, CimObject, CimSet, read_cim
from carbonflow.sim.errors import GridImportError

_LOADS = ("EnergyConsumer", "ConformLoad", "NonConformLoad", "StationSupply")
_SWITCHES = ("Breaker", "Disconnector", "Switch", "LoadBreakSwitch", "Fuse", "Jumper")
_NOT_MAPPED = (
    *_SWITCHES,
    "GroundDisconnector",
    "AsynchronousMachine",
    "EnergySource",
    "EquivalentInjection",
    "EquivalentBranch",
    "EquivalentShunt",
    "SeriesCompensator",
    "NonlinearShuntCompensator",
    "StaticVarCompensator",
    "PhaseTapChangerAsymmetrical",
    "PhaseTapChangerSymmetrical",
    "PhaseTapChangerTabular",
    "DCLineSegment",
    "CsConverter",
    "VsConverter",
)


@dataclass
class CgmesImport:
    """The imported net and one note per kind of object that was not mapped."""

    net: pp.pandapowerNet
    notes: list[str] = field(default_factory=list)


class _Reader(MachineReader):
    def __init__(self, cim: CimSet, default_intensity: float) -> None:
        self.cim = cim
        self.default_intensity = default_intensity
        self.notes: list[str] = []
        self.net = pp.create_empty_network(f_hz=50.0, sn_mva=100.0)
        # switches need the node-breaker detail: buses are then the ConnectivityNodes and the switches
        # pandapower bus-bus switches (it joins closed ones itself); otherwise TopologicalNodes when the
        # set has them (they already join closed switches), else ConnectivityNodes
        terminals = cim.of("Terminal")
        self.node_breaker = bool(cim.of(*_SWITCHES)) and all(
            "Terminal.ConnectivityNode" in t.refs for t in terminals
        )
        self.use_tp = not self.node_breaker and "TP" in cim.profiles and bool(cim.of("TopologicalNode"))
        self.terminals: dict[str, list[CimObject]] = {}
        for terminal in terminals:
            owner = cim.target(terminal, "Terminal.ConductingEquipment")
            self.terminals.setdefault(owner.object_id, []).append(terminal)
        for group in self.terminals.values():
            group.sort(key=lambda t: t.float("ACDCTerminal.sequenceNumber", 0.0))
        self.bus_of: dict[str, int] = {}  # node id -> bus index
        self.kind_of: dict[str, str] = {}  # node id -> cf kind

    # -- nodes ---------------------------------------------------------------------------------------
    def node_of(self, terminal: CimObject) -> CimObject:
        if self.use_tp:
            node = self.cim.target(terminal, "Terminal.TopologicalNode", required=False)
            if node is None:
                cn = self.cim.target(terminal, "Terminal.ConnectivityNode", required=False)
                node = cn and self.cim.target(cn, "ConnectivityNode.TopologicalNode", required=False)
            if node is None:
                raise GridImportError(f"{terminal.label}: connected to no TopologicalNode")
            return node
        node = self.cim.target(terminal, "Terminal.ConnectivityNode", required=False)
        if node is None:
            raise GridImportError(f"{terminal.label}: connected to no ConnectivityNode")
        return node

    def voltage_level(self, node: CimObject) -> CimObject | None:
        prop = (
            "TopologicalNode.ConnectivityNodeContainer"
            if self.use_tp
            else "ConnectivityNode.ConnectivityNodeContainer"
        )
        container = self.cim.target(node, prop, required=False)
        if container is not None and container.cim_class == "Bay":
            container = self.cim.target(container, "Bay.VoltageLevel", required=False)
        return container if container is not None and container.cim_class == "VoltageLevel" else None

    def nominal_kv(self, node: CimObject, level: CimObject | None) -> float:
        base = self.cim.target(node, "TopologicalNode.BaseVoltage", required=False) if self.use_tp else None
        if base is None and level is not None:
            base = self.cim.target(level, "VoltageLevel.BaseVoltage", required=False)
        if (
            base is None and not self.use_tp
        ):  # a ConnectivityNode outside a VoltageLevel: its TopologicalNode's
            topological = self.cim.target(node, "ConnectivityNode.TopologicalNode", required=False)
            base = topological and self.cim.target(topological, "TopologicalNode.BaseVoltage", required=False)
        if base is None:
            raise GridImportError(
                f"{node.label}: unknown base voltage (no BaseVoltage on it or its VoltageLevel)"
            )
        kv = base.float("BaseVoltage.nominalVoltage", math.nan)
        if not kv > 0:
            raise GridImportError(
                f"{base.label}: unknown base voltage (nominalVoltage missing or not positive)"
            )
        return kv

    def region(self, level: CimObject | None) -> str | None:
        station = level and self.cim.target(level, "VoltageLevel.Substation", required=False)
        sub = station and self.cim.target(station, "Substation.Region", required=False)
        if sub is None:
            return None
        top = self.cim.target(sub, "SubGeographicalRegion.Region", required=False)
        parts = [o.values.get("IdentifiedObject.name") or o.object_id for o in (top, sub) if o is not None]
        return "/".join(parts)

    def buses(self) -> None:
        for cn in self.cim.of("ConnectivityNode"):
            kind = cn.values.get("ConnectivityNode.kind")
            if kind:
                tn = cn.refs.get("ConnectivityNode.TopologicalNode") if self.use_tp else cn.object_id
                self.kind_of[tn or cn.object_id] = kind
        nodes = self.cim.of("TopologicalNode" if self.use_tp else "ConnectivityNode")
        rows = []
        for node in nodes:
            level = self.voltage_level(node)
            rows.append(
                (
                    node.values.get("IdentifiedObject.name") or node.object_id,
                    self.nominal_kv(node, level),
                    self.region(level),
                    self.kind_of.get(node.object_id),
                )
            )
        if not rows:
            raise GridImportError(
                "the set has no TopologicalNode or ConnectivityNode: nothing to build buses from"
            )
        index = pp.create_buses(self.net, len(rows), vn_kv=[r[1] for r in rows], name=[r[0] for r in rows])
        self.bus_of = {node.object_id: int(i) for node, i in zip(nodes, index, strict=True)}
        if any(r[2] for r in rows):
            self.net.bus["region"] = [r[2] for r in rows]
        if any(r[3] for r in rows):
            self.net.bus["kind"] = [r[3] for r in rows]

    def ends(self, obj: CimObject, count: int) -> tuple[list[int], bool]:
        """Bus of each of the first ``count`` terminals, and whether all of them are connected."""
        terminals = self.terminals.get(obj.object_id, [])
        if len(terminals) < count:
            raise GridImportError(
                f"{obj.label}: {len(terminals)} terminal(s), needs {count} (missing terminal)"
            )
        return self.terminal_buses(terminals[:count])

    def terminal_buses(self, terminals: list[CimObject]) -> tuple[list[int], bool]:
        buses = []
        for terminal in terminals:
            node = self.node_of(terminal)
            if node.object_id not in self.bus_of:
                raise GridImportError(f"{terminal.label}: its node {node.label} is not a bus of the set")
            buses.append(self.bus_of[node.object_id])
        return buses, all(t.flag("ACDCTerminal.connected", True) for t in terminals)

    @staticmethod
    def name(obj: CimObject) -> str:
        return obj.values.get("IdentifiedObject.name") or obj.object_id

    # -- branches ------------------------------------------------------------------------------------
    def branch_state(self, terminals: list[CimObject], buses: list[int]) -> tuple[bool, list[int]]:
        """In service unless every end is disconnected; the buses of the ends that are (open ends)."""
        connected = [t.flag("ACDCTerminal.connected", True) for t in terminals]
        if not any(connected):
            return False, []
        return True, [bus for bus, on in zip(buses, connected, strict=True) if not on]

    def open_ends(self, et: str, index: Any, open_buses: list[list[int]]) -> None:
        """An end disconnected alone is an open line/transformer switch, as pandapower models it: the
        branch stays energised from the other end (its charging current still flows)."""
        rows = [
            dict(buses=bus, elements=int(element), et=et, closed=False)
            for element, buses in zip(index, open_buses, strict=True)
            for bus in buses
        ]
        if rows:
            pp.create_switches(self.net, **bulk_columns(rows))

    def current_limits_a(self) -> dict[str, float]:
        """Equipment id -> its permanent current limit (A): the smallest PATL CurrentLimit of its sets."""
        limits: dict[str, float] = {}
        for limit in self.cim.of("CurrentLimit"):
            limit_set = self.cim.target(limit, "OperationalLimit.OperationalLimitSet")
            kind = self.cim.target(limit, "OperationalLimit.OperationalLimitType", required=False)
            if kind is not None and not kind.values.get("OperationalLimitType.limitType", "patl").endswith(
                "patl"
            ):
                continue  # temporary (TATL) and tripping limits are not ratings
            terminal = self.cim.target(limit_set, "OperationalLimitSet.Terminal", required=False)
            owner = (terminal or limit_set).refs.get(
                "Terminal.ConductingEquipment" if terminal else "OperationalLimitSet.Equipment"
            )
            value_a = limit.float("CurrentLimit.value")
            if owner is not None and value_a > 0:
                limits[owner] = min(limits.get(owner, math.inf), value_a)
        return limits

    def lines(self) -> None:
        rows, open_buses = [], []
        limits_a = self.current_limits_a()
        for segment in self.cim.of("ACLineSegment"):
            (from_bus, to_bus), _ = self.ends(segment, 2)
            on, opened = self.branch_state(self.terminals[segment.object_id][:2], [from_bus, to_bus])
            open_buses.append(opened)
            length_km = segment.float("Conductor.length", 0.0)
            length_km = length_km if length_km > 0 else 1.0  # a length is optional; totals are what count
            bch_s, gch_s = segment.float("ACLineSegment.bch", 0.0), segment.float("ACLineSegment.gch", 0.0)
            rows.append(
                dict(
                    from_buses=from_bus,
                    to_buses=to_bus,
                    length_km=length_km,
                    name=self.name(segment),
                    in_service=on,
                    max_i_ka=limits_a.get(segment.object_id, NO_LIMIT_KA * 1000) / 1000,
                    r_ohm_per_km=segment.float("ACLineSegment.r") / length_km,
                    x_ohm_per_km=segment.float("ACLineSegment.x") / length_km,
                    c_nf_per_km=bch_s / (2 * math.pi * float(self.net.f_hz)) * 1e9 / length_km,
                    g_us_per_km=gch_s * 1e6 / length_km,
                )
            )
        if rows:
            columns = bulk_columns(rows)
            index = pp.create_lines_from_parameters(self.net, **columns)
            self.open_ends("l", index, open_buses)

    def tap_changers(self) -> dict[str, dict[str, CimObject]]:
        """TransformerEnd id -> {"ratio": ..., "phase": ...}."""
        found: dict[str, dict[str, CimObject]] = {}
        for kind, cim_class, prop in (
            ("ratio", "RatioTapChanger", "RatioTapChanger.TransformerEnd"),
            ("phase", "PhaseTapChangerLinear", "PhaseTapChanger.TransformerEnd"),
        ):
            for changer in self.cim.of(cim_class):
                end = self.cim.target(changer, prop)
                found.setdefault(end.object_id, {})[kind] = changer
        return found

    @staticmethod
    def step(changer: CimObject) -> float:
        """Tap position: SSH ``step``, else the normal step."""
        return changer.float("TapChanger.step", changer.float("TapChanger.normalStep", 0.0))

    def transformers(self) -> None:
        ends_of: dict[str, list[CimObject]] = {}
        for end in self.cim.of("PowerTransformerEnd"):
            owner = self.cim.target(end, "PowerTransformerEnd.PowerTransformer")
            ends_of.setdefault(owner.object_id, []).append(end)
        changers = self.tap_changers()
        rows, open_buses, three_winding = [], [], 0
        for transformer in self.cim.of("PowerTransformer"):
            ends = sorted(
                ends_of.get(transformer.object_id, []), key=lambda e: e.float("TransformerEnd.endNumber", 0)
            )
            if len(ends) == 3:
                three_winding += 1
                continue
            if len(ends) != 2:
                raise GridImportError(
                    f"{transformer.label}: {len(ends)} PowerTransformerEnd(s), needs 2 or 3"
                )
            terminals = [self.cim.target(end, "TransformerEnd.Terminal") for end in ends]
            buses, _ = self.terminal_buses(terminals)
            on, opened = self.branch_state(terminals, buses)
            open_buses.append(opened)
            rated_kv = [end.float("PowerTransformerEnd.ratedU") for end in ends]
            if not all(kv > 0 for kv in rated_kv):
                raise GridImportError(f"{transformer.label}: ratedU must be positive")
            hv, lv = (0, 1) if rated_kv[0] >= rated_kv[1] else (1, 0)
            sn_mva = ends[hv].float("PowerTransformerEnd.ratedS", 0.0) or ends[lv].float(
                "PowerTransformerEnd.ratedS", 0.0
            )
            sn_mva = (
                sn_mva if sn_mva > 0 else 100.0
            )  # any base gives the same ohms; 100 MVA when none is given
            # refer every end's series impedance (ohm) and shunt admittance (siemens) to the HV end
            r_ohm = x_ohm = g_s = b_s = 0.0
            for k, end in enumerate(ends):
                ratio_sq = (rated_kv[hv] / rated_kv[k]) ** 2
                r_ohm += end.float("PowerTransformerEnd.r", 0.0) * ratio_sq
                x_ohm += end.float("PowerTransformerEnd.x", 0.0) * ratio_sq
                g_s += end.float("PowerTransformerEnd.g", 0.0) / ratio_sq
                b_s += end.float("PowerTransformerEnd.b", 0.0) / ratio_sq
            z_base_ohm = rated_kv[hv] ** 2 / sn_mva
            row = dict(
                hv_buses=buses[hv],
                lv_buses=buses[lv],
                sn_mva=sn_mva,
                vn_hv_kv=rated_kv[hv],
                vn_lv_kv=rated_kv[lv],
                vk_percent=math.hypot(r_ohm, x_ohm) / z_base_ohm * 100,
                vkr_percent=r_ohm / z_base_ohm * 100,
                pfe_kw=g_s * rated_kv[hv] ** 2 * 1000,
                i0_percent=math.hypot(g_s, b_s) * z_base_ohm * 100,
                shift_degree=30.0
                * (
                    ends[lv].float("PowerTransformerEnd.phaseAngleClock", 0.0)
                    - ends[hv].float("PowerTransformerEnd.phaseAngleClock", 0.0)
                ),
                tap_side=None,
                tap_changer_type=None,
                tap_neutral=math.nan,
                tap_min=math.nan,
                tap_max=math.nan,
                tap_step_percent=math.nan,
                tap_pos=math.nan,
                name=self.name(transformer),
                in_service=on,
            )
            for side, k in (("hv", hv), ("lv", lv)):
                found = changers.get(ends[k].object_id, {})
                if "ratio" in found and row["tap_side"] is None:
                    ratio = found["ratio"]
                    row.update(
                        tap_side=side,
                        tap_changer_type="Ratio",
                        tap_neutral=ratio.float("TapChanger.neutralStep", 0.0),
                        tap_min=ratio.float("TapChanger.lowStep", math.nan),
                        tap_max=ratio.float("TapChanger.highStep", math.nan),
                        tap_step_percent=ratio.float("RatioTapChanger.stepVoltageIncrement", 0.0),
                        tap_pos=self.step(ratio),
                    )
                if "phase" in found:
                    phase = found["phase"]
                    steps = self.step(phase) - phase.float("TapChanger.neutralStep", 0.0)
                    row["shift_degree"] += steps * phase.float(
                        "PhaseTapChangerLinear.stepPhaseShiftIncrement", 0.0
                    )
            rows.append(row)
        if rows:
            columns = bulk_columns(rows)
            index = pp.create_transformers_from_parameters(self.net, **columns)
            self.open_ends("t", index, open_buses)
        if three_winding:
            self.notes.append(f"{three_winding} three-winding PowerTransformer(s) not mapped")

    def loads(self) -> None:
        rows = []
        for consumer in self.cim.of(*_LOADS):
            (bus,), on = self.ends(consumer, 1)
            rows.append(
                dict(
                    bus=bus,
                    p_mw=consumer.float("EnergyConsumer.p", 0.0),
                    q_mvar=consumer.float("EnergyConsumer.q", 0.0),
                    name=self.name(consumer),
                    in_service=on,
                    industry=consumer.values.get("EnergyConsumer.industry"),
                )
            )
        if rows:
            industry = [row.pop("industry") for row in rows]
            columns = bulk_columns(rows)
            columns["buses"] = columns.pop("bus")
            pp.create_loads(self.net, **columns)
            if any(industry):
                self.net.load["industry"] = industry

    def switches(self) -> None:
        if not self.node_breaker:
            return
        rows = []
        for switch in self.cim.of(*_SWITCHES):
            (bus, other), connected = self.ends(switch, 2)
            is_open = switch.flag("Switch.open", switch.flag("Switch.normalOpen", False))
            kind = {"Breaker": "CB", "Disconnector": "DS", "LoadBreakSwitch": "LBS"}.get(switch.cim_class)
            rows.append(
                dict(
                    buses=bus,
                    elements=other,
                    et="b",
                    closed=connected and not is_open,
                    type=kind,
                    name=self.name(switch),
                )
            )
        pp.create_switches(self.net, **bulk_columns(rows))

    def shunts(self) -> None:
        rows = []
        for shunt in self.cim.of("LinearShuntCompensator"):
            (bus,), on = self.ends(shunt, 1)
            kv = shunt.float("ShuntCompensator.nomU", float(self.net.bus.vn_kv.at[bus]))
            # SSH sections is a Float in CGMES; pandapower switches whole steps
            sections_in_use = shunt.float(
                "ShuntCompensator.sections", shunt.integer("ShuntCompensator.normalSections", 1)
            )
            if not math.isfinite(sections_in_use):
                raise GridImportError(f"{shunt.label}: ShuntCompensator.sections is not finite")
            sections = round(sections_in_use)
            rows.append(
                dict(
                    buses=bus,
                    vn_kv=kv,
                    name=self.name(shunt),
                    in_service=on,
                    step=sections,
                    q_mvar=-shunt.float("LinearShuntCompensator.bPerSection") * kv**2,
                    p_mw=shunt.float("LinearShuntCompensator.gPerSection", 0.0) * kv**2,
                    max_step=max(shunt.integer("ShuntCompensator.maximumSections", 1), sections, 1),
                )
            )
        if rows:
            columns = bulk_columns(rows)
            pp.create_shunts(self.net, **columns)

    def unmapped(self) -> None:
        skipped = _NOT_MAPPED if not self.node_breaker else [c for c in _NOT_MAPPED if c not in _SWITCHES]
        counts = Counter(obj.cim_class for obj in self.cim.of(*skipped))
        for cim_class, count in sorted(counts.items()):
            why = ""
            if cim_class in _SWITCHES:
                why = (
                    " (buses are TopologicalNodes, which already join closed switches)"
                    if self.use_tp
                    else " (no TP profile: each switch leaves its two ConnectivityNodes apart)"
                )
            self.notes.append(f"{count} {cim_class}(s) not mapped{why}")


def load_cgmes(path: str | Path, *, default_intensity: float = 820.0) -> CgmesImport:
    """Read a CGMES set (directory or zip of EQ, TP, SSH, SV files) into a pandapower net."""
    cim = read_cim(path)
    missing = [profile for profile in ("EQ", "SSH") if profile not in cim.profiles]
    if missing:
        found = ", ".join(sorted(cim.profiles)) or "none"
        raise GridImportError(f"{path}: no {' and no '.join(missing)} profile in the set (found: {found})")
    cim.check_defined()
    reader = _Reader(cim, default_intensity)
    logger = logging.getLogger("pandapower")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        reader.buses()
        reader.lines()
        reader.transformers()
        reader.switches()
        reader.injections()  # after the branches and switches: one slack per island
        reader.loads()
        reader.shunts()
    finally:
        logger.setLevel(level)
    reader.unmapped()
    reader.net.name = Path(path).stem
    return CgmesImport(reader.net, reader.notes)

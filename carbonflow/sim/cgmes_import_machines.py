"""The machines of a CGMES import: SynchronousMachine and ExternalNetworkInjection -> ext_grid, gen or
sgen, one slack per island, and each unit's fuel and carbon intensity.

A mixin of the reader in ``cgmes_import`` (it uses the reader's set, net, terminals and buses), kept
apart so that each file stays readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandapower as pp

from carbonflow.sim.cgmes_rdf import FOSSIL_FUEL, UNIT_CLASS_FUEL, CimObject, groups
from carbonflow.sim.errors import GridImportError

# gCO2/kWh per fuel when the set carries no intensity: zero for non-fossil units (as the reference grid
# counts them), the reference grid's combined-cycle figure for gas; coal, lignite, oil and units of no
# known fuel get the import's default intensity (820 unless told otherwise, a coal-heavy fleet average).
FUEL_INTENSITY_G_PER_KWH = {"water": 0.0, "wind": 0.0, "solar": 0.0, "nuclear": 0.0, "gas": 381.0}
# carbonflow's columns of a unit, set after the bulk create (pandapower does not know them)
_EXTRA_COLUMNS = ("fuel", "profile", "intensity_g_per_kwh", "intensity_source", "p_max_mw", "p_min_mw")
MACHINES = ("SynchronousMachine", "ExternalNetworkInjection")


def bulk_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows of one table as the columns pandapower's bulk ``create_*`` functions take (NaN where a row
    lacks a key: an external network injection has no rating, a machine without a unit no limits)."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return {key: [row.get(key, math.nan) for row in rows] for key in keys}


@dataclass
class _Machine:
    obj: CimObject
    bus: int
    in_service: bool
    p_mw: float  # generation positive
    q_mvar: float
    vm_pu: float | None  # voltage target when it regulates
    priority: int
    rated_mva: float


class MachineReader:
    """Machines of the set into the net (see ``cgmes_import`` for the mapping)."""

    def voltage_target(self, obj: CimObject, own_bus: int) -> float | None:
        """``vm_pu`` the equipment holds, or None when it does not control voltage (SSH says so)."""
        if not obj.flag("RegulatingCondEq.controlEnabled", False):
            return None
        control = self.cim.target(obj, "RegulatingCondEq.RegulatingControl", required=False)
        if control is None or not control.flag("RegulatingControl.enabled", True):
            return None
        if not control.values.get("RegulatingControl.mode", "voltage").endswith("voltage"):
            return None
        multiplier = control.values.get("RegulatingControl.targetValueUnitMultiplier", "UnitMultiplier.k")
        scale_to_kv = {"k": 1.0, "none": 1e-3, "M": 1e3}.get(multiplier.rpartition(".")[2], 1.0)
        target_kv = control.float("RegulatingControl.targetValue") * scale_to_kv
        terminal = self.cim.target(control, "RegulatingControl.Terminal", required=False)
        # a remote target is held at the machine's own bus (pandapower gens regulate locally)
        bus = self.terminal_buses([terminal])[0][0] if terminal is not None else own_bus
        return target_kv / float(self.net.bus.vn_kv.at[bus])

    def machine(self, obj: CimObject) -> _Machine:
        (bus,), on = self.ends(obj, 1)
        synchronous = obj.cim_class == "SynchronousMachine"
        prefix = "RotatingMachine" if synchronous else "ExternalNetworkInjection"
        rated_mva = obj.float(
            "RotatingMachine.ratedS" if synchronous else "ExternalNetworkInjection.maxP", 0.0
        )
        return _Machine(
            obj,
            bus,
            on,
            -obj.float(f"{prefix}.p", 0.0),  # SSH uses the load sign
            -obj.float(f"{prefix}.q", 0.0),
            self.voltage_target(obj, bus),
            obj.integer(f"{obj.cim_class}.referencePriority", 0),
            rated_mva,
        )

    def carbon(self, obj: CimObject, fossil: dict[str, str]) -> dict[str, Any]:
        """fuel, profile, intensity and its source, and unit limits of a machine."""
        unit = None
        if obj.cim_class == "SynchronousMachine":
            unit = self.cim.target(obj, "RotatingMachine.GeneratingUnit", required=False)
        source = unit or obj
        fuel, profile = UNIT_CLASS_FUEL.get(source.cim_class, (fossil.get(source.object_id), "thermal"))
        extension = "GeneratingUnit" if unit else obj.cim_class  # the class the cf: attributes are named on
        fuel = source.values.get(f"{extension}.fuel") or fuel
        if f"{extension}.intensityGPerKwh" in source.values:
            intensity = source.float(f"{extension}.intensityGPerKwh")
            note = "carbonflow extension of the CGMES set"
        elif fuel in FUEL_INTENSITY_G_PER_KWH:
            intensity, note = FUEL_INTENSITY_G_PER_KWH[fuel], f"CGMES import: factor of fuel {fuel}"
        else:
            intensity, note = self.default_intensity, "default intensity of an imported grid"
        info = dict(fuel=fuel, profile=profile, intensity_g_per_kwh=intensity, intensity_source=note)
        if unit is not None:
            info["p_max_mw"] = unit.float("GeneratingUnit.maxOperatingP", math.nan)
            info["p_min_mw"] = unit.float("GeneratingUnit.minOperatingP", math.nan)
        return info

    def islands(self) -> dict[int, int]:
        """Bus -> island (its lowest bus) over in-service lines and transformers and closed switches."""
        net = self.net
        pairs = []
        opened = net.switch[~net.switch.closed.astype(bool)]
        for table, et, ends in (("line", "l", ("from_bus", "to_bus")), ("trafo", "t", ("hv_bus", "lv_bus"))):
            live = net[table][net[table].in_service.astype(bool)]
            live = live[~live.index.isin(opened.element[opened.et == et])]  # an open end parts the island
            pairs += zip(live[ends[0]], live[ends[1]], strict=True)
        closed = net.switch[net.switch.closed.astype(bool) & (net.switch.et == "b")]
        pairs += zip(closed.bus, closed.element, strict=True)
        return groups(net.bus.index, pairs)

    def slacks(self, machines: list[_Machine]) -> list[_Machine]:
        """One slack per island with a voltage-controlling machine: the lowest positive SSH
        ``referencePriority``, else the first external network injection, else the largest machine."""
        island = self.islands()
        by_island: dict[int, list[_Machine]] = {}
        for m in machines:
            if m.vm_pu is not None and m.in_service:
                by_island.setdefault(island[m.bus], []).append(m)
        if not by_island:
            raise GridImportError(
                "no slack: no in-service machine or external network injection controls voltage"
            )
        chosen = []
        for candidates in by_island.values():
            prioritised = [m for m in candidates if m.priority > 0]
            external = [m for m in candidates if m.obj.cim_class == "ExternalNetworkInjection"]
            if prioritised:
                chosen.append(min(prioritised, key=lambda m: m.priority))
            elif external:
                chosen.append(external[0])
            else:
                chosen.append(max(candidates, key=lambda m: m.rated_mva))
        return chosen

    def injections(self) -> None:
        machines = [self.machine(obj) for obj in self.cim.of(*MACHINES)]
        slacks = {id(m) for m in self.slacks(machines)}
        fossil = {}
        for fuel in self.cim.of("FossilFuel"):
            unit = self.cim.target(fuel, "FossilFuel.ThermalGeneratingUnit")
            kind = fuel.values.get("FossilFuel.fossilFuelType", "").rpartition(".")[2]
            fossil[unit.object_id] = FOSSIL_FUEL.get(kind, kind or None)
        angle = {}
        for voltage in self.cim.of("SvVoltage"):
            node = voltage.refs.get("SvVoltage.TopologicalNode")
            if node in self.bus_of:
                angle[self.bus_of[node]] = voltage.float("SvVoltage.angle", 0.0)
        # rows per table first, then one bulk create each: a create_* call per element costs ~15 ms
        rows: dict[str, list[dict[str, Any]]] = {"ext_grid": [], "gen": [], "sgen": []}
        for m in machines:
            obj = m.obj
            row = dict(buses=m.bus, name=self.name(obj), in_service=m.in_service, **self.carbon(obj, fossil))
            if obj.cim_class == "SynchronousMachine":
                row.update(
                    sn_mva=m.rated_mva or math.nan,
                    min_q_mvar=obj.float("SynchronousMachine.minQ", math.nan),
                    max_q_mvar=obj.float("SynchronousMachine.maxQ", math.nan),
                )
            slack = id(m) in slacks
            if slack and obj.cim_class == "ExternalNetworkInjection":
                row.pop("profile")
                rows["ext_grid"].append(dict(row, vm_pu=m.vm_pu, va_degree=angle.get(m.bus, 0.0)))
            elif m.vm_pu is not None:
                rows["gen"].append(dict(row, p_mw=m.p_mw, vm_pu=m.vm_pu, slack=slack))
            else:
                rows["sgen"].append(dict(row, p_mw=m.p_mw, q_mvar=m.q_mvar))
        for table, create in (("ext_grid", None), ("gen", pp.create_gens), ("sgen", pp.create_sgens)):
            if not rows[table]:
                continue
            columns = bulk_columns(rows[table])
            extra = {key: columns.pop(key) for key in _EXTRA_COLUMNS if key in columns}
            if create is None:  # one per island at most: pandapower has no bulk ext_grid creator
                index = []
                for position in range(len(rows[table])):
                    row = {key: values[position] for key, values in columns.items()}
                    index.append(pp.create_ext_grid(self.net, row.pop("buses"), **row))
            else:
                index = create(self.net, **columns)
            for key, values in extra.items():
                self.net[table].loc[index, key] = values

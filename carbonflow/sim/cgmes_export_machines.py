"""The machines of a CGMES export: SynchronousMachine + GeneratingUnit (by fuel) for gen and sgen,
ExternalNetworkInjection for ext_grid, with their voltage RegulatingControls and SSH set-points.

A mixin of the writer in ``cgmes_export`` (it uses the writer's documents, ids, terminals and
containers), kept apart so that each file stays readable.
"""

from __future__ import annotations

import math
from typing import Any

from carbonflow.sim.cgmes_rdf import CF, FUEL_UNIT_CLASS, finite


class MachineWriter:
    """gen, sgen and ext_grid rows as CIM objects (see ``cgmes_export`` for the mapping)."""

    def regulating_control(self, owner: str, terminal: str, bus: Any, vm_pu: float) -> str:
        control = self.id(owner, "RegulatingControl")
        element = self.eq.new("RegulatingControl", control, "voltage control")
        self.eq.enum(element, "RegulatingControl.mode", "RegulatingControlModeKind.voltage")
        self.eq.ref(element, "RegulatingControl.Terminal", terminal)
        state = self.ssh.about("RegulatingControl", control)
        self.ssh.text(state, "RegulatingControl.discrete", False)
        self.ssh.text(state, "RegulatingControl.enabled", True)
        self.ssh.text(state, "RegulatingControl.targetDeadband", 0.0)
        self.ssh.text(state, "RegulatingControl.targetValue", vm_pu * self.bus_vn_kv[bus])
        self.ssh.enum(state, "RegulatingControl.targetValueUnitMultiplier", "UnitMultiplier.k")
        return control

    def carbon(self, element: Any, cim_class: str, row: Any) -> None:
        """carbonflow's own data on a unit (cf: namespace): fuel and intensity, which CIM does not carry."""
        fuel = row.get("fuel")
        if isinstance(fuel, str) and fuel:
            self.eq.text(element, f"{cim_class}.fuel", fuel, CF)
        intensity = finite(row.get("intensity_g_per_kwh"), math.nan)
        if math.isfinite(intensity):
            self.eq.text(element, f"{cim_class}.intensityGPerKwh", intensity, CF)

    def generating_unit(self, table: str, index: Any, row: Any, p_mw: float) -> str:
        fuel = row.get("fuel")
        if not isinstance(fuel, str) or not fuel:
            fuel = {"WP": "wind", "PV": "solar"}.get(str(row.get("type")), "")
        cim_class, fossil = FUEL_UNIT_CLASS.get(fuel, ("GeneratingUnit", None))
        unit_id = self.id(table, index, "GeneratingUnit")
        unit = self.eq.new(cim_class, unit_id, str(row.get("name") or f"{table}:{index}"))
        self.eq.ref(unit, "Equipment.EquipmentContainer", self.substation[row.bus])
        p_max_mw = finite(row.get("p_max_mw"), finite(row.get("max_p_mw"), max(abs(p_mw), 1.0)))
        p_min_mw = finite(row.get("p_min_mw"), finite(row.get("min_p_mw"), 0.0))
        self.eq.text(unit, "GeneratingUnit.maxOperatingP", p_max_mw)
        self.eq.text(unit, "GeneratingUnit.minOperatingP", min(p_min_mw, p_max_mw))
        self.eq.text(unit, "GeneratingUnit.nominalP", p_max_mw)
        self.eq.text(unit, "GeneratingUnit.initialP", p_mw)
        self.carbon(unit, "GeneratingUnit", row)
        if fossil is not None:
            element = self.eq.new("FossilFuel", self.id(table, index, "FossilFuel"), fossil)
            self.eq.enum(element, "FossilFuel.fossilFuelType", f"FuelType.{fossil}")
            self.eq.ref(element, "FossilFuel.ThermalGeneratingUnit", unit_id)
        if cim_class == "WindGeneratingUnit":
            self.eq.enum(unit, "WindGeneratingUnit.windGenUnitType", "WindGenUnitKind.onshore")
        return unit_id

    def machines(self) -> None:
        net = self.net
        for table in ("gen", "sgen"):
            for index in net[table].index:
                row = net[table].loc[index]
                object_id, element, row = self.equipment(
                    "SynchronousMachine", table, index, self.level[row.bus]
                )
                scaling = finite(row.get("scaling"), 1.0)
                p_mw = float(row.p_mw) * scaling
                q_mvar = finite(row.get("q_mvar"), 0.0) * scaling
                res = net[f"res_{table}"].loc[index]
                terminal = self.terminals(
                    "SynchronousMachine",
                    object_id,
                    [row.bus],
                    [bool(row.in_service)],
                    [(-res.p_mw, -res.q_mvar)],
                )[0]
                unit = self.generating_unit(table, index, row, p_mw)
                self.eq.ref(element, "RotatingMachine.GeneratingUnit", unit)
                rated = finite(row.get("sn_mva"), math.hypot(abs(p_mw), abs(q_mvar)) or 1.0)
                self.eq.text(element, "RotatingMachine.ratedS", rated)
                self.eq.enum(element, "SynchronousMachine.type", "SynchronousMachineKind.generator")
                self.eq.text(element, "SynchronousMachine.minQ", finite(row.get("min_q_mvar"), -1e5))
                self.eq.text(element, "SynchronousMachine.maxQ", finite(row.get("max_q_mvar"), 1e5))
                regulating = table == "gen"
                if regulating:
                    control = self.regulating_control(object_id, terminal, row.bus, float(row.vm_pu))
                    self.eq.ref(element, "RegulatingCondEq.RegulatingControl", control)
                state = self.ssh.about("SynchronousMachine", object_id)
                # CGMES SSH uses the load sign: a machine producing 100 MW has p = -100
                self.ssh.text(state, "RotatingMachine.p", -p_mw)
                self.ssh.text(state, "RotatingMachine.q", -q_mvar)
                self.ssh.text(state, "RegulatingCondEq.controlEnabled", regulating)
                slack = regulating and bool(row.get("slack", False))
                self.ssh.text(state, "SynchronousMachine.referencePriority", 1 if slack else 0)
                self.ssh.enum(
                    state, "SynchronousMachine.operatingMode", "SynchronousMachineOperatingMode.generator"
                )

    def external_grids(self) -> None:
        net = self.net
        for index in net.ext_grid.index:
            row = net.ext_grid.loc[index]
            object_id, element, row = self.equipment(
                "ExternalNetworkInjection", "ext_grid", index, self.level[row.bus]
            )
            res = net.res_ext_grid.loc[index]
            terminal = self.terminals(
                "ExternalNetworkInjection",
                object_id,
                [row.bus],
                [bool(row.in_service)],
                [(-res.p_mw, -res.q_mvar)],
            )[0]
            for prop, column, default in (
                ("maxP", "max_p_mw", 1e5),
                ("minP", "min_p_mw", -1e5),
                ("maxQ", "max_q_mvar", 1e5),
                ("minQ", "min_q_mvar", -1e5),
            ):
                self.eq.text(element, f"ExternalNetworkInjection.{prop}", finite(row.get(column), default))
            self.eq.text(element, "ExternalNetworkInjection.governorSCD", 0.0)
            self.carbon(element, "ExternalNetworkInjection", row)
            control = self.regulating_control(object_id, terminal, row.bus, float(row.vm_pu))
            self.eq.ref(element, "RegulatingCondEq.RegulatingControl", control)
            state = self.ssh.about("ExternalNetworkInjection", object_id)
            self.ssh.text(state, "ExternalNetworkInjection.p", -finite(res.p_mw, 0.0))
            self.ssh.text(state, "ExternalNetworkInjection.q", -finite(res.q_mvar, 0.0))
            self.ssh.text(state, "ExternalNetworkInjection.referencePriority", 1)
            self.ssh.text(state, "RegulatingCondEq.controlEnabled", True)

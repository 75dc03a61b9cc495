"""Turn one interval's measurements into a power-flow snapshot the engine can meter.

Pure: topology and measurements in, a C1 snapshot document and the list of estimates out.

What is measured where (the device map decides, per point ``(element_kind, element_id, quantity,
end)``): energy counters (kWh, kg) are read at both ends of the interval and their increase is the
interval's energy; instantaneous values (MW, g/kWh) are averaged over the samples in the interval.
A counter beats an instantaneous value because it integrates the whole interval.

Missing data is estimated, never silently dropped, and every estimate is reported with its method:

* branch end without a measurement: the other end's value with the sign turned (lossless), else the
  balance (KCL) at a bus where it is the only unknown, else the previous interval's value;
* generator or load without a measurement: the previous interval's value, else zero;
* generator intensity: Δcarbon / Δenergy from the unit's counters, else its measured factor, else
  the configured intensity of the unit (its declared emission factor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ElementKey = tuple[str, str, str, str]  # (element_kind, element_id, quantity, end)


@dataclass(frozen=True)
class Measurements:
    """One interval's data by element quantity.  ``counters``: (value at start, value at end);
    ``instants``: the samples within the interval."""

    interval_s: float
    counters: Mapping[ElementKey, tuple[Decimal, Decimal]] = field(default_factory=dict)
    instants: Mapping[ElementKey, list[Decimal]] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return self.interval_s / 3600.0

    def energy_mwh(self, kind: str, element: str, quantity: str, end: str = "-") -> float | None:
        pair = self.counters.get((kind, element, quantity, end))
        if pair is None:
            return None
        start, stop = pair
        return float(stop - start) / 1000.0  # kWh -> MWh

    def mean(self, kind: str, element: str, quantity: str, end: str = "-") -> float | None:
        samples = self.instants.get((kind, element, quantity, end))
        if not samples:
            return None
        return float(sum(samples) / len(samples))


@dataclass(frozen=True)
class Estimate:
    element_kind: str
    element_id: str
    quantity: str
    method: str  # "other end", "kcl", "previous interval", "zero", "configured intensity", ...

    def as_dict(self) -> dict[str, str]:
        return {
            "element_kind": self.element_kind,
            "element_id": self.element_id,
            "quantity": self.quantity,
            "method": self.method,
        }


@dataclass
class Assembled:
    snapshot: dict[str, Any]  # C1 snapshot document
    estimates: list[Estimate]

    @property
    def values(self) -> dict[str, dict[str, float]]:
        """Powers by element, kept by the caller as the 'previous interval' of the next one."""
        return {
            "generators": {g["id"]: g["p_mw"] for g in self.snapshot["generators"]},
            "loads": {x["id"]: x["p_mw"] for x in self.snapshot["loads"]},
            "branches_from": {b["id"]: b["p_from_mw"] for b in self.snapshot["branches"]},
            "branches_to": {b["id"]: b["p_to_mw"] for b in self.snapshot["branches"]},
            "storage": {s["id"]: s["p_mw"] for s in self.snapshot.get("storage", [])},
        }


def assemble_snapshot(
    topology: Mapping[str, Any],
    data: Measurements,
    previous: Mapping[str, Mapping[str, float]] | None = None,
    storage_intensity_g_per_kwh: Mapping[str, float] | None = None,
) -> Assembled:
    """``topology`` is the grid document (buses, generators, loads, storage, branches as in
    :func:`carbonflow.sim.device_map.grid_document`; only ids, buses and intensities are used)."""
    previous = previous or {}
    estimates: list[Estimate] = []
    hours = data.hours

    def power(kind: str, element: str, counter_in: str, counter_out: str | None = None) -> float | None:
        """MW from counters (in minus out) if present, else the mean of instantaneous p_mw."""
        energy_in = data.energy_mwh(kind, element, counter_in)
        energy_out = data.energy_mwh(kind, element, counter_out) if counter_out else None
        if energy_in is not None or energy_out is not None:
            return ((energy_in or 0.0) - (energy_out or 0.0)) / hours
        return data.mean(kind, element, "p_mw")

    def held(section: str, kind: str, element: str, quantity: str = "p_mw") -> float:
        last = previous.get(section, {}).get(element)
        estimates.append(Estimate(kind, element, quantity, "zero" if last is None else "previous interval"))
        return 0.0 if last is None else float(last)

    generators = []
    for unit in topology["generators"]:
        gid = unit["id"]
        p = power("generator", gid, "export_energy_kwh")
        if p is None:
            p = held("generators", "generator", gid)
        generators.append(
            {
                "id": gid,
                "bus": unit["bus"],
                "p_mw": p,
                "intensity_g_per_kwh": _unit_intensity(unit, data, estimates),
            }
        )

    loads = []
    for load in topology["loads"]:
        lid = load["id"]
        p = power("load", lid, "import_energy_kwh", "export_energy_kwh")
        if p is None:
            p = held("loads", "load", lid)
        loads.append({"id": lid, "bus": load["bus"], "p_mw": p})

    storage = []
    for store in topology.get("storage", []):
        sid = store["id"]
        p = power("storage", sid, "charge_energy_kwh", "discharge_energy_kwh")
        if p is None:
            p = held("storage", "storage", sid)
        record: dict[str, Any] = {"id": sid, "bus": store["bus"], "p_mw": p}
        if storage_intensity_g_per_kwh and sid in storage_intensity_g_per_kwh:
            record["intensity_g_per_kwh"] = storage_intensity_g_per_kwh[sid]
        storage.append(record)

    branches = _branch_flows(topology, data, generators, loads, storage, previous, estimates)
    snapshot = {
        "buses": [{"id": b["id"]} for b in topology["buses"]],
        "generators": generators,
        "loads": loads,
        "branches": branches,
    }
    if storage:
        snapshot["storage"] = storage
    return Assembled(snapshot, estimates)


def _unit_intensity(unit: Mapping[str, Any], data: Measurements, estimates: list[Estimate]) -> float:
    gid = unit["id"]
    energy = data.energy_mwh("generator", gid, "export_energy_kwh")
    carbon_pair = data.counters.get(("generator", gid, "carbon_kg", "-"))
    if energy and energy > 0 and carbon_pair is not None:
        carbon_t = float(carbon_pair[1] - carbon_pair[0]) / 1000.0
        if carbon_t >= 0:
            return carbon_t / energy * 1000.0  # t/MWh -> g/kWh
    measured = data.mean("generator", gid, "intensity_g_per_kwh")
    if measured is not None and measured >= 0:
        return measured
    configured = unit.get("intensity_g_per_kwh")
    estimates.append(Estimate("generator", gid, "intensity_g_per_kwh", "configured intensity"))
    return float(configured) if configured is not None else 0.0


def _branch_flows(
    topology: Mapping[str, Any],
    data: Measurements,
    generators: list[dict[str, Any]],
    loads: list[dict[str, Any]],
    storage: list[dict[str, Any]],
    previous: Mapping[str, Mapping[str, float]],
    estimates: list[Estimate],
) -> list[dict[str, Any]]:
    hours = data.hours
    ends: dict[tuple[str, str], float | None] = {}
    for branch in topology["branches"]:
        for end in ("from", "to"):
            bid = branch["id"]
            exported = data.energy_mwh("branch", bid, "export_energy_kwh", end)
            imported = data.energy_mwh("branch", bid, "import_energy_kwh", end)
            instant = data.mean("branch", bid, "p_mw", end)
            if exported is not None and imported is not None:
                # counters at a branch end are seen from the bus: export = into the branch
                ends[(bid, end)] = (exported - imported) / hours
            elif instant is not None:
                # a one-way counter cannot see a reversed flow; the power samples can
                ends[(bid, end)] = instant
            elif exported is not None or imported is not None:
                ends[(bid, end)] = ((exported or 0.0) - (imported or 0.0)) / hours
            else:
                ends[(bid, end)] = None

    for branch in topology["branches"]:  # one end known: lossless estimate of the other
        bid = branch["id"]
        p_from, p_to = ends[(bid, "from")], ends[(bid, "to")]
        if (p_from is None) != (p_to is None):
            missing = "to" if p_to is None else "from"
            ends[(bid, missing)] = -(p_from if p_to is None else p_to)
            estimates.append(Estimate("branch", bid, f"p_{missing}_mw", "other end"))

    _fill_by_kcl(topology, ends, generators, loads, storage, estimates)

    records = []
    for branch in topology["branches"]:
        bid = branch["id"]
        p_from, p_to = ends[(bid, "from")], ends[(bid, "to")]
        if p_from is None:
            last_from = previous.get("branches_from", {}).get(bid)
            last_to = previous.get("branches_to", {}).get(bid)
            method = "previous interval" if last_from is not None else "zero"
            p_from = float(last_from) if last_from is not None else 0.0
            p_to = float(last_to) if last_to is not None else -p_from
            estimates.append(Estimate("branch", bid, "p_from_mw", method))
        records.append(
            {
                "id": bid,
                "from_bus": branch["from_bus"],
                "to_bus": branch["to_bus"],
                "p_from_mw": p_from,
                "p_to_mw": p_to,
            }
        )
    return records


def _fill_by_kcl(
    topology: Mapping[str, Any],
    ends: dict[tuple[str, str], float | None],
    generators: list[dict[str, Any]],
    loads: list[dict[str, Any]],
    storage: list[dict[str, Any]],
    estimates: list[Estimate],
) -> None:
    """Where a bus has exactly one unknown branch (both ends unmeasured), its flow is the bus balance;
    repeat until nothing more can be found (a radial feeder unwinds from its leaves)."""
    injection: dict[str, float] = {}
    for g in generators:
        injection[g["bus"]] = injection.get(g["bus"], 0.0) + g["p_mw"]
    for x in loads:
        injection[x["bus"]] = injection.get(x["bus"], 0.0) - x["p_mw"]
    for s in storage:
        injection[s["bus"]] = injection.get(s["bus"], 0.0) - s["p_mw"]
    incident: dict[str, list[tuple[str, str]]] = {}
    for branch in topology["branches"]:
        incident.setdefault(branch["from_bus"], []).append((branch["id"], "from"))
        incident.setdefault(branch["to_bus"], []).append((branch["id"], "to"))
    changed = True
    while changed:
        changed = False
        for bus, branch_ends in incident.items():
            unknown = [key for key in branch_ends if ends[key] is None]
            if len(unknown) != 1:
                continue
            known_out = sum(ends[key] for key in branch_ends if ends[key] is not None)
            bid, end = unknown[0]
            value = injection.get(bus, 0.0) - known_out  # power the bus must send into the branch
            other = "to" if end == "from" else "from"
            ends[(bid, end)] = value
            ends[(bid, other)] = -value
            estimates.append(Estimate("branch", bid, "p_from_mw", "kcl"))
            changed = True

"""Turn one interval's measurements into a power-flow snapshot the engine can meter.

Pure: topology and measurements in, a C1 snapshot document, what was not measured and the standard
uncertainty (1σ) of every input out.

What is measured where (the device map decides, per point ``(element_kind, element_id, quantity,
end)``): energy counters (kWh, kg) are read at both ends of the interval and their increase is the
interval's energy; instantaneous values (MW, g/kWh) are averaged over the samples in the interval.
Where both exist, the one with the smaller uncertainty counts (a measured value always beats an
estimated one; on a tie the counter, because it integrates the whole interval).

What is not measured is *derived* where a law fixes it from measured values, and *estimated*
otherwise; both are reported with their method, only estimates count as estimates:

* derived — a branch end from the balance (KCL) at a bus where it is the only unknown; the factor of a
  zero-emission unit (declared 0 g/kWh: wind, solar, hydro) without a carbon meter; the two ends of a
  branch whose means both deliver power within their uncertainty, reconciled (:func:`_reconciled`);
* estimated — a branch end from its other end with the sign turned (lossless), a generator or load or
  branch held at the previous interval's value (else zero), a unit's configured intensity where its
  carbon meter gives nothing, and every value built from estimated readings (interpolated counters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain, repeat
from operator import itemgetter, sub, truediv
from typing import Any, NamedTuple

import numpy as np

ElementKey = tuple[str, str, str, str]  # (element_kind, element_id, quantity, end)
HELD_RELATIVE_U = 0.10  # a value held from the previous interval: 10 % (1σ) of it
LOSSLESS_RELATIVE_U = 0.01  # the other end of a branch, losses ignored: 1 % of the flow
RECONCILE_COVERAGE = 3.0  # both ends of a branch delivering within this many 1σ: sampling, not a fault
# the point quantities a snapshot is assembled from (energy counters, carbon counters, power samples,
# factor registers): the others (voltages, reactive power) need not be turned into measurements
ASSEMBLED_QUANTITIES = frozenset(
    {
        "export_energy_kwh", "import_energy_kwh", "charge_energy_kwh", "discharge_energy_kwh", "carbon_kg",
        "p_mw", "intensity_g_per_kwh",
    }
)  # fmt: skip
SECTIONS = ("generators", "generator_intensity", "loads", "storage", "branches_from", "branches_to")


@dataclass(frozen=True)
class Measurements:
    """One interval's data by element quantity.  ``counters``: (value at start, value at end);
    ``instants``: the samples within the interval; ``uncertainty``: 1σ of a counter's increase or of the
    samples' mean (element units; absent: 0); ``estimated``: why a value is an estimate."""

    interval_s: float
    counters: Mapping[ElementKey, tuple[Decimal, Decimal]] = field(default_factory=dict)
    instants: Mapping[ElementKey, list[Decimal]] = field(default_factory=dict)
    uncertainty: Mapping[ElementKey, float] = field(default_factory=dict)
    estimated: Mapping[ElementKey, str] = field(default_factory=dict)

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

    def u(self, kind: str, element: str, quantity: str, end: str = "-") -> float:
        return self.uncertainty.get((kind, element, quantity, end), 0.0)

    def why_estimated(self, kind: str, element: str, quantity: str, end: str = "-") -> str | None:
        return self.estimated.get((kind, element, quantity, end))


@dataclass(frozen=True)
class Estimate:
    element_kind: str
    element_id: str
    quantity: str
    method: str  # "other end", "kcl", "previous interval", "zero", "configured intensity", ...
    kind: str = "estimated"  # or "derived": fixed by a law from measured values

    def as_dict(self) -> dict[str, str]:
        return {
            "element_kind": self.element_kind,
            "element_id": self.element_id,
            "quantity": self.quantity,
            "method": self.method,
            "kind": self.kind,
        }


class Value(NamedTuple):  # a tuple: one per element and branch end of every interval
    """An input of the snapshot with its standard uncertainty and, unless measured, how it was found."""

    value: float
    u: float = 0.0
    method: str | None = None
    derived: bool = False

    @property
    def measured(self) -> bool:
        return self.method is None

    @property
    def estimated(self) -> bool:
        return self.method is not None and not self.derived


@dataclass
class Assembled:
    snapshot: dict[str, Any]  # C1 snapshot document
    estimates: list[Estimate]
    derived: list[Estimate] = field(default_factory=list)
    uncertainty: dict[str, dict[str, float]] = field(default_factory=dict)  # section -> id -> 1σ

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


class _Inputs:
    """Collects the snapshot's values with their uncertainty and the list of what was not measured."""

    def __init__(self, data: Measurements, previous: Mapping[str, Mapping[str, float]]) -> None:
        self.data, self.previous = data, previous
        self.hours = data.hours
        self.estimates: list[Estimate] = []
        self.derived: list[Estimate] = []
        self.uncertainty: dict[str, dict[str, float]] = {section: {} for section in SECTIONS}

    def record(self, section: str, kind: str, element: str, quantity: str, found: Value) -> float:
        self.uncertainty[section][element] = found.u
        if found.method is not None:
            self.note(kind, element, quantity, found)
        return found.value

    def note(self, kind: str, element: str, quantity: str, found: Value) -> None:
        """``found`` (not measured) in the list of estimates or of derived values."""
        kind_of = "derived" if found.derived else "estimated"
        note = Estimate(kind, element, quantity, found.method, kind_of)  # type: ignore[arg-type]
        (self.derived if found.derived else self.estimates).append(note)

    def powers(
        self, kind: str, ids: list[str], counter_in: str, counter_out: str | None = None, end: str = "-"
    ) -> list[Value | None]:
        """MW of each element of ``ids`` from counters (in minus out) or from the mean of instantaneous
        p_mw, the better of both (None: neither).  All elements at once — C-level look-ups and maps over
        the element lists, the same float and ``Decimal`` operations in the same order as one element at
        a time (30,000 elements and branch ends at 10,000 buses)."""
        data, hours = self.data, self.hours
        counters, u_of, why_of = data.counters, data.uncertainty, data.estimated
        n = len(ids)
        keys_in = [(kind, element, counter_in, end) for element in ids]
        pairs_in = list(map(counters.get, keys_in))
        if counter_out:
            keys_out = [(kind, element, counter_out, end) for element in ids]
            pairs_out = list(map(counters.get, keys_out))
        else:
            keys_out, pairs_out = keys_in, [None] * n
        found: list[Value | None] = [None] * n
        ranks: list[tuple | None] = [None] * n  # of a counted value: measured first, two-way, 1σ
        for read_in, read_out, one_way in ((True, True, False), (True, False, True), (False, True, True)):
            at = [
                i for i, a, b in zip(range(n), pairs_in, pairs_out)
                if (a is not None) is read_in and (b is not None) is read_out
            ]  # fmt: skip
            if not at:
                continue
            one_way = one_way and counter_out is not None
            energy = np.zeros((2, len(at)))  # MWh in, out; 0.0 where not read ("energy or 0.0")
            u = []
            whys: list[str | None] = [None] * len(at)
            for row, read, pairs, keys in (
                (0, read_in, pairs_in, keys_in),
                (1, read_out, pairs_out, keys_out),
            ):
                if not read:
                    continue
                pair = [pairs[i] for i in at]
                kwh = map(float, map(sub, map(itemgetter(1), pair), map(itemgetter(0), pair)))
                energy[row] = np.fromiter(kwh, float, len(at)) / 1000.0  # kWh -> MWh
                u.append(list(map(u_of.get, (keys[i] for i in at), repeat(0.0))))
                if why_of:  # (the first that says why, else None: "why_in or why_out or None")
                    whys = [w or x or None for w, x in zip(whys, map(why_of.get, (keys[i] for i in at)))]
            energy[energy == 0.0] = 0.0  # a -0.0 is falsy: "energy or 0.0" gave +0.0
            values = ((energy[0] - energy[1]) / hours).tolist()
            u_mw = (np.fromiter(map(math.hypot, *u), float, len(at)) / 1000.0 / hours).tolist()
            for i, value, one_u, why in zip(at, values, u_mw, whys):
                found[i] = Value(value, one_u, why)
                ranks[i] = (why is not None, one_way, one_u, 0)
        keys_p = [(kind, element, "p_mw", end) for element in ids]
        samples = list(map(data.instants.get, keys_p))
        sampled = [i for i, s in enumerate(samples) if s]
        if not sampled:
            return found
        chosen = [samples[i] for i in sampled]
        means = map(float, map(truediv, map(sum, chosen), map(len, chosen)))
        keys = [keys_p[i] for i in sampled]
        whys_p = list(map(why_of.get, keys)) if why_of else repeat(None)
        for i, mean, u_p, why in zip(sampled, means, map(u_of.get, keys, repeat(0.0)), whys_p):
            rank = ranks[i]
            # measured first; a one-way counter cannot see a reversed flow, the power samples can
            if rank is None or (why is not None, False, u_p, 1) < rank:
                found[i] = Value(mean, u_p, why)
        return found

    def held(self, section: str, element: str) -> Value:
        last = self.previous.get(section, {}).get(element)
        if last is None:
            return Value(0.0, 0.0, "zero")
        return Value(float(last), HELD_RELATIVE_U * abs(float(last)), "previous interval")


def assemble_snapshot(
    topology: Mapping[str, Any],
    data: Measurements,
    previous: Mapping[str, Mapping[str, float]] | None = None,
    storage_intensity_g_per_kwh: Mapping[str, float] | None = None,
) -> Assembled:
    """``topology`` is the grid document (buses, generators, loads, storage, branches as in
    :func:`carbonflow.sim.device_map.grid_document`; only ids, buses and intensities are used)."""
    inputs = _Inputs(data, previous or {})
    injections: list[_Injection] = []
    for kind, counter_in, counter_out, sign, elements in (
        ("generator", "export_energy_kwh", None, 1.0, topology["generators"]),
        ("load", "import_energy_kwh", "export_energy_kwh", -1.0, topology["loads"]),
        ("storage", "charge_energy_kwh", "discharge_energy_kwh", -1.0, topology.get("storage", [])),
    ):
        section = SECTION_OF[kind]
        found = inputs.powers(kind, [element["id"] for element in elements], counter_in, counter_out)
        injections += [
            _Injection(kind, element, sign, p or inputs.held(section, element["id"]))
            for element, p in zip(elements, found)
        ]

    incident = _incident_ends(topology)  # (built once: 20,000 branch ends at 10,000 buses)
    ends = _branch_ends(topology, inputs, injections, incident)
    _fill_injections_by_kcl(incident, ends, injections)

    generators, loads, storage = [], [], []
    uncertainty = inputs.uncertainty
    for injection in injections:
        element, kind, p = injection.element, injection.kind, injection.p
        eid = element["id"]
        uncertainty[SECTION_OF[kind]][eid] = p.u  # (what inputs.record does, inline: 9,000 of them)
        if p.method is not None:
            inputs.note(kind, eid, "p_mw", p)
        # u_p_mw, 1σ: a cascade allows for it in a region's balance
        record: dict[str, Any] = {"id": eid, "bus": element["bus"], "p_mw": p.value, "u_p_mw": round(p.u, 6)}
        if kind == "generator":
            intensity = _unit_intensity(element, data)
            record["intensity_g_per_kwh"] = inputs.record(
                "generator_intensity", kind, eid, "intensity_g_per_kwh", intensity
            )
            generators.append(record)
        elif kind == "load":
            loads.append(record)
        else:
            if storage_intensity_g_per_kwh and eid in storage_intensity_g_per_kwh:
                record["intensity_g_per_kwh"] = storage_intensity_g_per_kwh[eid]
            storage.append(record)
    snapshot = {
        "buses": [{"id": b["id"]} for b in topology["buses"]],
        "generators": generators,
        "loads": loads,
        "branches": _branch_records(topology, inputs, ends),
    }
    if storage:
        snapshot["storage"] = storage
    return Assembled(snapshot, inputs.estimates, inputs.derived, inputs.uncertainty)


@dataclass
class _Injection:
    kind: str  # generator | load | storage
    element: Mapping[str, Any]
    sign: float  # +1: into the bus (generation), -1: out of it (load, charging storage)
    p: Value

    @property
    def bus(self) -> str:
        return self.element["bus"]


SECTION_OF = {"generator": "generators", "load": "loads", "storage": "storage"}


def _unit_intensity(unit: Mapping[str, Any], data: Measurements) -> Value:
    """Δcarbon/Δenergy from the unit's counters, or its meter's factor, whichever is surer; else the
    unit's configured intensity (declared, not estimated, for a zero-emission unit)."""
    gid = unit["id"]
    candidates = []
    energy = data.energy_mwh("generator", gid, "export_energy_kwh")
    carbon_pair = data.counters.get(("generator", gid, "carbon_kg", "-"))
    if energy and energy > 0 and carbon_pair is not None:
        carbon_t = float(carbon_pair[1] - carbon_pair[0]) / 1000.0
        if carbon_t >= 0:
            ratio = carbon_t / energy * 1000.0  # t/MWh -> g/kWh
            # absolute, so that a carbon register that did not move (a coarse secondary-side register:
            # 0.01 kg x CT x VT a digit) gives 0 ± its resolution / energy, not an exact 0
            u_ratio = 1000.0 * math.hypot(
                data.u("generator", gid, "carbon_kg") / 1000.0 / energy,
                carbon_t * data.u("generator", gid, "export_energy_kwh") / 1000.0 / energy**2,
            )
            why = data.why_estimated("generator", gid, "export_energy_kwh") or data.why_estimated(
                "generator", gid, "carbon_kg"
            )
            candidates.append((why is not None, u_ratio, 0, Value(ratio, u_ratio, why)))
    measured = data.mean("generator", gid, "intensity_g_per_kwh")
    if measured is not None and measured >= 0:
        why = data.why_estimated("generator", gid, "intensity_g_per_kwh")
        u = data.u("generator", gid, "intensity_g_per_kwh")
        candidates.append((why is not None, u, 1, Value(measured, u, why)))
    if candidates:
        return min(candidates, key=lambda c: c[:3])[3]
    configured = float(unit.get("intensity_g_per_kwh") or 0.0)
    if configured == 0.0:
        return Value(0.0, 0.0, "declared zero-emission unit", derived=True)
    return Value(configured, 0.0, "configured intensity")


def _bus_injections(injections: list[_Injection]) -> dict[str, tuple[float, float, bool]]:
    """Net injection of every bus into the network (MW), its variance, and whether an estimate is in it."""
    by_bus: dict[str, tuple[float, float, bool]] = {}
    for injection in injections:
        value, variance, estimated = by_bus.get(injection.bus, (0.0, 0.0, False))
        by_bus[injection.bus] = (
            value + injection.sign * injection.p.value,
            variance + injection.p.u**2,
            estimated or injection.p.estimated,
        )
    return by_bus


def _incident_ends(topology: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    incident: dict[str, list[tuple[str, str]]] = {}
    for branch in topology["branches"]:
        incident.setdefault(branch["from_bus"], []).append((branch["id"], "from"))
        incident.setdefault(branch["to_bus"], []).append((branch["id"], "to"))
    return incident


def _branch_ends(
    topology: Mapping[str, Any],
    inputs: _Inputs,
    injections: list[_Injection],
    incident: Mapping[str, list[tuple[str, str]]],
) -> dict[tuple[str, str], Value | None]:
    ids = [branch["id"] for branch in topology["branches"]]
    # counters at a branch end are seen from the bus: export = into the branch
    found = [
        inputs.powers("branch", ids, "export_energy_kwh", "import_energy_kwh", end) for end in ("from", "to")
    ]
    keys = [((bid, "from"), (bid, "to")) for bid in ids]
    ends: dict[tuple[str, str], Value | None] = dict(
        zip(chain.from_iterable(keys), chain.from_iterable(zip(*found)))
    )
    balance = _Balance(incident, ends, _bus_injections(injections))
    while True:
        balance.fill()
        single = balance.single()
        if not single:
            return ends
        for bid, end in single:  # one end known and no balance to close: the lossless estimate
            known = ends[(bid, "to" if end == "from" else "from")]
            assert known is not None
            u = math.hypot(known.u, LOSSLESS_RELATIVE_U * abs(known.value))
            balance.settle((bid, end), Value(-known.value, u, "other end"))


def _fill_injections_by_kcl(
    incident: Mapping[str, list[tuple[str, str]]],
    ends: Mapping[tuple[str, str], Value | None],
    injections: list[_Injection],
) -> None:
    """A generator, load or storage that was not measured is the balance of its bus, when it is the only
    unknown there: derived when every branch end at the bus was measured (or derived from measured
    values), else still a better estimate than holding the previous interval's value."""
    # only the buses with an estimate among their injections have anything to fill (each bus's balance
    # is its own: the others left out, the same values)
    guessed = {injection.bus for injection in injections if injection.p.estimated}
    at_bus: dict[str, list[_Injection]] = {}
    for injection in injections:
        if injection.bus in guessed:
            at_bus.setdefault(injection.bus, []).append(injection)
    for bus, members in at_bus.items():
        unknown = [m for m in members if m.p.estimated]
        branch_values = [ends[key] for key in incident.get(bus, [])]
        if not unknown or len({m.sign for m in unknown}) != 1 or any(v is None for v in branch_values):
            continue
        sent = sum(v.value for v in branch_values)  # type: ignore[union-attr]
        variance = sum(v.u**2 for v in branch_values)  # type: ignore[union-attr]
        for other in members:
            if other not in unknown:
                sent -= other.sign * other.p.value
                variance += other.p.u**2
        exact = len(unknown) == 1 and not any(v.estimated for v in branch_values)  # type: ignore[union-attr]
        # several unknowns of one kind share the balance by their rating (an estimate)
        ratings = [abs(float(m.element.get("p_max_mw") or m.element.get("p_mw") or 1.0)) for m in unknown]
        for member, rating in zip(unknown, ratings):
            share = rating / sum(ratings)
            method = "kcl" if len(unknown) == 1 else "kcl shared by rating"
            member.p = Value(member.sign * sent * share, math.sqrt(variance) * share, method, derived=exact)


def _branch_records(
    topology: Mapping[str, Any], inputs: _Inputs, ends: Mapping[tuple[str, str], Value | None]
) -> list[dict[str, Any]]:
    records = []
    uncertainty_from, uncertainty_to = inputs.uncertainty["branches_from"], inputs.uncertainty["branches_to"]
    held_methods = ("previous interval", "zero")
    for branch in topology["branches"]:
        bid = branch["id"]
        p_from, p_to = ends[(bid, "from")], ends[(bid, "to")]
        if p_from is None or p_to is None:
            p_from = inputs.held("branches_from", bid)
            last_to = inputs.previous.get("branches_to", {}).get(bid)
            p_to = Value(float(last_to) if last_to is not None else -p_from.value, p_from.u)
        # the 'to' end held together with the 'from' end is one estimate, reported once
        if p_from.method in held_methods and p_to.method is None:
            p_to = Value(p_to.value, p_to.u)
        if not (p_from.value >= 0 or p_to.value >= 0):  # (else _reconciled returns them as they are)
            p_from, p_to = _reconciled(p_from, p_to)
        # (what inputs.record does, inline: 10,000 branches at 10,000 buses)
        uncertainty_from[bid] = p_from.u
        if p_from.method is not None:
            inputs.note("branch", bid, "p_from_mw", p_from)
        uncertainty_to[bid] = p_to.u
        if p_to.method is not None:
            inputs.note("branch", bid, "p_to_mw", p_to)
        records.append(
            {
                "id": bid,
                "from_bus": branch["from_bus"],
                "to_bus": branch["to_bus"],
                "p_from_mw": p_from.value,
                "p_to_mw": p_to.value,
                # 1σ of each end: a cascade compares the two ends of a tie within them (cascade/verify.py)
                "u_p_from_mw": round(p_from.u, 6),
                "u_p_to_mw": round(p_to.u, 6),
            }
        )
    return records


def _reconciled(p_from: Value, p_to: Value) -> tuple[Value, Value]:
    """A passive branch cannot deliver power at both ends.  Each end is the mean of its own device's
    samples, taken at other moments: a flow passing through zero during the interval can give two means
    that both deliver.  Where the power they 'create' is within ``RECONCILE_COVERAGE`` combined standard
    uncertainties of the two ends, the branch carries the inverse-variance mean of both, lossless — a
    value derived from the two measurements by the law they broke.  Beyond that two *measured* ends
    stand, and the engine refuses the interval naming the branch (a wrong sign, a swapped CT: a fault to
    see).  An *estimated* end (held from the previous interval, read off its boundary) explains the
    contradiction by itself — a flow that reversed since — so it gives way to a measured other end (lossless,
    reported as an estimate): one late reading never loses a whole island."""
    created = -(p_from.value + p_to.value)
    if p_from.value >= 0 or p_to.value >= 0 or p_from.u <= 0 or p_to.u <= 0:
        return p_from, p_to
    estimated = p_from.estimated or p_to.estimated
    if not estimated and created > RECONCILE_COVERAGE * math.hypot(p_from.u, p_to.u):
        return p_from, p_to
    if p_from.estimated != p_to.estimated:  # the measured end decides
        flow, u = (p_from.value, p_from.u) if p_to.estimated else (-p_to.value, p_to.u)
    else:
        w_from, w_to = p_from.u**-2, p_to.u**-2
        flow = (p_from.value * w_from - p_to.value * w_to) / (w_from + w_to)
        u = (w_from + w_to) ** -0.5
    return Value(flow, u, "reconciled ends", not estimated), Value(-flow, u, "reconciled ends", not estimated)


class _Balance:
    """The branch ends found by the bus balance (KCL): where a bus has exactly one unknown branch end,
    that end's flow is the balance of the bus.  An end belongs to one bus only, so finding it changes
    no other bus: every bus with one unknown is closed once, in one sweep (a worklist, not repeated
    passes over all buses: a 10,000-bus grid unwinds its feeders in many rounds).  The ends found
    are the same, with the same values, whatever the order: each is the balance of final values."""

    def __init__(
        self,
        incident: Mapping[str, list[tuple[str, str]]],
        ends: dict[tuple[str, str], Value | None],
        injections: Mapping[str, tuple[float, float, bool]],
    ) -> None:
        self.incident, self.ends, self.injections = incident, ends, injections
        self.bus_of = {key: bus for bus, keys in incident.items() for key in keys}
        self.unknown = {bus: sum(ends[key] is None for key in keys) for bus, keys in incident.items()}
        self.ready = [bus for bus, count in self.unknown.items() if count == 1]
        self.found = [key for key, value in ends.items() if value is not None]  # since the last single()

    def settle(self, key: tuple[str, str], value: Value) -> None:
        self.ends[key] = value
        self.found.append(key)
        bus = self.bus_of[key]
        self.unknown[bus] -= 1
        if self.unknown[bus] == 1:
            self.ready.append(bus)

    def fill(self) -> None:
        ends = self.ends
        while self.ready:
            bus = self.ready.pop()
            if self.unknown[bus] != 1:
                continue
            branch_ends = self.incident[bus]
            unknown = [key for key in branch_ends if ends[key] is None]
            known = [ends[key] for key in branch_ends if ends[key] is not None]
            injection, variance, guessed = self.injections.get(bus, (0.0, 0.0, False))
            value = injection - sum(v.value for v in known)  # type: ignore[union-attr]
            u = math.sqrt(variance + sum(v.u**2 for v in known))  # type: ignore[union-attr]
            from_estimates = guessed or any(v.estimated for v in known)  # type: ignore[union-attr]
            self.settle(unknown[0], Value(value, u, "kcl", derived=not from_estimates))

    def single(self) -> list[tuple[str, str]]:
        """Unknown ends whose other end is known (found since the last call: every earlier one was
        given its lossless estimate then)."""
        ends, found, self.found = self.ends, self.found, []
        other = {"from": "to", "to": "from"}
        return list(dict.fromkeys(k for bid, end in found if ends[k := (bid, other[end])] is None))

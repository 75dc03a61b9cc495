"""Bind the simulated field devices (``carbonflow.devices``) to the truth, one device-map entry at a time.

The device is built from its entry by :func:`carbonflow.devices.from_map.device_from_entry`, which also
lists the values it will ask for (its inputs, each with the map point that measures it).  The binding
gives each input a value source, through a chain::

    device ─► TrueTimeSource ─► ScenarioSource ─► ElementSource ─► TruthFeed
             (device clock →     (drift, stuck,     (device quantity →
              simulated time)     tamper)            truth point)

Energy and carbon counters are **fed from the truth's own counters**, not integrated from power:
:class:`TruthCounter` replaces a device's :class:`~carbonflow.devices.base.Counter` and shows the
truth counter at that instant (linear inside the interval = the exact integral of the interval's
power), floored to the register's resolution.  Integrating the sampled power (the devices' trapezoidal
rule) would be exact only if a device were read at every interval boundary; the truth counter is exact
whatever the polling.  Electric-carbon registers still accumulate Δenergy × the factor in force inside
the device (the factor most recently downloaded, or the model's default until then).

Units (docs/metering.md §units): a device is fed what its terminals see, in kW for power.  A meter
behind instrument transformers is fed the **secondary** side: every value goes through its map point's
``scale_to_device``, which holds 1/(CT×VT) and the sign of the meter's power; the device itself knows
no ratio (as a DL/T 645 / 698.45 meter shows secondary values and the head end applies the 倍率).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from carbonflow.devices.base import Counter, DeviceClock, DeviceServer, Faults
from carbonflow.devices.camera import SiteCamera
from carbonflow.devices.from_map import POWER, PROTOCOLS, Input, device_from_entry
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.metrology import POSITIVE_ENERGY
from carbonflow.sim.scenarios import CameraFaults, Event, ScenarioClock, ScenarioFaults, ScenarioSource
from carbonflow.sim.truth import ElementSource, PointRef, TruthFeed

GRID_FACTOR_KG_PER_KWH = Decimal("0.5703")  # default of user carbon meters: China grid average 2022 (MEE)
COMPLEMENT = {
    "import_energy_kwh": "export_energy_kwh",
    "export_energy_kwh": "import_energy_kwh",
    "charge_energy_kwh": "discharge_energy_kwh",
    "discharge_energy_kwh": "charge_energy_kwh",
}
KW_PER_DEVICE_UNIT = {"kW": 1.0, "W": 0.001, "MW": 1000.0}  # a power point's unit -> the kW devices take


class TruthCounter(Counter):
    """A register that shows a counter of the source (the truth's integral) floored to its resolution.

    ``add`` (a reset by command, a tariff split) shifts it; it never runs backwards except by roll-over —
    and except when a ``tamper`` event ends: what the tampering added is shown on top of the register
    (the source's ``shift``), not counted into it, so the register shows its true value again after.
    """

    def __init__(
        self,
        source,
        quantity: str,
        resolution: Decimal | str = "0.01",
        rollover: Decimal | str | None = None,
        start: Decimal | str = "0",
    ) -> None:
        super().__init__(lambda t: 0.0, start, resolution, rollover)
        self.source, self.quantity = source, quantity
        self.offset = Decimal(start)
        self._total = Decimal(start)  # before roll-over

    def advance(self, t: datetime) -> None:
        reading = self.source.read(self.quantity, t)
        if not math.isfinite(reading):
            raise ValueError(f"counter {self.quantity}: no finite value")
        shift = self.source.shift(self.quantity, t) if hasattr(self.source, "shift") else 0.0
        tampered = Decimal(repr(shift)) if shift else Decimal(0)
        self._total = max(self._total, Decimal(repr(reading)) - tampered + self.offset)
        self.show(self._total + tampered, t)

    def add(self, amount: Decimal) -> None:
        self.offset += amount
        self._total += amount
        super().add(amount)


class TrueTimeSource:
    """For devices that read their source at their own clock's time (``reads_at_true_time`` False: 645,
    104, Modbus, cameras): map that time back to simulated true time, so a skewed clock mislabels
    values instead of changing them."""

    def __init__(self, inner, clock: DeviceClock) -> None:
        self.inner, self.clock = inner, clock

    def read(self, quantity: str, t: datetime) -> float:
        return self.inner.read(quantity, self._true(t))

    def shift(self, quantity: str, t: datetime) -> float:
        return self.inner.shift(quantity, self._true(t))

    def _true(self, t: datetime) -> datetime:
        return t - (self.clock.now() - self.clock.now_fn())


@dataclass
class SimulatedDevice:
    """One device of the map, built and bound; ``server`` is the device object (a gateway member for
    Modbus), ``source`` the head of its value-source chain."""

    entry: dict[str, Any]
    server: DeviceServer
    source: Any
    chain: ScenarioSource
    events: list[Event] = field(default_factory=list)

    def prime(self, t: datetime) -> None:
        """Fix the scenario baselines of events started by ``t`` (see ScenarioSource.prime)."""
        if self.events:
            self.chain.prime(t, self.chain.inner.bindings)

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    @property
    def protocol(self) -> str:
        return str(self.entry["protocol"])

    def address_text(self) -> str:
        address = self.entry.get("address") or {}
        return ", ".join(f"{k} {v}" for k, v in address.items())


def _zero(counter: Counter) -> Counter:
    """A register of the same format that stays at zero."""
    return Counter(lambda t: 0.0, "0", counter.resolution, counter.rollover)


def _ref(point: Mapping[str, Any]) -> PointRef:
    return PointRef.from_point(point)


def _validate(feed: TruthFeed, device_id: str, refs: Mapping[str, PointRef]) -> None:
    truth = feed.latest
    for name, ref in refs.items():
        try:
            truth.value(ref.element_kind, ref.element_id, ref.quantity, ref.end)
        except KeyError as error:
            raise SimulationError(f"device {device_id}: {name}: {error.args[0]}") from None


def _complement(feed: TruthFeed, ref: PointRef) -> PointRef | None:
    other = COMPLEMENT.get(ref.quantity)
    if other is None:
        return None
    candidate = PointRef(ref.element_kind, ref.element_id, other, ref.end, ref.scale)
    try:
        feed.latest.value(candidate.element_kind, candidate.element_id, other, candidate.end)
    except KeyError:
        return None
    return candidate


def _aliases(name: str, point: Mapping[str, Any] | None, ref: PointRef) -> set[str]:
    """The names a scenario event's ``point`` may use for this input."""
    names = {name, ref.quantity}
    if point is not None:
        names.add(str(point.get("id", "")))
    return names


class DeviceFactory:
    """Builds :class:`SimulatedDevice` objects for device-map entries, all reading one truth feed on one
    simulated clock (``now_fn``), with the scenario's events applied."""

    def __init__(self, feed: TruthFeed, now_fn: Callable[[], datetime], scenario=None) -> None:
        self.feed, self.now_fn, self.scenario = feed, now_fn, scenario

    def build(self, entry: dict[str, Any]) -> SimulatedDevice:
        protocol = entry.get("protocol")
        if str(protocol) not in PROTOCOLS:
            raise SimulationError(f"device {entry.get('id')}: protocol {protocol!r} cannot be simulated")
        events = self.scenario.for_device(str(entry["id"])) if self.scenario is not None else []
        try:
            return self._bind(entry, events)
        except (KeyError, ValueError, TypeError) as error:  # ProtocolError is a ValueError
            if isinstance(error, SimulationError):
                raise
            raise SimulationError(f"device {entry.get('id')}: bad device-map entry: {error}") from None

    def _bind(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        device_id = str(entry["id"])
        mapped = device_from_entry(entry, lambda: self._initial_factor(entry))
        server = mapped.server
        refs: dict[str, PointRef] = {}
        aliases: dict[str, set[str]] = {}
        counters = []
        for item in mapped.inputs:
            ref = self.ref_of(item)
            if ref is None:
                continue
            refs[item.name] = ref
            aliases[item.name] = _aliases(item.name, item.point, ref)
            if item.counter:
                counters.append(item.name)
        _validate(self.feed, device_id, refs)
        chain = ScenarioSource(ElementSource(self.feed, refs), events, aliases, counters)
        clock = ScenarioClock(self.now_fn, events)
        source = chain if server.reads_at_true_time else TrueTimeSource(chain, clock)
        server.bind(source, clock)
        server.inject(self._faults(server, events))
        server.bind_counters(
            {
                # a counter the map does not measure stays at zero (no integration of power)
                name: TruthCounter(source, name, old.resolution, old.rollover) if name in refs else _zero(old)
                for name, old in server.counter_registers().items()
            }
        )
        return SimulatedDevice(entry, server, source, chain, events)

    def ref_of(self, item: Input) -> PointRef | None:
        """The truth point an input reads: its map point, else the complement of its opposite, else
        the power of the element its energy point measures.  Power is fed in kW as the device sees it:
        the point's scale converted from its unit to kW (CT×VT and sign kept)."""
        if item.point is not None:
            ref = _ref(item.point)
            if item.name == POWER:
                unit = str(item.point.get("unit") or "kW")
                if unit not in KW_PER_DEVICE_UNIT:
                    raise SimulationError(f"power point {item.point.get('id')}: unit {unit!r} is not a power")
                scale = ref.scale * KW_PER_DEVICE_UNIT[unit]
                return PointRef(ref.element_kind, ref.element_id, ref.quantity, ref.end, scale)
            return ref
        if item.opposite is not None:
            return _complement(self.feed, _ref(item.opposite))
        if item.power_of is not None:  # kWh/h = kW, positive in the direction of the forward register
            energy = _ref(item.power_of)
            along = energy.quantity == POSITIVE_ENERGY.get(energy.element_kind)
            sign = (1.0 if along else -1.0) * (-1.0 if item.power_on_reverse else 1.0)
            return PointRef(
                energy.element_kind, energy.element_id, "p_mw", energy.end, sign * energy.scale * 1000
            )
        return None

    def _faults(self, server: DeviceServer, events: list[Event]) -> Faults:
        if isinstance(server, SiteCamera):
            return CameraFaults(self.now_fn, events, self.scenario, server.name)
        return ScenarioFaults(self.now_fn, events)

    def _initial_factor(self, entry: dict[str, Any]) -> Decimal | None:
        """kgCO2/kWh before any download: a plant unit's own intensity, a user's the grid average."""
        if entry.get("kind") != "carbon_meter":
            return None
        for point in entry.get("points", []):
            if point.get("element_kind") == "generator" and point.get("quantity") == "intensity_g_per_kwh":
                grams = self.feed.latest.value("generator", point["element_id"], "intensity_g_per_kwh")
                return (Decimal(repr(grams)) / 1000).quantize(Decimal("0.0001"))
        return GRID_FACTOR_KG_PER_KWH

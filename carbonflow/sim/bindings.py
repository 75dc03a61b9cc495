"""Bind the simulated field devices (``carbonflow.devices``) to the truth, one device-map entry at a time.

Each device reads its physical values from a chain of value sources::

    device ─► TrueTimeSource ─► DerivedSource ─► ScenarioSource ─► ElementSource ─► TruthFeed
             (device clock →     (Modbus only:     (drift, stuck,     (device quantity →
              simulated time)     U/I/pf/f)         tamper)            truth point)

Energy and carbon counters are **fed from the truth's own counters**, not integrated from power:
:class:`TruthCounter` replaces a device's :class:`~carbonflow.devices.base.Counter` and shows the
truth counter at that instant (linear inside the interval = the exact integral of the interval's
power), floored to the register's resolution.  Integrating the sampled power (the devices' trapezoidal
rule) would be exact only if a device were read at every interval boundary; the truth counter is exact
whatever the polling.  Electric-carbon registers still accumulate Δenergy × the factor in force inside
the device (the factor most recently downloaded, or the model's default until then).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from carbonflow.devices.base import Connection, Counter, DeviceClock, DeviceServer, Faults
from carbonflow.devices.carbon_meter import CarbonRegister
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.devices.dlt698_meter import DAR_RANGE, Dlt698Meter, MeterModel
from carbonflow.devices.iec104_rtu import Iec104Rtu, PointSpec
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.protocols.dlt698.axdr import encode_data
from carbonflow.protocols.dlt698.objects import carbon_unit_scale
from carbonflow.protocols.dlt698.types import Data, Oad
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus import frame as mb
from carbonflow.protocols.modbus.registers import builtin_map
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.scenarios import Event, ScenarioClock, ScenarioFaults, ScenarioSource
from carbonflow.sim.truth import ElementSource, PointRef, TruthFeed

GRID_FACTOR_KG_PER_KWH = Decimal("0.5703")  # default of user carbon meters: China grid average 2022 (MEE)
GATEWAY_PATH_UNAVAILABLE, GATEWAY_TARGET_FAILED = 0x0A, 0x0B
COMPLEMENT = {
    "import_energy_kwh": "export_energy_kwh",
    "export_energy_kwh": "import_energy_kwh",
    "charge_energy_kwh": "discharge_energy_kwh",
    "discharge_energy_kwh": "charge_energy_kwh",
}
FORWARD, REVERSE = "energy_forward_kwh", "energy_reverse_kwh"
ROLLOVER_698_KWH = Decimal(2**32) * Decimal("0.01")  # double-long-unsigned energy at 0.01 kWh wraps here


class TruthCounter(Counter):
    """A register that shows a counter of the source (the truth's integral) floored to its resolution.

    ``add`` (a reset by command, a tariff split) shifts it; it never runs backwards except by roll-over.
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
        self._total = max(self._total, Decimal(repr(reading)) + self.offset)
        self._exact = self._total % self.rollover if self.rollover is not None else self._total
        self._last_t = t

    def add(self, amount: Decimal) -> None:
        self.offset += amount
        self._total += amount
        self._exact += amount


class TrueTimeSource:
    """For devices that read their source at their own clock's time (645, 104, Modbus): map that time
    back to simulated true time, so a skewed clock mislabels values instead of changing them."""

    def __init__(self, inner, clock: DeviceClock) -> None:
        self.inner, self.clock = inner, clock

    def read(self, quantity: str, t: datetime) -> float:
        return self.inner.read(quantity, t - (self.clock.now() - self.clock.now_fn()))


class DerivedSource:
    """What a three-phase meter shows besides the mapped P, Q and U: per-phase voltages, currents,
    power factor and frequency, derived from them (balanced phases, 50 Hz)."""

    def __init__(self, inner, f_hz: float = 50.0) -> None:
        self.inner, self.f_hz = inner, f_hz

    def _try(self, quantity: str, t: datetime) -> float | None:
        try:
            return self.inner.read(quantity, t)
        except KeyError:
            return None

    def read(self, quantity: str, t: datetime) -> float:
        value = self._try(quantity, t)
        if value is not None:
            return value
        if quantity in ("u_v", "u_b_v", "u_c_v"):
            return self.inner.read("u_a_v", t)
        p = self.inner.read("p_kw", t)
        q = self._try("q_kvar", t) or 0.0
        s_kva = math.hypot(p, q)
        if quantity in ("i_a", "i_a_a", "i_b_a", "i_c_a"):
            u = self.read("u_a_v", t)
            return s_kva * 1000.0 / (3.0 * u) if u else 0.0
        if quantity == "pf":
            return abs(p) / s_kva if s_kva else 1.0
        if quantity in ("f_hz", "frequency_hz"):
            return self.f_hz
        raise KeyError(f"no value for quantity {quantity!r}")


class ModbusGateway(DeviceServer):
    """A Modbus TCP gateway: one port, several meters by unit id (each with its own faults and clock).

    A unit that is offline or silent gets exception 0Bh (gateway target failed to respond), an unknown
    unit 0Ah (gateway path unavailable), as gateways answer.
    """

    protocol = "modbus-tcp"

    def __init__(self, name: str, units: Mapping[int, ModbusMeter], faults: Faults | None = None) -> None:
        super().__init__(name, faults)
        self.units = dict(units)

    def split_frames(self, buffer: bytearray) -> list[bytes]:
        return ModbusMeter.split_frames(self, buffer)  # type: ignore[arg-type]

    def corrupt_checksum(self, frame: bytes) -> bytes:
        return frame[:2] + b"\xde\xad" + frame[4:]

    async def handle(self, frame: bytes, connection: Connection) -> bytes | None:
        try:
            request = mb.split_adu(frame)
        except ProtocolError:
            return None
        meter = self.units.get(request.unit)
        if meter is None and len(self.units) == 1 and request.unit in (0, 0xFF):
            meter = next(iter(self.units.values()))
        if meter is None:
            return mb.exception_response(request, GATEWAY_PATH_UNAVAILABLE)
        faults = meter.faults
        if faults.offline or faults.silent:
            return mb.exception_response(request, GATEWAY_TARGET_FAILED)
        reply = await meter.handle(bytes(frame[:6]) + bytes([meter.unit_id]) + bytes(frame[7:]), connection)
        meter.requests_served += 1
        if reply is None:
            return None
        reply = reply[:6] + bytes([request.unit]) + reply[7:]
        if faults.garbage:
            return meter._random.randbytes(len(reply))
        return self.corrupt_checksum(reply) if faults.bad_checksum else reply


class SimDlt698Meter(Dlt698Meter):
    """A :class:`Dlt698Meter` that answers DAR 8 (out of range) for a value its data type cannot hold
    (e.g. active power of a unit above 214 MW as double-long in 0.1 W) instead of dropping the link."""

    def read_attribute(self, oad: Oad, now: datetime) -> tuple[Data | None, int]:
        data, dar = super().read_attribute(oad, now)
        if data is not None:
            try:
                encode_data(data)
            except ProtocolError:
                return None, DAR_RANGE
        return data, dar


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


def _by_address(points: Iterable[Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    return {str((p.get("address") or {}).get(key, "")).upper(): p for p in points}


def _power_ref(point: Mapping[str, Any] | None, energy: Mapping[str, Any] | None) -> PointRef | None:
    if point is not None:  # the device's own power unit is its business: the meter is fed in kW
        ref = _ref(point)
        return PointRef(ref.element_kind, ref.element_id, ref.quantity, ref.end, 1000.0)
    if energy is None:
        return None
    ref = _ref(energy)
    return PointRef(ref.element_kind, ref.element_id, "p_mw", ref.end, 1000.0)


class DeviceFactory:
    """Builds :class:`SimulatedDevice` objects for device-map entries, all reading one truth feed on one
    simulated clock (``now_fn``), with the scenario's events applied."""

    def __init__(self, feed: TruthFeed, now_fn: Callable[[], datetime], scenario=None) -> None:
        self.feed, self.now_fn, self.scenario = feed, now_fn, scenario

    def build(self, entry: dict[str, Any]) -> SimulatedDevice:
        protocol = entry.get("protocol")
        builder = {
            "iec104": self._iec104,
            "dlt645": self._dlt645,
            "dlt698": self._dlt698,
            "modbus-tcp": self._modbus,
            "camera-http": self._camera,
        }.get(str(protocol))
        if builder is None:
            raise SimulationError(f"device {entry.get('id')}: protocol {protocol!r} cannot be simulated")
        events = self.scenario.for_device(str(entry["id"])) if self.scenario is not None else []
        try:
            return builder(entry, events)
        except (KeyError, ValueError, TypeError, ProtocolError) as error:
            if isinstance(error, SimulationError):
                raise
            raise SimulationError(f"device {entry.get('id')}: bad device-map entry: {error}") from None

    def _camera(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        from carbonflow.sim.cameras import build_camera  # a site camera (carbonflow.sim.cameras)

        return build_camera(self, entry, events)

    def _chain(
        self,
        device_id: str,
        refs: dict[str, PointRef],
        aliases: dict[str, set[str]],
        counters: Iterable[str],
        events: list[Event],
    ) -> ScenarioSource:
        _validate(self.feed, device_id, refs)
        element = ElementSource(self.feed, refs)
        return ScenarioSource(element, events, aliases, counters)

    @staticmethod
    def _aliases(name: str, point: Mapping[str, Any] | None, ref: PointRef) -> set[str]:
        names = {name, ref.quantity}
        if point is not None:
            names.add(str(point.get("id", "")))
        return names

    def _iec104(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        device_id, points = str(entry["id"]), entry.get("points", [])
        refs, aliases, specs, counter_names = {}, {}, [], []
        for point in points:
            name, address = str(point["id"]), point["address"]
            refs[name] = _ref(point)
            aliases[name] = self._aliases(name, point, refs[name])
            spec = PointSpec(int(address["ioa"]), str(address["type"]), name, str(point.get("unit", "")))
            specs.append(spec)
            if spec.is_counter:
                counter_names.append(name)
        clock = ScenarioClock(self.now_fn, events)
        chain = self._chain(device_id, refs, aliases, counter_names, events)
        source = TrueTimeSource(chain, clock)
        counters = {name: TruthCounter(source, name, resolution="1") for name in counter_names}
        rtu = Iec104Rtu(
            device_id,
            specs,
            source,
            counters,
            int((entry.get("address") or {}).get("common_address", 1)),
            faults=ScenarioFaults(self.now_fn, events),
            clock=clock,
        )
        return SimulatedDevice(entry, rtu, source, chain, events)

    def _meter_refs(self, entry: dict[str, Any], key: str, forward: str, reverse: str, power: str):
        points = _by_address(entry.get("points", []), key)
        forward_point, reverse_point = points.get(forward), points.get(reverse)
        refs: dict[str, PointRef] = {}
        aliases: dict[str, set[str]] = {}
        counters = []
        if forward_point is not None:
            refs[FORWARD] = _ref(forward_point)
        elif reverse_point is not None and (other := _complement(self.feed, _ref(reverse_point))):
            refs[FORWARD] = other
        if reverse_point is not None:
            refs[REVERSE] = _ref(reverse_point)
        elif forward_point is not None and (other := _complement(self.feed, _ref(forward_point))):
            refs[REVERSE] = other
        for name, point in ((FORWARD, forward_point), (REVERSE, reverse_point)):
            if name in refs:
                counters.append(name)
                aliases[name] = self._aliases(name, point, refs[name])
        power_ref = _power_ref(points.get(power), forward_point or reverse_point)
        if power_ref is not None:
            refs["p_kw"] = power_ref
            aliases["p_kw"] = self._aliases("p_kw", points.get(power), power_ref)
        return refs, aliases, counters, points

    def _dlt645(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        device_id = str(entry["id"])
        refs, aliases, counters, _points = self._meter_refs(entry, "di", "00010000", "00020000", "02030000")
        clock = ScenarioClock(self.now_fn, events)
        chain = self._chain(device_id, refs, aliases, counters, events)
        source = TrueTimeSource(chain, clock)
        address = str((entry.get("address") or {})["address"])
        meter = Dlt645Meter(
            device_id, address, source, faults=ScenarioFaults(self.now_fn, events), clock=clock
        )
        for name, attribute in ((FORWARD, "forward"), (REVERSE, "reverse")):
            old: Counter = getattr(meter, attribute)
            if name in refs:
                setattr(meter, attribute, TruthCounter(source, name, old.resolution, old.rollover))
            else:  # a direction the map does not measure stays at zero (no integration of power)
                setattr(meter, attribute, _zero(old))
        return SimulatedDevice(entry, meter, source, chain, events)

    def _initial_factor(self, entry: dict[str, Any]) -> Decimal | None:
        """kgCO2/kWh before any download: a plant unit's own intensity, a user's the grid average."""
        if entry.get("kind") != "carbon_meter":
            return None
        for point in entry.get("points", []):
            if point.get("element_kind") == "generator" and point.get("quantity") == "intensity_g_per_kwh":
                grams = self.feed.latest.value("generator", point["element_id"], "intensity_g_per_kwh")
                return (Decimal(repr(grams)) / 1000).quantize(Decimal("0.0001"))
        return GRID_FACTOR_KG_PER_KWH

    def _dlt698(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        device_id = str(entry["id"])
        refs, aliases, counters, _points = self._meter_refs(entry, "oad", "00100200", "00200200", "20040200")
        source = chain = self._chain(device_id, refs, aliases, counters, events)  # 698 reads at true time
        model = MeterModel(name=str(entry.get("model", "")), initial_factor=self._initial_factor(entry))
        meter = SimDlt698Meter(
            device_id,
            str((entry.get("address") or {})["sa"]),
            source,
            model,
            faults=ScenarioFaults(self.now_fn, events),
            clock=ScenarioClock(self.now_fn, events),
        )
        carbon = model.carbon
        for name, energy, register, item in (
            (FORWARD, "forward_energy", "forward_carbon", carbon.forward),
            (REVERSE, "reverse_energy", "reverse_carbon", carbon.reverse),
        ):
            if name in refs:
                counter: Counter = TruthCounter(source, name, model.energy_resolution, ROLLOVER_698_KWH)
            else:
                counter = _zero(getattr(meter, energy))
            setattr(meter, energy, counter)
            setattr(
                meter,
                register,
                CarbonRegister(
                    counter.value,
                    Decimal(1).scaleb(item.scaler),
                    model.initial_factor,
                    carbon_unit_scale(item.unit, carbon.factor.unit),
                ),
            )
        meter.advance()  # the carbon registers count from now (the start), as the energy registers do
        return SimulatedDevice(entry, meter, source, chain, events)

    def _modbus(self, entry: dict[str, Any], events: list[Event]) -> SimulatedDevice:
        device_id = str(entry["id"])
        register_map = builtin_map(str(entry.get("model") or "cf-3ph-meter"))
        refs: dict[str, PointRef] = {}
        aliases: dict[str, set[str]] = {}
        for point in entry.get("points", []):
            name = str(point["address"]["register"])
            register_map.point(name)  # an unknown register raises here
            refs[name] = _ref(point)
            aliases[name] = self._aliases(name, point, refs[name])
        counter_points = [p for p in register_map.points if p.kind == "counter"]
        bound = [p for p in counter_points if p.name in refs]
        for point in counter_points:  # the opposite direction of a mapped counter: its complement
            if point.name not in refs and bound and (other := _complement(self.feed, refs[bound[0].name])):
                refs[point.name] = other
                aliases[point.name] = {point.name, other.quantity}
        counters = [p.name for p in counter_points if p.name in refs]
        clock = ScenarioClock(self.now_fn, events)
        chain = self._chain(device_id, refs, aliases, counters, events)
        source = TrueTimeSource(DerivedSource(chain), clock)
        meter = ModbusMeter(
            device_id,
            register_map,
            source,
            int((entry.get("address") or {}).get("unit_id", 1)),
            faults=ScenarioFaults(self.now_fn, events),
            clock=clock,
        )
        for point in counter_points:
            if point.name in refs:
                meter.counters[point.name] = TruthCounter(source, point.name, point.scale)
            else:
                meter.counters[point.name] = _zero(meter.counters[point.name])
        return SimulatedDevice(entry, meter, source, chain, events)


def floor_to(value: Decimal | float, resolution: Decimal | str) -> Decimal:
    """A value as a register of ``resolution`` shows it (floored)."""
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return number.quantize(Decimal(resolution), rounding=ROUND_FLOOR)

"""Simulated devices built from device-map entries: the device, and the values it asks its source for.

A device-map entry (``carbonflow sim grid --device-map``) gives a device's protocol, address and points
in the protocol's own terms: a DL/T 645 DI, a DL/T 698.45 OAD, a Modbus register, an IEC 104 IOA and
type, a camera's views.  :func:`device_from_entry` reads those terms, builds the device with no value
source yet and lists its :class:`Input` s: each value the device will ask its source for, by the
device's own name, with the map point that measures it.  Whoever binds the device supplies the values
through the calls every device offers (:class:`~carbonflow.devices.base.DeviceServer`: ``bind``,
``bind_counters``, ``inject``, ``start``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from carbonflow.devices.base import FORWARD_ENERGY, REVERSE_ENERGY, Counter, DeviceServer, StaticSource
from carbonflow.devices.camera import CameraView, SiteCamera
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.devices.dlt698_meter import Dlt698Meter, MeterModel
from carbonflow.devices.iec104_rtu import Iec104Rtu, PointSpec
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.protocols.modbus.registers import builtin_map

POWER = "p_kw"
DEFAULT_MODBUS_MODEL = "cf-3ph-meter"
# per meter protocol: the address key of a point, then the addresses of forward energy, reverse energy
# and active power (a DL/T 698.45 energy register read at 0.01 kWh, attribute 2, or 0.0001 kWh, 4)
METER_POINTS = {
    "dlt645": ("di", ("00010000",), ("00020000",), ("02030000",)),
    "dlt698": ("oad", ("00100200", "00100400"), ("00200200", "00200400"), ("20040200",)),
}
SECONDARY_PHASE_V = 100.0 / 3**0.5  # a meter behind a VT sees 100 V between phases

Point = Mapping[str, Any]
FactorFn = Callable[[], Decimal | None]


@dataclass(frozen=True)
class Input:
    """One value a device asks its source for, by the device's own name.

    ``point`` is the map point that measures it; without one, ``opposite`` names a point whose
    opposite direction this counter counts (a meter's reverse register when the map gives the forward
    one), and ``power_of`` an energy point whose element's active power this is.
    """

    name: str
    point: Point | None = None
    counter: bool = False
    opposite: Point | None = None
    power_of: Point | None = None
    power_on_reverse: bool = False  # ``power_of`` is on the reverse register: power counts it negative


@dataclass
class MappedDevice:
    server: DeviceServer
    inputs: list[Input]


def _address(entry: Point) -> Mapping[str, Any]:
    return entry.get("address") or {}


def _by_address(points: Iterable[Point], key: str) -> dict[str, Point]:
    return {str((p.get("address") or {}).get(key, "")).upper(): p for p in points}


def _meter_inputs(entry: Point) -> list[Input]:
    key, forward, reverse, power = METER_POINTS[str(entry["protocol"])]
    points = _by_address(entry.get("points", []), key)

    def first(addresses: tuple[str, ...]) -> Point | None:
        return next((points[a] for a in addresses if a in points), None)

    forward_point, reverse_point = first(forward), first(reverse)
    return [
        Input(FORWARD_ENERGY, forward_point, True, opposite=None if forward_point else reverse_point),
        Input(REVERSE_ENERGY, reverse_point, True, opposite=None if reverse_point else forward_point),
        Input(
            POWER,
            first(power),
            power_of=forward_point or reverse_point,
            power_on_reverse=forward_point is None and reverse_point is not None,
        ),
    ]


def _dlt645(entry: Point, initial_factor: FactorFn) -> MappedDevice:
    # behind a VT the meter sees secondary voltage (its source gives secondary power: see sim.bindings)
    nominal_v = SECONDARY_PHASE_V if entry.get("vt_ratio") else 220.0
    meter = Dlt645Meter(
        str(entry["id"]),
        str(_address(entry)["address"]),
        nominal_v=nominal_v,
        freeze_period_s=entry.get("freeze_period_s"),
    )
    return MappedDevice(meter, _meter_inputs(entry))


def _dlt698(entry: Point, initial_factor: FactorFn) -> MappedDevice:
    model = MeterModel(name=str(entry.get("model", "")), initial_factor=initial_factor())
    meter = Dlt698Meter(
        str(entry["id"]),
        str(_address(entry)["sa"]),
        model=model,
        freeze_period_s=entry.get("freeze_period_s"),
    )
    return MappedDevice(meter, _meter_inputs(entry))


def _modbus(entry: Point, initial_factor: FactorFn) -> MappedDevice:
    register_map = builtin_map(str(entry.get("model") or DEFAULT_MODBUS_MODEL))
    inputs = []
    for point in entry.get("points", []):
        register = register_map.point(str(point["address"]["register"]))  # an unknown register raises
        inputs.append(Input(register.name, point, register.kind == "counter"))
    mapped = {i.name: i for i in inputs}
    counters = [p.name for p in register_map.points if p.kind == "counter"]
    bound = [mapped[name] for name in counters if name in mapped]
    for name in counters:  # a counter the map leaves out counts the opposite of the first mapped one
        if name not in mapped and bound:
            inputs.append(Input(name, None, True, opposite=bound[0].point))
    unit_id = int(_address(entry).get("unit_id", 1))
    freeze_period_s = entry.get("freeze_period_s")
    meter = ModbusMeter(
        str(entry["id"]), register_map, unit_id=unit_id, derive_phases=True, freeze_period_s=freeze_period_s
    )
    return MappedDevice(meter, inputs)


def _iec104(entry: Point, initial_factor: FactorFn) -> MappedDevice:
    specs, inputs = [], []
    for point in entry.get("points", []):
        name, address = str(point["id"]), point["address"]
        spec = PointSpec(int(address["ioa"]), str(address["type"]), name, str(point.get("unit", "")))
        specs.append(spec)
        inputs.append(Input(name, point, spec.is_counter))
    # integrated totals count whole units until a binding gives them a source
    counters = {i.name: Counter(lambda t: 0.0, resolution="1") for i in inputs if i.counter}
    common_address = int(_address(entry).get("common_address", 1))
    freeze_period_s = entry.get("freeze_period_s")
    rtu = Iec104Rtu(
        str(entry["id"]),
        specs,
        StaticSource(),
        counters,
        common_address,
        freeze_period_s=freeze_period_s,
        background_s=entry.get("background_s"),
    )
    return MappedDevice(rtu, inputs)


def _camera(entry: Point, initial_factor: FactorFn) -> MappedDevice:
    inputs, views = [], []
    for view in entry.get("views", []):
        unit = str(view["unit"])
        names = {}
        for role in ("power", "energy"):
            if view.get(role):
                names[role] = f"{unit}/{view[role]['quantity']}"
                inputs.append(Input(names[role], view[role]))
        views.append(CameraView(unit, names.get("power"), names.get("energy")))
    device_id = str(entry["id"])
    camera = SiteCamera(
        device_id,
        views,
        title=str(entry.get("title") or entry.get("bus") or device_id),
        path=str(_address(entry).get("path", "/snapshot.png")),
    )
    return MappedDevice(camera, inputs)


BUILDERS: dict[str, Callable[[Point, FactorFn], MappedDevice]] = {
    "iec104": _iec104,
    "dlt645": _dlt645,
    "dlt698": _dlt698,
    "modbus-tcp": _modbus,
    "camera-http": _camera,
}
PROTOCOLS = tuple(BUILDERS)


def device_from_entry(entry: Point, initial_factor: FactorFn = lambda: None) -> MappedDevice:
    """The device of a device-map entry and its inputs.  ``initial_factor`` gives an electric-carbon
    meter's factor (kgCO2/kWh) in force before any download; it is asked only by meters that keep one.
    A bad entry raises KeyError, ValueError (ProtocolError among them) or TypeError."""
    protocol = str(entry.get("protocol"))
    if protocol not in BUILDERS:
        raise ValueError(f"protocol {protocol!r} cannot be simulated")
    return BUILDERS[protocol](entry, initial_factor)

"""The device map and the grid document of a simulated grid (models in :mod:`carbonflow.messages`).

The device map says which simulated field device measures what.  Generated from a grid's tables;
the collector configuration is generated from it and the simulator binds each device's quantities
to the truth through it (``PointRef.from_point``).  No device code here.

Devices (``kind``):

* ``plant_rtu`` — one IEC 60870-5-104 RTU per plant (common address = plant number): per unit output
  MW and MVAr, unit carbon factor g/kWh (``M_ME_NC_1``, IOA from 16385), on-grid energy kWh and unit carbon
  kg (integrated totals ``M_IT_NA_1``, IOA from 25601), plant busbar voltage and P/Q of the plant's
  outgoing branch ends;
* ``carbon_meter`` at each plant unit's outlet — DL/T 698.45 electric-carbon meter: reverse (on-grid)
  energy ``00200200``, active power ``20040200``, reverse carbon ``20900200``, carbon factor ``41200200``
  (the carbon OADs are the pilot project's, see reference/protocols.md §7);
* ``substation_rtu`` — IEC 104 RTU per 500/220/110 kV substation busbar (common address 100 + number):
  P/Q of every branch end at the busbar, busbar voltage, the area load it feeds (P/Q);
  35 kV busbars use Modbus TCP instead: one ``cf-3ph-meter`` per circuit (unit id) behind one gateway;
* per user: an energy meter (DL/T 698.45 at 110 kV, DL/T 645-2007 below) for the consumption, an
  electric-carbon meter (DL/T 698.45: energy, carbon, the factor it is given); a PV meter (645) for rooftop
  PV, a storage meter (645) for a battery, and a DL/T 698.45 gateway meter at the supply branch end of
  users that can export.

Every point maps to ``(element_kind, element_id, quantity, end)`` (DESIGN §4a, quantities of
:mod:`carbonflow.sim.truth`) plus ``scale_to_device`` (truth unit → the device's unit).  Endpoints are
placeholders (``127.0.0.1``, one port per device or gateway) that ``sim serve`` replaces.

Metrology (docs/metering.md §units): every DL/T 645 / 698.45 meter sits on a 10 kV or higher bus, so
behind a voltage transformer (``vt_ratio`` = kV/100 V) and a current transformer sized to its element
(``ct_ratio`` = the next standard primary current above the element's rated current / 5 A); its
energy, power and carbon points show the secondary side (``secondary``, ``scale_to_device`` including
1/(CT×VT)).  RTUs report engineering (primary) values, and the Modbus multifunction meters have their
CT/VT programmed and show primary values.  Power is signed the way each meter counts: positive in the
direction of its forward (正向) register (:func:`power_sign`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandapower as pp

from carbonflow.messages.device_map import SCHEMA_VERSION as DEVICE_MAP_VERSION
from carbonflow.messages.device_map import DeviceMap
from carbonflow.sim.grid_document import grid_document, grid_of  # noqa: F401 - callers take both from here
from carbonflow.sim.metrology import (
    LOAD_PEAK_MARGIN,
    RESOLUTION,
    RTU_CLASS,
    Metering,
    branch_rated_mw,
    metering_at,
    power_sign,
    rated_mw,
)
from carbonflow.sim.simulation import element_ids

BACKGROUND_SCAN_S = 300.0  # an RTU's background scan without a metering interval to follow
PORTS = {"iec104": 24040, "dlt645": 26450, "dlt698": 26980, "modbus-tcp": 15020}
IOA_TELEMETRY, IOA_TOTALS = 16385, 25601


def _point(
    element_kind: str,
    element_id: str,
    quantity: str,
    end: str = "-",
    *,
    unit: str,
    scale: float = 1.0,
    resolution: str | None = None,
    secondary: bool | None = None,
    frozen: bool | None = None,
    **address: Any,
) -> dict[str, Any]:
    point: dict[str, Any] = {
        "address": address,
        "element_kind": element_kind,
        "element_id": element_id,
        "quantity": quantity,
        "end": end,
        "unit": unit,
        "scale_to_device": scale,
    }
    extra = {"secondary": secondary, "resolution": resolution, "frozen": frozen}
    point.update({k: v for k, v in extra.items() if v is not None})
    return point


class _Map:
    def __init__(self, host: str, freeze_period_s: int | None = None) -> None:
        self.host = host
        self.freeze_period_s = freeze_period_s
        self.devices: list[dict[str, Any]] = []
        self.next_port = dict(PORTS)
        self.meter_number = {"dlt645": 0, "dlt698": 0}

    def port(self, protocol: str) -> int:
        port = self.next_port[protocol]
        self.next_port[protocol] += 1
        return port

    def meter_address(self, protocol: str) -> str:
        self.meter_number[protocol] += 1
        prefix = "1101" if protocol == "dlt645" else "2201"
        return f"{prefix}{self.meter_number[protocol]:08d}"

    def add(
        self,
        device_id: str,
        kind: str,
        protocol: str,
        bus: dict[str, Any],
        address: dict[str, Any],
        points: list[dict[str, Any]],
        model: str,
        port: int | None = None,
        metering: Metering | dict[str, Any] | None = None,
    ) -> None:
        for k, point in enumerate(points):
            point["id"] = f"{device_id}/{k + 1}"
        device = {
            "id": device_id,
            "kind": kind,
            "protocol": protocol,
            "model": model,
            "bus": bus["id"],
            "region": bus["region"],
            "endpoint": {"host": self.host, "port": port or self.port(protocol)},
            "address": address,
            "points": [dict(id=p.pop("id"), **p) for p in points],
        }
        if metering is not None:
            device.update(metering.device_fields() if isinstance(metering, Metering) else metering)
        if self.freeze_period_s:
            device["freeze_period_s"] = self.freeze_period_s
        if protocol == "iec104":  # twice per interval: a steady or frozen value still shows in each one
            device["background_s"] = self.freeze_period_s / 2 if self.freeze_period_s else BACKGROUND_SCAN_S
        self.devices.append(device)


def _meter_points(
    protocol: str,
    kind: str,
    element_id: str,
    metering: Metering,
    *,
    forward: str | None = None,
    reverse: str | None = None,
    power: bool = True,
    end: str = "-",
) -> list[dict[str, Any]]:
    """Energy (and power) points of a 645 or 698 meter on one element, secondary side: energy on the
    forward and/or reverse register, power signed as the meter counts (:func:`power_sign`)."""
    per_kwh = 1.0 / metering.ratio  # primary kWh -> secondary kWh (kg likewise)
    if protocol == "dlt645":
        registers = {"forward": "00010000", "reverse": "00020000"}
        power_unit, per_mw, power_address = "kW", 1000.0, {"di": "02030000"}
        key = "di"
    else:
        registers = {"forward": "00100400", "reverse": "00200400"}  # 0.0001 kWh: secondary kWh are small
        power_unit, per_mw, power_address = "W", 1e6, {"oad": "20040200"}  # 2004: W, scaler -1
        key = "oad"
    points = [
        _point(
            kind,
            element_id,
            quantity,
            end,
            unit="kWh",
            scale=per_kwh,
            frozen=True,
            resolution=RESOLUTION[protocol, "energy"],
            secondary=True,
            **{key: registers[register]},
        )
        for register, quantity in (("forward", forward), ("reverse", reverse))
        if quantity is not None
    ]
    if power:
        sign = power_sign(kind, forward, reverse)
        points.append(
            _point(
                kind,
                element_id,
                "p_mw",
                end,
                unit=power_unit,
                scale=sign * per_mw / metering.ratio,
                resolution=RESOLUTION[protocol, "power"],
                secondary=True,
                **power_address,
            )
        )
    return points


def _carbon_points(kind: str, element_id: str, metering: Metering, carbon_oad: str) -> list[dict[str, Any]]:
    """The carbon register (secondary kg) and the factor in force (kg/kWh) of a 698 electric-carbon meter."""
    return [
        _point(
            kind,
            element_id,
            "carbon_kg",
            unit="kg",
            scale=1.0 / metering.ratio,
            secondary=True,
            frozen=True,
            resolution=RESOLUTION["dlt698", "carbon"],
            oad=carbon_oad,
        ),
        _point(
            kind,
            element_id,
            "intensity_g_per_kwh",
            unit="kg/kWh",
            scale=0.001,
            resolution=RESOLUTION["dlt698", "factor"],
            oad="41200200",
        ),
    ]


def build_device_map(
    net: pp.pandapowerNet, host: str = "127.0.0.1", freeze_period_s: int | None = None
) -> dict[str, Any]:
    """The device map document (JSON-ready) of a grid; see :func:`device_map_of`."""
    return device_map_of(net, host, freeze_period_s).document()


def device_map_of(
    net: pp.pandapowerNet, host: str = "127.0.0.1", freeze_period_s: int | None = None
) -> DeviceMap:
    """The device map of a grid with carbonflow's bus metadata (reference grid or ``with_defaults``).

    ``freeze_period_s``: every meter and RTU freezes its counters at each multiple of it (the demo
    passes its metering interval); None: no freezing."""
    ids = element_ids(net)
    bus_rows = {
        index: {
            "id": str(row["name"]) if isinstance(row["name"], str) and row["name"] else str(index),
            "region": str(row.get("region", "")),
            "kind": str(row.get("kind", "substation")),
            "vn_kv": float(row["vn_kv"]),
        }
        for index, row in net.bus.iterrows()
    }
    by_bus: dict[Any, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for table in ("gen", "sgen", "ext_grid", "load", "storage"):
        for index, row in net[table].iterrows():
            if bool(row.in_service):
                by_bus[row.bus][table].append((ids[f"{table}:{index}"], row))
    for table, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
        for index, row in net[table].iterrows():
            if bool(row.in_service):
                for end, column in zip(("from", "to"), ends, strict=True):
                    by_bus[row[column]]["branch_end"].append((ids[f"{table}:{index}"], end, row))
    m = _Map(host, freeze_period_s)
    plant_number = substation_number = 0
    for index, bus in bus_rows.items():
        here = by_bus[index]
        voltage = _point("bus", bus["id"], "u_kv", unit="kV")
        branch_pq = [
            _point("branch", bid, q, end, unit=u)
            for bid, end, _row in here["branch_end"]
            for q, u in (("p_mw", "MW"), ("q_mvar", "Mvar"))
        ]
        if bus["kind"] == "plant":
            plant_number += 1
            units = [(uid, row) for table in ("gen", "sgen", "ext_grid") for uid, row in here[table]]
            telemetry = [
                _point("generator", uid, q, unit=u)
                for uid, _ in units
                for q, u in (("p_mw", "MW"), ("q_mvar", "Mvar"), ("intensity_g_per_kwh", "g/kWh"))
            ]
            telemetry += [voltage, *branch_pq]
            totals = [
                _point("generator", uid, q, unit=u)
                for uid, _ in units
                for q, u in (("export_energy_kwh", "kWh"), ("carbon_kg", "kg"))
            ]
            _iec104_addresses(telemetry, totals)
            m.add(
                f"RTU-{bus['id']}",
                "plant_rtu",
                "iec104",
                bus,
                {"common_address": plant_number},
                telemetry + totals,
                "cf-plant-rtu",
                metering={"accuracy_class": RTU_CLASS},
            )
            for uid, row in units:
                metering = metering_at(
                    bus["vn_kv"], rated_mw(row, "p_max_mw", "max_p_mw", "p_mw"), plant=True
                )
                # the unit's on-grid energy is the outlet meter's reverse (反向) register
                points = _meter_points("dlt698", "generator", uid, metering, reverse="export_energy_kwh")
                points += _carbon_points("generator", uid, metering, "20900200")
                m.add(
                    f"ECM-{uid}",
                    "carbon_meter",
                    "dlt698",
                    bus,
                    {"sa": m.meter_address("dlt698")},
                    points,
                    "cf-carbon-meter-698",
                    metering=metering,
                )
        elif bus["kind"] == "substation":
            substation_number += 1
            loads = [
                _point("load", lid, q, unit=u)
                for lid, _ in here["load"]
                for q, u in (("p_mw", "MW"), ("q_mvar", "Mvar"))
            ]
            if bus["vn_kv"] > 36 or not branch_pq:
                points = [voltage, *branch_pq, *loads]
                _iec104_addresses(points, [])
                m.add(
                    f"RTU-{bus['id']}",
                    "substation_rtu",
                    "iec104",
                    bus,
                    {"common_address": 100 + substation_number},
                    points,
                    "cf-substation-rtu",
                    metering={"accuracy_class": RTU_CLASS},
                )
            else:
                circuits = [
                    ("branch", bid, end, branch_rated_mw(row, bus["vn_kv"]))
                    for bid, end, row in here["branch_end"]
                ]
                circuits += [
                    ("load", lid, "-", rated_mw(row, "p_mw") * LOAD_PEAK_MARGIN) for lid, row in here["load"]
                ]
                _add_circuit_meters(m, bus, circuits)
        else:
            protocol = "dlt698" if bus["vn_kv"] >= 110 else "dlt645"
            vn_kv = bus["vn_kv"]
            if len(here["branch_end"]) > 1:  # a through-bus with a load (a feeder bus): its branches metered
                # too, else a line between two such buses has no meter at either end
                circuits = [("branch", b, end, branch_rated_mw(r, vn_kv)) for b, end, r in here["branch_end"]]
                _add_circuit_meters(m, bus, circuits)
            for lid, row in here["load"]:
                metering = metering_at(vn_kv, rated_mw(row, "p_mw") * LOAD_PEAK_MARGIN)
                m.add(
                    f"EM-{lid}",
                    "energy_meter",
                    protocol,
                    bus,
                    _address(m, protocol),
                    _meter_points(protocol, "load", lid, metering, forward="import_energy_kwh"),
                    f"cf-meter-{protocol[3:]}",
                    metering=metering,
                )
                points = _meter_points("dlt698", "load", lid, metering, forward="import_energy_kwh")
                points += _carbon_points("load", lid, metering, "20800200")
                m.add(
                    f"ECM-{lid}",
                    "carbon_meter",
                    "dlt698",
                    bus,
                    _address(m, "dlt698"),
                    points,
                    "cf-carbon-meter-698",
                    metering=metering,
                )
            for uid, row in here["sgen"] + here["gen"]:
                metering = metering_at(vn_kv, rated_mw(row, "p_max_mw", "max_p_mw", "p_mw"))
                m.add(
                    f"PVM-{uid}",
                    "generation_meter",
                    "dlt645",
                    bus,
                    _address(m, "dlt645"),
                    _meter_points("dlt645", "generator", uid, metering, forward="export_energy_kwh"),
                    "cf-meter-645",
                    metering=metering,
                )
            for sid, row in here["storage"]:
                metering = metering_at(vn_kv, rated_mw(row, "p_max_mw", "max_p_mw", "p_mw"))
                m.add(
                    f"SM-{sid}",
                    "storage_meter",
                    "dlt645",
                    bus,
                    _address(m, "dlt645"),
                    _meter_points(
                        "dlt645",
                        "storage",
                        sid,
                        metering,
                        forward="charge_energy_kwh",
                        reverse="discharge_energy_kwh",
                    ),
                    "cf-meter-645",
                    metering=metering,
                )
            # the supply of a user that can export, or of a user bus without load: a gateway meter
            # counting import into the user's bus forward (export reverse where the user can export)
            exports = bool(here["sgen"] or here["gen"] or here["storage"])
            if exports or (not here["load"] and branch_pq):
                gateway = "dlt698" if exports else protocol
                for bid, end, row in here["branch_end"]:
                    metering = metering_at(vn_kv, branch_rated_mw(row, vn_kv))
                    m.add(
                        f"GM-{bus['id']}-{bid}",
                        "gateway_meter",
                        gateway,
                        bus,
                        _address(m, gateway),
                        _meter_points(
                            gateway,
                            "branch",
                            bid,
                            metering,
                            forward="import_energy_kwh",
                            reverse="export_energy_kwh" if exports else None,
                            end=end,
                        ),
                        f"cf-meter-{gateway[3:]}",
                        metering=metering,
                    )
    return DeviceMap.model_validate(
        {"version": DEVICE_MAP_VERSION, "grid": net.name or "", "host": host, "devices": m.devices}
    )


def _add_circuit_meters(m: _Map, bus: dict[str, Any], circuits: list[tuple[str, str, str, float]]) -> None:
    """One Modbus multifunction meter per circuit (kind, element id, end, rating MW) of a bus, on one
    port: a low-voltage substation's feeders and loads, or the branches of a through-bus with a load."""
    port = m.port("modbus-tcp")
    for unit_id, (kind, element_id, end, rating_mw) in enumerate(circuits, start=1):
        energy = "import_energy_kwh" if kind == "load" else "export_energy_kwh"
        # a multifunction meter with its CT/VT programmed: it shows primary values
        points = [
            _point(
                kind,
                element_id,
                "p_mw",
                end,
                unit="kW",
                scale=1000.0,
                register="p_kw",
                resolution="0",
            ),
            _point(
                kind,
                element_id,
                "q_mvar",
                end,
                unit="kvar",
                scale=1000.0,
                register="q_kvar",
                resolution="0",
            ),
            _point(
                "bus",
                bus["id"],
                "u_kv",
                unit="V",
                scale=1000.0 / math.sqrt(3),
                register="u_a_v",
                resolution="0",
            ),
            _point(
                kind,
                element_id,
                energy,
                end,
                unit="kWh",
                register="import_energy_kwh",
                resolution="0.01",
                frozen=True,
            ),
        ]
        m.add(
            f"MB-{bus['id']}-{unit_id}",
            "substation_meter",
            "modbus-tcp",
            bus,
            {"unit_id": unit_id},
            points,
            "cf-3ph-meter",
            port=port,
            metering=metering_at(bus["vn_kv"], rating_mw),
        )


def _iec104_addresses(telemetry: list[dict[str, Any]], totals: list[dict[str, Any]]) -> None:
    """IEC 104 addresses of an RTU's points: short floats (engineering units, resolution 0) from IOA
    16385, integrated totals (whole units, frozen by counter interrogation) from IOA 25601."""
    for k, point in enumerate(telemetry):
        point["address"] = {"ioa": IOA_TELEMETRY + k, "type": "M_ME_NC_1"}
        point["resolution"] = "0"
    for k, point in enumerate(totals):
        point["address"] = {"ioa": IOA_TOTALS + k, "type": "M_IT_NA_1"}
        point.update(resolution="1", frozen=True)


def _address(m: _Map, protocol: str) -> dict[str, str]:
    return (
        {"address": m.meter_address(protocol)} if protocol == "dlt645" else {"sa": m.meter_address(protocol)}
    )

"""Site cameras at every plant's metering point: their device-map entries.

:func:`add_cameras` adds one ``camera`` device per plant to a device map (from
:mod:`carbonflow.sim.device_map`): protocol ``camera-http``, an HTTP endpoint (ports from 28080),
``address.path`` of the snapshot, the plant's name as ``title``, and ``views`` — per unit of the plant
the truth points the camera's picture shows (output ``p_mw`` and on-grid energy
``export_energy_kwh``).  A camera has no ``points``: it measures nothing the metering reads, so the
center registers the device (status, last seen) but no points.

The binding (:class:`~carbonflow.sim.bindings.DeviceFactory`) serves each as a
:class:`~carbonflow.devices.camera.SiteCamera` reading the truth feed on the simulated clock, offline
while a scenario's ``camera_offline`` event names it (a shell pattern, like ``"CAM-P0*"``) or an
``offline`` event names its device id (:class:`~carbonflow.sim.scenarios.CameraFaults`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandapower as pp

CAMERA_PORT = 28080
SNAPSHOT_PATH = "/snapshot.png"
CAMERA_MODEL = "cf-camera-png"


def _view_point(unit: str, quantity: str, unit_text: str) -> dict[str, Any]:
    return {
        "element_kind": "generator",
        "element_id": unit,
        "quantity": quantity,
        "end": "-",
        "unit": unit_text,
        "scale_to_device": 1.0,
    }


def add_cameras(
    device_map: dict[str, Any],
    net: pp.pandapowerNet | None = None,
    *,
    base_port: int = CAMERA_PORT,
    path: str = SNAPSHOT_PATH,
) -> dict[str, Any]:
    """Add a camera per plant (a bus whose ``plant_rtu`` reports generators) to ``device_map`` in place
    and return it.  Plants that already have a camera are left alone.  ``net`` (optional) supplies the
    plants' English names for the picture."""
    devices = device_map["devices"]
    units: dict[str, list[str]] = defaultdict(list)
    region: dict[str, str] = {}
    for device in devices:
        if device.get("kind") != "plant_rtu":
            continue
        bus = str(device["bus"])
        region[bus] = str(device.get("region", ""))
        for point in device.get("points", []):
            unit = str(point.get("element_id"))
            is_output = point.get("element_kind") == "generator" and point.get("quantity") == "p_mw"
            if is_output and unit not in units[bus]:
                units[bus].append(unit)
    names: dict[str, str] = {}
    if net is not None and "name_en" in net.bus:
        names = {str(row["name"]): str(row["name_en"]) for _, row in net.bus.iterrows() if row["name_en"]}
    have = {str(d.get("bus")) for d in devices if d.get("kind") == "camera"}
    used = {int((d.get("endpoint") or {}).get("port", 0)) for d in devices}
    port = base_port
    host = str(device_map.get("host", "127.0.0.1"))
    for bus, plant_units in units.items():
        if bus in have:
            continue
        while port in used:
            port += 1
        used.add(port)
        devices.append(
            {
                "id": f"CAM-{bus}",
                "kind": "camera",
                "protocol": "camera-http",
                "model": CAMERA_MODEL,
                "bus": bus,
                "region": region[bus],
                "endpoint": {"host": host, "port": port},
                "address": {"path": path},
                "title": names.get(bus, bus),
                "views": [
                    {
                        "unit": unit,
                        "power": _view_point(unit, "p_mw", "MW"),
                        "energy": _view_point(unit, "export_energy_kwh", "kWh"),
                    }
                    for unit in plant_units
                ],
                "points": [],
            }
        )
    return device_map


def cameras_of(device_map: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in device_map["devices"] if d.get("protocol") == "camera-http"]

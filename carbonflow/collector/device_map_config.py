"""A collector configuration generated from a device map (:mod:`carbonflow.messages.device_map`).

Point names are the device map's point ids without the ``<device id>/`` prefix, so the point ids the
collector sends (``<device id>/<point name>``) are exactly the device map's ``points[].id`` and the
center can join readings to ``(element_kind, element_id, quantity, end)`` without a second table.

Bounds: only what is physically certain is generated (counters never below 0, a carbon intensity
within 0..2000 g/kWh); site-specific limits are for the operator to add.  Roll-over moduli follow the
register formats the simulated devices use (documented per protocol in docs/collector.md).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from carbonflow.collector.config import config_from_dict
from carbonflow.messages.base import ContractError
from carbonflow.messages.collector_config import ConfigError
from carbonflow.messages.device_map import READ_KEYS, Device, DeviceAddress, DeviceMap, Endpoint, Point
from carbonflow.protocols.modbus.registers import builtin_map

COUNTER_QUANTITIES = (
    "export_energy_kwh",
    "import_energy_kwh",
    "charge_energy_kwh",
    "discharge_energy_kwh",
    "carbon_kg",
)
INTENSITY_BOUNDS = (Decimal(0), Decimal(2000))  # g/kWh: no fuel emits more
# register range of the counters in the simulated models (value wraps modulo this)
ROLLOVER_645 = Decimal("1000000")  # DL/T 645 energy shows 6 integer digits: wraps at 10^6 kWh
ROLLOVER_U32_CENTI = Decimal(2**32) * Decimal("0.01")  # double-long-unsigned / uint32 at 0.01
ROLLOVER_104_COUNTS = Decimal(2**32)  # binary counter reading: 32-bit signed, wraps through -2^31


def _modbus_rollover(model: str, register: str) -> Decimal | None:
    try:
        point = builtin_map(model).point(register)
    except Exception:  # an unknown model is reported by the validation of the generated config
        return None
    if point.dtype.is_float:
        return None
    return Decimal(2 ** (16 * point.words)) * point.scale


def _point(device: Device, record: Point) -> dict[str, Any]:
    name = record.id.removeprefix(f"{device.id}/")
    address = record.address.document() if record.address is not None else {}
    iec_counter = str(address.get("type") or "").startswith("M_IT")
    counter = record.quantity in COUNTER_QUANTITIES or iec_counter
    point: dict[str, Any] = {"name": name}
    protocol = device.protocol
    key = READ_KEYS[protocol]
    if address.get(key) is None:
        raise ConfigError(f"device map: device {device.id!r} point {record.id!r}: address has no {key!r}")
    point[key] = address[key]
    point["kind"] = "counter" if counter else "instant"
    if counter and record.frozen:
        point["frozen"] = True
    if record.unit:
        point["unit"] = record.unit
    if counter:
        point["min"] = "0"
        rollover = {
            "dlt645": ROLLOVER_645,
            "dlt698": ROLLOVER_U32_CENTI,
            "iec104": ROLLOVER_104_COUNTS,
        }.get(protocol)
        if protocol == "modbus-tcp":
            rollover = _modbus_rollover(device.model or "", str(address[key]))
        if rollover is not None:
            point["rollover"] = str(rollover)
    if record.quantity == "intensity_g_per_kwh" and protocol != "dlt698":  # 698: the meter's factor, kg/kWh
        point["min"], point["max"] = (str(b) for b in INTENSITY_BOUNDS)
    return point


def _endpoint(device: Device) -> str:
    endpoint = device.endpoint or Endpoint()
    return f"{endpoint.host}:{endpoint.port}"


def _device(device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {"id": device.id, "protocol": device.protocol, "endpoint": _endpoint(device)}
    address = device.address or DeviceAddress()
    if device.protocol == "dlt645":
        out["address"] = address.address or ""
    elif device.protocol == "dlt698":
        out["address"] = address.sa or ""
    elif device.protocol == "iec104":
        out["common_address"] = address.common_address or 0
    else:
        out["unit_id"] = address.unit_id or 0
    if device.model:
        out["model"] = device.model
    if device.freeze_period_s:
        out["freeze_period_s"] = device.freeze_period_s
    for ratio in ("ct_ratio", "vt_ratio"):  # for the record: values go out as the meter shows them
        if getattr(device, ratio) is not None:
            out[ratio] = format(Decimal(str(getattr(device, ratio))).normalize(), "f")
    out["points"] = [_point(device, record) for record in device.points]
    return out


def _camera(device: Device) -> dict[str, Any]:
    """A site camera of the map (``carbonflow.sim.cameras``): its snapshot URL."""
    path = (device.address.path if device.address is not None else None) or "/snapshot.png"
    return {"id": device.id, "protocol": "camera-http", "endpoint": _endpoint(device), "path": path}


def config_from_device_map(
    device_map: DeviceMap | Mapping[str, Any],
    *,
    collector_id: str = "collector-1",
    center_url: str = "http://127.0.0.1:8000",
    secret_file: str = "collector.secret",
    outbox_path: str = "outbox.sqlite",
    period_s: float = 10.0,
    devices: list[str] | None = None,
) -> dict[str, Any]:
    """The configuration (as a TOML-ready dict) for the map's devices (all, or those named)."""
    try:
        parsed = DeviceMap.parse(device_map)
    except ContractError as error:
        raise ConfigError(str(error)) from None
    chosen = [d for d in parsed.devices if devices is None or d.id in devices]
    cameras = [d for d in chosen if d.protocol == "camera-http"]
    config: dict[str, Any] = {
        "id": collector_id,
        "secret_file": secret_file,
        "center": {"url": center_url},
        "defaults": {"period_s": period_s},
        "outbox": {"path": outbox_path},
        "devices": [_device(d) for d in chosen if d.protocol != "camera-http"],
    }
    if cameras:
        config["cameras"] = [_camera(d) for d in cameras]
    return config


def write_config_from_device_map(map_path: Path, out_path: Path, **options: Any) -> dict[str, Any]:
    """Read a device map JSON, write the TOML configuration, check it loads; returns the dict."""
    try:
        device_map = json.loads(Path(map_path).read_text("utf-8"))
    except OSError as error:
        raise ConfigError(f"{map_path}: {(error.strerror or str(error)).lower()}") from None
    except ValueError as error:
        raise ConfigError(f"{map_path}: not JSON: {error}") from None
    config = config_from_device_map(device_map, **options)
    text = to_toml(config)
    config_from_dict(tomllib.loads(text), str(out_path), Path(out_path).resolve().parent)  # must validate
    Path(out_path).write_text(text, "utf-8")
    return config


# -- a TOML writer for this document's shape (tables, arrays of tables, scalars) -----------------------
def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(document: dict[str, Any]) -> str:
    lines: list[str] = ["# carbonflow collector configuration (docs/collector.md)"]

    def emit(table: dict[str, Any], path: str) -> None:
        for key, value in table.items():
            if not isinstance(value, dict) and not _is_table_list(value):
                lines.append(f"{key} = {_scalar(value)}")
        for key, value in table.items():
            if isinstance(value, dict):
                lines.extend(["", f"[{path}{key}]"])
                emit(value, f"{path}{key}.")
            elif _is_table_list(value):
                for item in value:
                    lines.extend(["", f"[[{path}{key}]]"])
                    emit(item, f"{path}{key}.")

    emit(document, "")
    return "\n".join(lines) + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

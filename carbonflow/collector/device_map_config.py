"""A collector configuration generated from the simulator's device map (:mod:`carbonflow.sim.device_map`).

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
from decimal import Decimal
from pathlib import Path
from typing import Any

from carbonflow.collector.config import ConfigError, config_from_dict

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
    from carbonflow.protocols.modbus.registers import builtin_map

    try:
        point = builtin_map(model).point(register)
    except Exception:  # an unknown model is reported by the validation of the generated config
        return None
    if point.dtype.is_float:
        return None
    return Decimal(2 ** (16 * point.words)) * point.scale


def _point(device: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    device_id = device["id"]
    point_id = str(record["id"])
    name = point_id.removeprefix(f"{device_id}/")
    address = record.get("address") or {}
    quantity = str(record.get("quantity", ""))
    iec_counter = str(address.get("type", "")).startswith("M_IT")
    counter = quantity in COUNTER_QUANTITIES or iec_counter
    point: dict[str, Any] = {"name": name}
    protocol = device["protocol"]
    key = {"dlt645": "di", "dlt698": "oad", "iec104": "ioa", "modbus-tcp": "register"}[protocol]
    if key not in address:
        raise ConfigError(f"device map: device {device_id!r} point {point_id!r}: address has no {key!r}")
    point[key] = address[key]
    point["kind"] = "counter" if counter else "instant"
    if record.get("unit"):
        point["unit"] = str(record["unit"])
    if counter:
        point["min"] = "0"
        rollover = {
            "dlt645": ROLLOVER_645,
            "dlt698": ROLLOVER_U32_CENTI,
            "iec104": ROLLOVER_104_COUNTS,
        }.get(protocol)
        if protocol == "modbus-tcp":
            rollover = _modbus_rollover(str(device.get("model", "")), str(address[key]))
        if rollover is not None:
            point["rollover"] = str(rollover)
    if quantity == "intensity_g_per_kwh" and protocol != "dlt698":  # 698: the meter's factor, kg/kWh
        point["min"], point["max"] = (str(b) for b in INTENSITY_BOUNDS)
    return point


def _device(device: dict[str, Any], period_s: float | None) -> dict[str, Any]:
    protocol = device.get("protocol")
    if protocol not in ("dlt645", "dlt698", "iec104", "modbus-tcp"):
        raise ConfigError(f"device map: device {device.get('id')!r}: unknown protocol {protocol!r}")
    endpoint = device.get("endpoint") or {}
    out: dict[str, Any] = {
        "id": device["id"],
        "protocol": protocol,
        "endpoint": f"{endpoint.get('host', '127.0.0.1')}:{endpoint.get('port', 0)}",
    }
    address = device.get("address") or {}
    if protocol == "dlt645":
        out["address"] = str(address.get("address", ""))
    elif protocol == "dlt698":
        out["address"] = str(address.get("sa", ""))
    elif protocol == "iec104":
        out["common_address"] = int(address.get("common_address", 0))
    else:
        out["unit_id"] = int(address.get("unit_id", 0))
    if device.get("model"):
        out["model"] = str(device["model"])
    if period_s is not None:
        out["period_s"] = period_s
    out["points"] = [_point(device, record) for record in device.get("points", [])]
    return out


def config_from_device_map(
    device_map: dict[str, Any],
    *,
    collector_id: str = "collector-1",
    center_url: str = "http://127.0.0.1:8000",
    secret_file: str = "collector.secret",
    outbox_path: str = "outbox.sqlite",
    period_s: float = 10.0,
    devices: list[str] | None = None,
) -> dict[str, Any]:
    """The configuration (as a TOML-ready dict) for the map's devices (all, or those named)."""
    if not isinstance(device_map, dict) or not isinstance(device_map.get("devices"), list):
        raise ConfigError("device map: expected an object with a 'devices' list")
    chosen = [d for d in device_map["devices"] if devices is None or d.get("id") in devices]
    cameras = [d for d in chosen if d.get("protocol") == "camera-http"]
    chosen = [d for d in chosen if d.get("protocol") != "camera-http"]
    try:
        device_tables = [_device(d, None) for d in chosen]
        camera_tables = [_camera(d) for d in cameras]
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"device map: malformed device record: {error}") from None
    config = {
        "id": collector_id,
        "secret_file": secret_file,
        "center": {"url": center_url},
        "defaults": {"period_s": period_s},
        "outbox": {"path": outbox_path},
        "devices": device_tables,
    }
    if camera_tables:
        config["cameras"] = camera_tables
    return config


def _camera(device: dict[str, Any]) -> dict[str, Any]:
    """A site camera of the map (``carbonflow.sim.cameras``): its snapshot URL."""
    endpoint = device.get("endpoint") or {}
    return {
        "id": device["id"],
        "protocol": "camera-http",
        "endpoint": f"{endpoint.get('host', '127.0.0.1')}:{endpoint.get('port', 0)}",
        "path": str((device.get("address") or {}).get("path", "/snapshot.png")),
    }


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
    config_from_dict(_reparse(text), str(out_path), Path(out_path).resolve().parent)  # must validate
    Path(out_path).write_text(text, "utf-8")
    return config


def _reparse(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


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

"""The collector's configuration: a TOML file validated with pydantic (see docs/collector.md).

A file names the collector (id and HMAC secret), the center it forwards to (``http://`` or ``mqtt://``),
poll defaults, the outbox, and every device with its points.  :func:`load_config` turns any problem into
one :class:`ConfigError` line naming the file, the device and the field, e.g.
``collector.toml: device 'EM-U01' (devices[3]): points[1].oad: OAD 'zz' must be 8 hex digits``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import UTC, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from carbonflow.collector.camera_config import CameraConfig, ImagesConfig
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus.registers import RegisterMap, builtin_map, register_map_from_dict

Protocol = Literal["dlt645", "dlt698", "iec104", "modbus-tcp"]
PointKind = Literal["instant", "counter"]
ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
_HEX8 = re.compile(r"^[0-9A-Fa-f]{8}$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})$")
# China's meters show Beijing time; IEC 104 stations are commonly run on UTC
DEFAULT_TIME_ZONES = {"dlt645": "+08:00", "dlt698": "+08:00", "iec104": "UTC", "modbus-tcp": "UTC"}


class ConfigError(ValueError):
    """A configuration problem, as one line naming the file, the device and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PointConfig(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    # what to read: exactly the one field that fits the device's protocol
    di: str | None = None  # DL/T 645: data identifier, 8 hex digits
    oad: str | None = None  # DL/T 698.45: object attribute descriptor, 8 hex digits
    ioa: int | None = Field(default=None, ge=1, le=0xFFFFFF)  # IEC 104: information object address
    register_name: str | None = Field(default=None, alias="register")  # Modbus: name in the register map
    kind: PointKind = "instant"
    unit: str = ""
    min: Decimal | None = None  # plausibility bounds (inclusive); outside -> quality invalid
    max: Decimal | None = None
    rollover: Decimal | None = Field(default=None, gt=0)  # a counter wraps around modulo this value
    scale: Decimal = Field(default=Decimal(1), gt=0)  # IEC 104: engineering units per wire count

    @field_validator("di", "oad")
    @classmethod
    def _hex8(cls, value: str | None) -> str | None:
        if value is None:
            return value
        cleaned = value.replace(" ", "")
        if not _HEX8.match(cleaned):
            raise ValueError(f"{value!r} must be 8 hex digits")
        return cleaned.upper()

    @model_validator(mode="after")
    def _bounds(self) -> PointConfig:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.rollover is not None and self.kind != "counter":
            raise ValueError("rollover applies to kind = 'counter' only")
        return self

    @property
    def source(self) -> str:
        """What is read, for messages: 'DI 00010000', 'OAD 00100200', 'IOA 16385', 'register p_kw'."""
        for label, value in (
            ("DI", self.di),
            ("OAD", self.oad),
            ("IOA", self.ioa),
            ("register", self.register_name),
        ):
            if value is not None:
                return f"{label} {value}"
        return "?"


_READ_FIELD = {"dlt645": "di", "dlt698": "oad", "iec104": "ioa", "modbus-tcp": "register_name"}


class DeviceConfig(_Strict):
    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    protocol: Protocol
    endpoint: str  # host:port
    address: str | None = None  # DL/T 645 meter address (12 digits) / DL/T 698.45 server address
    common_address: int | None = Field(default=None, ge=1, le=65534)  # IEC 104
    unit_id: int | None = Field(default=None, ge=0, le=255)  # Modbus
    model: str | None = None  # Modbus: built-in register map name or path to a map JSON; else free text
    time_zone: str | None = None  # the device clock's zone: "UTC" or "+08:00"
    period_s: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    enabled: bool = True
    points: list[PointConfig] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            parse_zone(value)
        return value

    @model_validator(mode="after")
    def _protocol_fields(self) -> DeviceConfig:
        wanted = _READ_FIELD[self.protocol]
        for index, point in enumerate(self.points):
            given = [f for f in _READ_FIELD.values() if getattr(point, f) is not None]
            if given != [wanted]:
                label = {"register_name": "register"}
                others = [repr(label.get(g, g)) for g in given if g != wanted]
                raise ValueError(
                    f"points[{index}] ({point.name}): a point of protocol {self.protocol} needs exactly "
                    f"'{label.get(wanted, wanted)}'" + (f", not {', '.join(others)}" if others else "")
                )
        names = [p.name for p in self.points]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"points: name {duplicate!r} appears twice")
        if self.protocol == "dlt645":
            if self.address is None or not re.fullmatch(r"[0-9A]{12}", self.address):
                raise ValueError("address: a DL/T 645 meter address of 12 digits is required")
        elif self.protocol == "dlt698":
            if self.address is None or not re.fullmatch(r"[0-9A-Fa-f]{2,32}", self.address):
                raise ValueError("address: a DL/T 698.45 server address (hex digits) is required")
        elif self.protocol == "iec104":
            if self.common_address is None:
                raise ValueError("common_address: required for protocol iec104")
        else:
            if self.unit_id is None:
                raise ValueError("unit_id: required for protocol modbus-tcp")
            if not self.model:
                raise ValueError("model: a Modbus device needs its register map (e.g. 'cf-3ph-meter')")
        return self

    @property
    def host(self) -> str:
        return self.endpoint.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @property
    def zone(self) -> tzinfo:
        return parse_zone(self.time_zone or DEFAULT_TIME_ZONES[self.protocol])

    def point(self, name: str) -> PointConfig:
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(name)


class Defaults(_Strict):
    period_s: float = Field(default=10.0, gt=0)  # poll period (IEC 104: counter interrogation period)
    timeout_s: float = Field(default=2.0, gt=0)  # per request attempt
    retries: int = Field(default=2, ge=0, le=10)  # attempts after the first
    offline_after: int = Field(default=3, ge=1)  # consecutive failed polls -> device offline
    clock_check_s: float = Field(default=300.0, gt=0)  # how often device clocks are read
    status_period_s: float = Field(default=60.0, gt=0)  # every device's status at least this often


class CenterConfig(_Strict):
    url: str  # http(s)://host:port  or  mqtt://host:port
    command_poll_s: float = Field(default=5.0, gt=0)  # HTTP: GET .../commands this often
    request_timeout_s: float = Field(default=10.0, gt=0)
    ack_timeout_s: float = Field(default=30.0, gt=0)  # MQTT: no Ack within this -> publish again
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    max_in_flight: int = Field(default=4, ge=1, le=64)  # MQTT: batches published and awaiting Acks
    username: str | None = None  # MQTT
    password: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "mqtt") or not parts.hostname:
            raise ValueError(f"{value!r}: use http://host:port, https://host:port or mqtt://host:port")
        return value.rstrip("/")

    @property
    def transport(self) -> Literal["http", "mqtt"]:
        return "mqtt" if urlsplit(self.url).scheme == "mqtt" else "http"


class OutboxConfig(_Strict):
    path: str = "outbox.sqlite"  # relative to the configuration file's folder
    batch_max_readings: int = Field(default=1000, ge=1, le=50_000)
    batch_max_age_s: float = Field(default=1.0, gt=0)  # a reading waits at most this long for a batch
    max_readings: int = Field(default=2_000_000, ge=1)  # retention bound: beyond -> "outbox full"


class CollectorConfig(_Strict):
    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    secret: str | None = Field(default=None, min_length=8)
    secret_file: str | None = None
    config_version: str | None = None  # default: a hash of the file
    center: CenterConfig
    defaults: Defaults = Field(default_factory=Defaults)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    devices: list[DeviceConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)  # site cameras (camera_config.py)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    # where the file was (relative paths resolve against it); not part of the file
    base_dir: Path = Field(default=Path("."), exclude=True)
    origin: str = Field(default="<config>", exclude=True)

    @model_validator(mode="after")
    def _whole(self) -> CollectorConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("secret: give exactly one of 'secret' and 'secret_file'")
        ids = [d.id for d in self.devices] + [c.id for c in self.cameras]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ValueError(f"devices: id {duplicate!r} appears twice")
        for device in self.devices:
            device.period_s = device.period_s or self.defaults.period_s
            device.timeout_s = device.timeout_s or self.defaults.timeout_s
            if device.retries is None:
                device.retries = self.defaults.retries
        return self

    @cached_property
    def secret_bytes(self) -> bytes:
        if self.secret is not None:
            return self.secret.encode("utf-8")
        path = self.resolve(self.secret_file or "")
        try:
            text = path.read_text("utf-8").strip()
        except OSError as error:
            raise ConfigError(f"{self.origin}: secret_file {path}: {error.strerror or error}") from None
        if len(text) < 8:
            raise ConfigError(f"{self.origin}: secret_file {path}: the secret must have 8 characters or more")
        return text.encode("utf-8")

    @property
    def outbox_path(self) -> Path:
        return self.resolve(self.outbox.path)

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def device(self, device_id: str) -> DeviceConfig:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def register_map(self, device: DeviceConfig) -> RegisterMap:
        """The register map of a Modbus device (built-in name, or a JSON file next to the config)."""
        model = device.model or ""
        if model.endswith(".json"):
            path = self.resolve(model)
            try:
                return register_map_from_dict(json.loads(path.read_text("utf-8")), origin=str(path))
            except (OSError, ValueError) as error:
                raise ConfigError(f"{self.origin}: device {device.id!r}: model: {error}") from None
        return builtin_map(model)


def parse_zone(text: str) -> tzinfo:
    if text.upper() in ("UTC", "Z", "+00:00"):
        return UTC
    match = _OFFSET.match(text.strip())
    if match is None:
        raise ValueError(f"time zone {text!r}: use 'UTC' or an offset like '+08:00'")
    sign, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == "-" else offset)


def _error_line(origin: str, data: Any, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    where = ""
    if len(loc) >= 2 and loc[0] == "devices" and isinstance(loc[1], int):
        index = loc[1]
        devices = data.get("devices") if isinstance(data, dict) else None
        raw = devices[index] if isinstance(devices, list) and index < len(devices) else None
        name = raw.get("id") if isinstance(raw, dict) else None
        where = (f"device {name!r} " if name else "device ") + f"(devices[{index}])"
        loc = loc[2:]
    field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    if first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "extra_forbidden":
        message = "unknown field"
    return ": ".join(part for part in (origin, where, field, message) if part)


def config_from_dict(data: Any, origin: str = "<config>", base_dir: Path | None = None) -> CollectorConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the configuration must be a table")
    try:
        config = CollectorConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_error_line(origin, data, error)) from None
    config.origin = origin
    config.base_dir = base_dir or Path(".")
    if config.config_version is None:
        canonical = json.dumps(data, sort_keys=True, default=str).encode()
        config.config_version = hashlib.sha256(canonical).hexdigest()[:12]
    for device in config.devices:
        if device.protocol == "modbus-tcp":
            _check_registers(config, device)
    return config


def _check_registers(config: CollectorConfig, device: DeviceConfig) -> None:
    where = f"{config.origin}: device {device.id!r}"
    try:
        register_map = config.register_map(device)
    except ProtocolError as error:
        raise ConfigError(f"{where}: model: {error}") from None
    names = {p.name for p in register_map.points}
    for index, point in enumerate(device.points):
        if point.register_name not in names:
            raise ConfigError(
                f"{where}: points[{index}].register: {point.register_name!r} is not in register map "
                f"{register_map.model} (has: {', '.join(sorted(names))})"
            )


def load_config(path: str | Path) -> CollectorConfig:
    """Read and validate a collector configuration file; any problem -> one ConfigError line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: {(error.strerror or str(error)).lower()}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax: {error}") from None
    config = config_from_dict(data, str(path), path.resolve().parent)
    config.secret_bytes  # noqa: B018 - a missing secret file is a configuration error, found now
    return config

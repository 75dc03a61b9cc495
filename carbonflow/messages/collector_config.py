"""The collector configuration (a TOML file, see docs/collector.md) as a validated model.

The collector reads it from its file; the center validates a pushed version with the same model before
it stores it.  Only data is checked here: a Modbus device's register map stays plain data (a built-in
map's name, a path to a map JSON, or an inline ``register_map`` table); the collector turns it into a
codec register map and checks the point names against built-in and file maps.  Any problem is one
:class:`ConfigError` line naming the origin, the device and the field, e.g.
``collector.toml: device 'EM-U01' (devices[3]): points[1].oad: 'zz' must be 8 hex digits``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from carbonflow.messages.base import ID_PATTERN, Contract, ContractError, Document, inherit

SCHEMA_VERSION = 1
Protocol = Literal["dlt645", "dlt698", "iec104", "modbus-tcp"]
PointKind = Literal["instant", "counter"]
_HEX8 = re.compile(r"^[0-9A-Fa-f]{8}$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})$")
# China's meters show Beijing time; IEC 104 stations are commonly run on UTC
DEFAULT_TIME_ZONES = {"dlt645": "+08:00", "dlt698": "+08:00", "iec104": "UTC", "modbus-tcp": "UTC"}
_READ_FIELD = {"dlt645": "di", "dlt698": "oad", "iec104": "ioa", "modbus-tcp": "register_name"}


class ConfigError(ContractError):
    """A configuration problem, as one line naming the file, the device and the field."""


def parse_zone(text: str) -> tzinfo:
    if text.upper() in ("UTC", "Z", "+00:00"):
        return UTC
    match = _OFFSET.match(text.strip())
    if match is None:
        raise ValueError(f"time zone {text!r}: use 'UTC' or an offset like '+08:00'")
    sign, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == "-" else offset)


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


class PointConfig(Contract):
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
    frozen: bool = False  # a counter the device freezes at every freeze_period_s boundary

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


class RegisterPointData(Contract):
    """One point of an inline Modbus register map (the codec checks overlaps and references)."""

    name: str = Field(pattern=ID_PATTERN)
    address: int | str  # zero-based PDU address, or "0x.." text
    type: Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
    table: Literal["holding", "input"] = "holding"
    word_order: Literal["big", "little"] = "big"
    scale: Decimal = Decimal(1)
    unit: str = ""
    quantity: str = ""
    kind: Literal["instant", "counter", "carbon"] = "instant"
    writable: bool = False
    energy_point: str = ""
    factor_point: str = ""
    initial: Decimal | None = None


class RegisterMapData(Contract):
    """A Modbus register map written inline in the configuration (``[devices.register_map]``)."""

    model: str = Field(min_length=1)
    description: str = ""
    points: list[RegisterPointData] = Field(min_length=1)


class DeviceConfig(Contract):
    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    protocol: Protocol
    endpoint: HostPort
    address: str | None = None  # DL/T 645 meter address (12 digits) / DL/T 698.45 server address
    common_address: int | None = Field(default=None, ge=1, le=65534)  # IEC 104
    unit_id: int | None = Field(default=None, ge=0, le=255)  # Modbus
    model: str | None = None  # Modbus: built-in register map name or path to a map JSON; else free text
    register_map: RegisterMapData | None = None  # Modbus: the map inline (instead of a model's)
    time_zone: str | None = None  # the device clock's zone: "UTC" or "+08:00"
    period_s: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    freeze_period_s: int | None = Field(default=None, gt=0)  # the device freezes counters at these boundaries
    clock_tolerance_s: float = Field(default=2.0, gt=0)  # |clock offset| beyond it: frozen readings estimated
    # IEC 104: a measured point the RTU has not sent for this long is asked for again by a general
    # interrogation (a steady value reported on change only stays alive; at most one per refresh_s)
    refresh_s: float | None = Field(default=None, gt=0)
    ct_ratio: Decimal | None = Field(default=None, gt=0)  # the meter's instrument transformers (倍率),
    vt_ratio: Decimal | None = Field(default=None, gt=0)  # for the record: values go out as the meter shows
    enabled: bool = True
    points: list[PointConfig] = Field(min_length=1)

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
            self._modbus_map()
        return self

    def _modbus_map(self) -> None:
        if self.unit_id is None:
            raise ValueError("unit_id: required for protocol modbus-tcp")
        if self.register_map is None:
            if not self.model:
                raise ValueError("model: a Modbus device needs its register map (e.g. 'cf-3ph-meter')")
            return
        names = {p.name for p in self.register_map.points}
        for index, point in enumerate(self.points):
            if point.register_name not in names:
                raise ValueError(
                    f"points[{index}].register: {point.register_name!r} is not in register map "
                    f"{self.register_map.model} (has: {', '.join(sorted(names))})"
                )

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


class CameraConfig(Contract):
    """A site camera, fetched like an IP camera's snapshot URL (``http://endpoint/path``)."""

    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    protocol: Literal["camera-http"] = "camera-http"
    endpoint: HostPort
    path: str = "/snapshot.png"
    scheme: Literal["http", "https"] = "http"
    period_s: float | None = Field(default=None, gt=0)  # default: [images] period_s
    timeout_s: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"{value!r}: the snapshot path must start with '/' and have no spaces")
        return value

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}{self.path}"


class ImagesConfig(Contract):
    period_s: float = Field(default=60.0, gt=0)  # snapshot period of a camera without its own
    timeout_s: float = Field(default=10.0, gt=0)  # per snapshot request
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)  # image outbox bound (oldest dropped)
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # a bigger snapshot is refused


class Defaults(Contract):
    period_s: float = Field(default=10.0, gt=0)  # poll period (IEC 104: counter interrogation period)
    timeout_s: float = Field(default=2.0, gt=0)  # per request attempt
    retries: int = Field(default=2, ge=0, le=10)  # attempts after the first
    offline_after: int = Field(default=3, ge=1)  # consecutive failed polls -> device offline
    clock_check_s: float = Field(default=300.0, gt=0)  # how often device clocks are read
    status_period_s: float = Field(default=60.0, gt=0)  # every device's status at least this often


class CenterConfig(Contract):
    url: str  # http(s)://host:port  or  mqtt(s)://host:port
    command_poll_s: float = Field(default=5.0, gt=0)  # HTTP: GET .../commands this often
    request_timeout_s: float = Field(default=10.0, gt=0)
    ack_timeout_s: float = Field(default=30.0, gt=0)  # MQTT: no Ack within this -> publish again
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    max_in_flight: int = Field(default=4, ge=1, le=64)  # MQTT: batches published and awaiting Acks
    username: str | None = None  # MQTT
    password: str | None = None
    # TLS (https:// or mqtts://, docs/tls.md); paths relative to the configuration file's folder
    ca_file: str | None = None  # the CA that signed the center's / broker's certificate (default: system CAs)
    cert_file: str | None = None  # this collector's client certificate (the broker's user name is its CN)
    key_file: str | None = None  # ... and its key: both or neither

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"{value!r}: use http://host:port, https://host:port, mqtt://host:port or mqtts://host:port"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls(self) -> CenterConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: give both or neither")
        given = next((f for f in ("ca_file", "cert_file") if getattr(self, f) is not None), None)
        if given is not None and not self.tls:
            raise ValueError(f"{given}: TLS options need an https:// or mqtts:// url, not {self.url!r}")
        return self

    @property
    def transport(self) -> Literal["http", "mqtt"]:
        return "mqtt" if urlsplit(self.url).scheme in ("mqtt", "mqtts") else "http"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in ("https", "mqtts")


class OutboxConfig(Contract):
    path: str = "outbox.sqlite"  # relative to the configuration file's folder
    batch_max_readings: int = Field(default=1000, ge=1, le=50_000)
    batch_max_age_s: float = Field(default=1.0, gt=0)  # a reading waits at most this long for a batch
    max_readings: int = Field(default=2_000_000, ge=1)  # retention bound: beyond -> "outbox full"
    # the outbox file's bound (SQLite max_page_count: behaves as a full disk): beyond -> "outbox full"
    max_bytes: int = Field(default=1 << 30, ge=64 * 1024)


class CollectorConfig(Document):
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TITLE: ClassVar[str] = "collector configuration"
    RECORDS: ClassVar[tuple[str, ...]] = ("devices",)

    schema_version: int = SCHEMA_VERSION
    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    secret: str | None = Field(default=None, min_length=8)
    secret_file: str | None = None
    config_version: str | None = None  # default: a hash of the file
    center: CenterConfig
    defaults: Defaults = Field(default_factory=Defaults)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    devices: list[DeviceConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)  # site cameras
    images: ImagesConfig = Field(default_factory=ImagesConfig)

    @model_validator(mode="after")
    def _whole(self) -> CollectorConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("secret: give exactly one of 'secret' and 'secret_file'")
        ids = [d.id for d in self.devices] + [c.id for c in self.cameras]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ValueError(f"devices: id {duplicate!r} appears twice")
        if self.cameras and self.images.max_bytes > self.outbox.max_bytes // 2:  # one file holds both
            raise ValueError(
                f"images.max_bytes ({self.images.max_bytes}) must be at most half of outbox.max_bytes "
                f"({self.outbox.max_bytes}): images and readings share the outbox file"
            )
        for device in self.devices:  # a device's own setting, else the default (not part of its document)
            inherit(device, "period_s", device.period_s or self.defaults.period_s)
            inherit(device, "timeout_s", device.timeout_s or self.defaults.timeout_s)
            if device.retries is None:
                inherit(device, "retries", self.defaults.retries)
        return self

    @classmethod
    def from_document(cls, data: Any, origin: str = "<config>") -> Self:
        """Validate a parsed file (``cls`` or a subclass); ``config_version`` defaults to its hash."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: the configuration must be a table")
        try:
            config = cls.parse(data, origin)
        except ContractError as error:
            raise ConfigError(str(error)) from None
        if config.config_version is None:
            canonical = json.dumps(data, sort_keys=True, default=str).encode()
            inherit(config, "config_version", hashlib.sha256(canonical).hexdigest()[:12])
        return config

    def document(self) -> dict[str, Any]:
        """The TOML-ready form as given (exact decimals as text)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def device(self, device_id: str) -> DeviceConfig:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)


def collector_config_from_dict(data: Any, origin: str = "<config>") -> CollectorConfig:
    """A validated configuration from a parsed TOML table; any problem -> one ConfigError line."""
    return CollectorConfig.from_document(data, origin)

"""The device map: which field device measures what (DESIGN §4a), as data.

A device has a protocol, an endpoint, a protocol address, a model and (optionally) its collector; each of
its points maps one quantity to ``(element_kind, element_id, quantity, end)`` with ``scale_to_device``
(element unit -> the device's unit), and says where the device holds it (``address``: DI, OAD, IOA or
register name).  Produced by :mod:`carbonflow.sim.device_map`; read by the simulator's device farm, the
collector's configuration generator and the center's device registry.  Adding a device never needs code.

Wire form (``version`` is the schema version)::

    {"version": 1, "grid": "...", "host": "127.0.0.1",
     "devices": [{"id": "EM-U01", "kind": "energy_meter", "protocol": "dlt645", "model": "cf-meter-645",
                  "bus": "U01", "region": "AH/HF", "endpoint": {"host": "127.0.0.1", "port": 26451},
                  "address": {"address": "110100000002"},
                  "points": [{"id": "EM-U01/1", "address": {"di": "00010000"}, "element_kind": "load",
                              "element_id": "U01", "quantity": "import_energy_kwh", "end": "-",
                              "unit": "kWh", "scale_to_device": 1.0}]}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from carbonflow.messages.base import Contract, Document

SCHEMA_VERSION = 1
Protocol = Literal["dlt645", "dlt698", "iec104", "modbus-tcp", "camera-http"]
ElementKind = Literal["bus", "generator", "branch", "load", "storage"]
End = Literal["from", "to", "-"]
# where a point of each protocol is read (the key of its ``address``)
READ_KEYS = {"dlt645": "di", "dlt698": "oad", "iec104": "ioa", "modbus-tcp": "register"}


class Endpoint(Contract):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: not bound yet (the simulator picks a free port)

    @model_validator(mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):  # "host:port", as the center stores it
            host, _, port = value.rpartition(":")
            return {"host": host.strip("[]"), "port": port}
        return value

    @property
    def text(self) -> str:
        return f"{self.host}:{self.port}"


class DeviceAddress(Contract):
    """The device's protocol address: the one key its protocol uses."""

    address: str | None = None  # DL/T 645 meter address, 12 digits
    sa: str | None = None  # DL/T 698.45 server address, hex
    common_address: int | None = None  # IEC 104 station
    unit_id: int | None = None  # Modbus unit behind a gateway
    path: str | None = None  # camera snapshot path


class PointAddress(Contract):
    """Where the device holds the point."""

    di: str | None = None  # DL/T 645 data identifier
    oad: str | None = None  # DL/T 698.45 object attribute descriptor
    ioa: int | None = None  # IEC 104 information object address
    type: str | None = None  # IEC 104 type id, e.g. M_ME_NC_1 (measured) or M_IT_NA_1 (integrated total)
    register_name: str | None = Field(default=None, alias="register")  # name in the device model's map


class PointTarget(Contract):
    """What a value measures: one quantity of one element (at one branch end)."""

    element_kind: ElementKind
    element_id: str = Field(min_length=1)
    quantity: str = Field(min_length=1)  # a truth quantity: p_mw, import_energy_kwh, carbon_kg, ...
    end: End = "-"
    unit: str | None = None  # the device's unit
    scale_to_device: float | None = Field(
        default=None, validation_alias=AliasChoices("scale_to_device", "scale")
    )  # element unit x this = device unit, 1/(CT x VT) included for a secondary-side value; None: 1
    # metrology (None: the defaults of docs/metering.md)
    secondary: bool | None = None  # the device shows the secondary side of the device's CT/VT
    resolution: str | None = None  # the register's last digit in the device unit, e.g. "0.01"
    frozen: bool | None = None  # a counter the device freezes at every freeze_period_s boundary


class _PointKey(Contract):
    id: str = Field(min_length=1)  # "<device id>/<name>": the point id readings carry
    address: PointAddress | None = None


class Point(PointTarget, _PointKey):  # this base order puts id and address first in the document
    """One quantity a device measures, and where it holds it."""


class CameraView(Contract):
    """One unit a site camera's picture shows: its output and its on-grid energy."""

    unit: str
    power: PointTarget
    energy: PointTarget


class Device(Contract):
    id: str = Field(min_length=1, max_length=100)
    kind: str | None = None  # plant_rtu, substation_rtu, carbon_meter, energy_meter, camera, ...
    protocol: Protocol
    model: str | None = None
    bus: str | None = None
    region: str | None = None
    collector_id: str | None = None  # the collector that reads it (else given when registering)
    endpoint: Endpoint | None = None
    address: DeviceAddress | None = None
    points: list[Point] = Field(default_factory=list)
    # metering: instrument transformers (倍率 = CT x VT), accuracy class, freezing of counters
    ct_ratio: float | None = Field(default=None, gt=0)  # primary / secondary current, e.g. 600/5 -> 120
    vt_ratio: float | None = Field(default=None, gt=0)  # primary / secondary voltage, e.g. 35 kV/100 V -> 350
    accuracy_class: str | None = None  # active energy class: "0.2S", "0.5S", "1", "2"
    ct_class: str | None = None  # instrument transformer classes ("0.2S", "0.5"); None: the meter's class
    vt_class: str | None = None
    freeze_period_s: int | None = Field(default=None, gt=0)  # counters frozen at every multiple of it
    # IEC 104 RTUs: background scan (COT 2) of every measured point not sent for this long, device clock
    background_s: float | None = Field(default=None, gt=0)
    # site cameras only
    title: str | None = None
    views: list[CameraView] | None = None

    @model_validator(mode="after")
    def _points(self) -> Device:
        key = READ_KEYS.get(self.protocol)
        for index, point in enumerate(self.points):
            if not point.id.startswith(f"{self.id}/"):
                raise ValueError(f"point {point.id!r} of device {self.id!r} must be '<device id>/<name>'")
            given = point.address.document() if point.address is not None else {}
            if key is not None and given and key not in given:
                raise ValueError(f"points[{index}] ({point.id}): address has no {key!r}")
        return self

    @property
    def endpoint_text(self) -> str | None:
        return None if self.endpoint is None else self.endpoint.text


class DeviceMap(Document):
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TITLE: ClassVar[str] = "device map"
    RECORDS: ClassVar[tuple[str, ...]] = ("devices",)

    schema_version: int = Field(default=SCHEMA_VERSION, alias="version")
    grid: str = ""
    host: str = "127.0.0.1"
    devices: list[Device]

    def points(self) -> list[tuple[Device, Point]]:
        """Every (device, point) pair."""
        return [(device, point) for device in self.devices for point in device.points]


def parse_devices(records: list[Device | Mapping[str, Any]], origin: str = "device map") -> list[Device]:
    """Device records on their own (a map's ``devices``), validated like a map's."""
    if all(isinstance(record, Device) for record in records):
        return list(records)  # type: ignore[arg-type]
    raw = [r.document() if isinstance(r, Device) else r for r in records]
    return DeviceMap.parse({"devices": raw}, origin).devices

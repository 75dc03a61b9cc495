"""Topology, collectors, devices and points: idempotent upserts from plain data.

Element dicts use the schema's column names (``buses``: id, name, kind, voltage_kv, region, industry,
x_km, y_km; ``generators``: id, bus_id, plant, unit, fuel, intensity_g_per_kwh, intensity_source; …).
``register_devices`` takes device records of the device map (:mod:`carbonflow.messages.device_map`:
endpoint ``{host, port}``, ``points`` with ``scale_to_device``), so adding a device never needs code.
It keeps each device's metrology (CT/VT ratios, accuracy class) and each point's maximum permissible
error (from its device's class), register resolution and side; a device whose secondary-side points
lack a CT or VT ratio gets a ``metrology_error`` naming it, and metering does not use those points
(never a silent x1).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import chunks, connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.readings import dialect_insert
from carbonflow.center.store.schema import (
    Base,
    Branch,
    Bus,
    Collector,
    Device,
    Generator,
    Load,
    Point,
    Region,
    Storage,
)
from carbonflow.center.store.sealing import seal, unseal
from carbonflow.messages.device_map import Device as DeviceRecord
from carbonflow.messages.device_map import parse_devices

log = logging.getLogger(__name__)
# accuracy classes as the maximum permissible error in % (IEC 62053 / GB/T 17215 classes; IR46 letters)
CLASS_LETTERS = {"A": 2.0, "B": 1.0, "C": 0.5, "D": 0.2}
SET_VALUE_QUANTITIES = ("intensity_g_per_kwh",)  # a factor register holds what it was given: no MPE

ELEMENT_MODELS: dict[str, type[Base]] = {
    "regions": Region,
    "buses": Bus,
    "generators": Generator,
    "branches": Branch,
    "loads": Load,
    "storage": Storage,
}


def upsert_rows(connection: Connection, model: type[Base], rows: list[dict[str, Any]]) -> int:
    """Insert or update ``rows`` by primary key; unknown keys in a row are an error naming it."""
    table = model.__table__
    columns = set(table.c.keys())
    key = [c.name for c in table.primary_key.columns]
    for index, row in enumerate(rows):
        extra = set(row) - columns
        if extra:
            raise ValueError(f"{table.name}[{index}] (id {row.get('id')!r}): unknown fields {sorted(extra)}")
    count = 0
    for names in {tuple(sorted(row)) for row in rows}:  # one statement shape per set of fields
        group = [row for row in rows if tuple(sorted(row)) == names]
        for page in chunks(group, 500):
            statement = dialect_insert(connection, table)
            updates = {name: statement.excluded[name] for name in names if name not in key}
            statement = (
                statement.on_conflict_do_update(index_elements=key, set_=updates)
                if updates
                else statement.on_conflict_do_nothing(index_elements=key)
            )
            connection.execute(statement, page)
            count += len(page)
    return count


def upsert_topology(target: Store | Session | Connection, topology: dict[str, list[dict[str, Any]]]) -> dict:
    """Upsert ``{"buses": [...], "generators": [...], ...}``; buses first so references resolve."""
    unknown = set(topology) - set(ELEMENT_MODELS)
    if unknown:
        raise ValueError(f"unknown topology tables {sorted(unknown)}")
    with connection_of(target, write=True) as connection:
        return {
            name: upsert_rows(connection, model, topology.get(name, []))
            for name, model in ELEMENT_MODELS.items()
            if topology.get(name)
        }


def upsert_collector(
    target: Store | Session | Connection,
    collector_id: str,
    secret: str,
    *,
    name: str | None = None,
    region: str | None = None,
) -> None:
    row = {"id": collector_id, "secret": seal(secret), "name": name, "region": region, "status": "unknown"}
    with connection_of(target, write=True) as connection:
        statement = dialect_insert(connection, Collector.__table__)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "secret": statement.excluded.secret,
                    "name": statement.excluded.name,
                    "region": statement.excluded.region,
                },
            ),
            row,
        )


def collector_secret(target: Store | Session | Connection, collector_id: str) -> bytes | None:
    with connection_of(target, write=False) as connection:
        secret = connection.execute(
            select(Collector.secret).where(Collector.id == collector_id)
        ).scalar_one_or_none()
    return None if secret is None else unseal(secret, f"collector {collector_id!r}").encode("utf-8")


def register_devices(
    target: Store | Session | Connection,
    devices: Sequence[DeviceRecord | Mapping[str, Any]],
    collector_id: str | None = None,
) -> tuple[int, int]:
    """Upsert devices and their points (device-map records); returns (devices, points).

    A device with secondary-side points but no CT or VT ratio is registered with a ``metrology_error``
    (one line naming it, also logged); see :func:`metrology_problems`."""
    device_rows, point_rows = [], []
    for device in parse_devices(list(devices)):
        accuracy = accuracy_percent(device.accuracy_class)
        # a secondary-side value also carries the ratio errors of its CT and VT (root sum of squares)
        transformers = [accuracy_percent(device.ct_class or device.accuracy_class),
                        accuracy_percent(device.vt_class or device.accuracy_class)]  # fmt: skip
        behind = (
            None if accuracy is None else math.sqrt(accuracy**2 + sum((t or 0.0) ** 2 for t in transformers))
        )
        problem = _metrology_problem(device)
        if problem:
            log.warning(problem)
        device_rows.append(
            {
                "id": device.id,
                "collector_id": device.collector_id or collector_id,
                "kind": device.kind,
                "protocol": device.protocol,
                "endpoint": device.endpoint_text,
                "address": None if device.address is None else device.address.document(),
                "model": device.model,
                "bus_id": device.bus,
                "region": device.region,
                "ct_ratio": _decimal(device.ct_ratio),
                "vt_ratio": _decimal(device.vt_ratio),
                "accuracy_class": device.accuracy_class,
                "metrology_error": problem,
            }
        )
        for point in device.points:
            point_rows.append(
                {
                    "id": point.id,
                    "device_id": device.id,
                    "element_kind": point.element_kind,
                    "element_id": point.element_id,
                    "quantity": point.quantity,
                    "end": point.end,
                    "unit": point.unit,
                    "scale": _decimal(point.scale_to_device),
                    "accuracy_percent": (
                        None
                        if point.quantity in SET_VALUE_QUANTITIES
                        else (behind if point.secondary else accuracy)
                    ),
                    "resolution": _decimal(point.resolution),
                    "secondary": point.secondary,
                }
            )
    with connection_of(target, write=True) as connection:
        upsert_rows(connection, Device, device_rows)
        upsert_rows(connection, Point, point_rows)
    return len(device_rows), len(point_rows)


def _decimal(value: float | str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def accuracy_percent(accuracy_class: str | None) -> float | None:
    """The maximum permissible error (% of the reading) of an accuracy class: "0.2S" -> 0.2, "1" -> 1.0,
    IR46 letters "D" -> 0.2 ... "A" -> 2.0; None for no class (metering then uses its default).  An
    unreadable class raises ValueError naming it."""
    if accuracy_class is None or not accuracy_class.strip():
        return None
    text = accuracy_class.strip().upper()
    if text in CLASS_LETTERS:
        return CLASS_LETTERS[text]
    try:
        value = Decimal(text.removesuffix("S"))
    except InvalidOperation:
        raise ValueError(f"accuracy class {accuracy_class!r}: not a class like 0.2S, 0.5S, 1 or 2") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"accuracy class {accuracy_class!r}: not a class like 0.2S, 0.5S, 1 or 2")
    return float(value)


def _metrology_problem(device: DeviceRecord) -> str | None:
    """One line naming the device when its secondary-side points cannot be brought to primary."""
    secondary = [p.id.removeprefix(f"{device.id}/") for p in device.points if p.secondary]
    missing = [name for name in ("ct_ratio", "vt_ratio") if getattr(device, name) is None]
    if not secondary or not missing:
        return None
    return (
        f"device {device.id}: points {', '.join(secondary)} show the secondary side but the device has no "
        f"{' and no '.join(missing)} (倍率): their readings are not used until the device map gives it"
    )


def metrology_problems(target: Store | Session | Connection) -> dict[str, str]:
    """Device id -> its metrology problem, for every registered device that has one."""
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(Device.id, Device.metrology_error).where(Device.metrology_error.is_not(None))
        ).all()
    return {device_id: problem for device_id, problem in rows}

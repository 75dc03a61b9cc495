"""Topology, collectors, devices and points: idempotent upserts from plain data.

Element dicts use the schema's column names (``buses``: id, name, kind, voltage_kv, region, industry,
x_km, y_km; ``generators``: id, bus_id, plant, unit, fuel, intensity_g_per_kwh, intensity_source; …).
``register_devices`` takes device records of the device map (:mod:`carbonflow.messages.device_map`:
endpoint ``{host, port}``, ``points`` with ``scale_to_device``), so adding a device never needs code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
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
    Storage,
)
from carbonflow.messages.device_map import Device as DeviceRecord
from carbonflow.messages.device_map import parse_devices

ELEMENT_MODELS: dict[str, type[Base]] = {
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
    row = {"id": collector_id, "secret": secret, "name": name, "region": region, "status": "unknown"}
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
    return None if secret is None else secret.encode("utf-8")


def register_devices(
    target: Store | Session | Connection,
    devices: Sequence[DeviceRecord | Mapping[str, Any]],
    collector_id: str | None = None,
) -> tuple[int, int]:
    """Upsert devices and their points (device-map records); returns (devices, points)."""
    device_rows, point_rows = [], []
    for device in parse_devices(list(devices)):
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
            }
        )
        for point in device.points:
            scale = point.scale_to_device
            point_rows.append(
                {
                    "id": point.id,
                    "device_id": device.id,
                    "element_kind": point.element_kind,
                    "element_id": point.element_id,
                    "quantity": point.quantity,
                    "end": point.end,
                    "unit": point.unit,
                    "scale": None if scale is None else Decimal(str(scale)),
                }
            )
    with connection_of(target, write=True) as connection:
        upsert_rows(connection, Device, device_rows)
        upsert_rows(connection, Point, point_rows)
    return len(device_rows), len(point_rows)

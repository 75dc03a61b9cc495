"""The region of a resource named in a request path — what the API's region scope is checked against."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.images import Image
from carbonflow.center.store.schema import Bus, Collector, Device

_QUERIES = {
    "device": lambda key: select(Device.region).where(Device.id == key),
    "camera": lambda key: select(Device.region).where(Device.id == key),
    "collector": lambda key: select(Collector.region).where(Collector.id == key),
    "bus": lambda key: select(Bus.region).where(Bus.id == key),
    "image": lambda key: (
        select(Device.region)
        .join(Image, Image.camera_id == Device.id)
        .where(Image.object_key == key)
        .limit(1)
    ),
}


def resource_region(target: Store | Session | Connection, kind: str, key: str) -> tuple[bool, str | None]:
    """``(known, region)`` of the resource ``kind``/``key`` (device, camera, collector, bus, image)."""
    with connection_of(target, write=False) as connection:
        row = connection.execute(_QUERIES[kind](key)).first()
    return (False, None) if row is None else (True, row[0])

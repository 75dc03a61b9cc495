"""The region of a resource named in a request path — what the API's region scope is checked against
(the rows of a list a region-scoped user sees: :mod:`carbonflow.center.store.row_scope`)."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.alarms import Alarm
from carbonflow.center.store.engine import Store
from carbonflow.center.store.images import Image
from carbonflow.center.store.schema import Bus, Collector, Device


def _alarm_region(key: str):
    number = int(key) if key.isascii() and key.isdigit() and len(key) < 19 else -1  # a BIGINT or none
    return select(Alarm.region).where(Alarm.id == number)


_QUERIES = {
    "alarm": _alarm_region,
    "device": lambda key: select(Device.region).where(Device.id == key),
    "camera": lambda key: select(Device.region).where(Device.id == key),
    "collector": lambda key: select(Collector.region).where(Collector.id == key),
    "bus": lambda key: select(Bus.region).where(Bus.id == key),
    "image": lambda key: (
        select(Device.region)
        .select_from(Image)
        .outerjoin(Device, Device.id == Image.camera_id)
        .where(Image.object_key == key)
        .limit(1)
    ),
}


def resource_region(target: Store | Session | Connection, kind: str, key: str) -> tuple[bool, str | None]:
    """``(known, region)`` of the resource ``kind``/``key`` (device, camera, collector, bus, image, alarm);
    region None: a center-level resource (a camera known only by its images, an image of one)."""
    with connection_of(target, write=False) as connection:
        row = connection.execute(_QUERIES[kind](key)).first()
        if row is None and kind == "camera":  # known only by its images: a center-level camera
            images = select(Image.camera_id).where(Image.camera_id == key).limit(1)
            return connection.execute(images).first() is not None, None
    return (False, None) if row is None else (True, row[0])

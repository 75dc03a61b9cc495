"""Region scope in the store: the region of a resource named in a request path (what the API's region
scope is checked against), and :class:`RowScope`, the rows of a list a region-scoped user may see."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, func, or_, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.images import Image
from carbonflow.center.store.schema import Bus, Collector, Device


def _alarm_region(key: str):
    from carbonflow.center.store.alarms import Alarm  # that module filters with RowScope from this one

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


def within(region: str | None, scope: str) -> bool:
    """Whether ``region`` lies inside the prefix ``scope`` (``""`` covers everything; a resource without
    a region lies only inside ``""``)."""
    if not scope:
        return True
    return region is not None and (region == scope or region.startswith(scope + "/"))


@dataclass(frozen=True)
class RowScope:
    """The rows of a list a user of region ``prefix`` (non-empty, e.g. ``AH/HF``) sees: those whose region
    lies inside it (:func:`within`: the prefix itself or below it, never a sibling such as ``AH/HFX``),
    and the rows without a region (center-level items) only when ``unregioned`` — the user's prefix
    covers the center's own region.  The list functions of the store take it as ``scope`` (``None``:
    every row) and filter in SQL, so counts and pages are those of the user's rows."""

    prefix: str
    unregioned: bool = False

    def clause(self, region: ColumnElement) -> ColumnElement[bool]:
        """SQL: ``region`` lies inside the prefix (compared exactly: no LIKE, whose wildcards and case
        folding on SQLite would let ``AH/H_`` or ``ah/hf`` through)."""
        below = self.prefix + "/"
        inside = or_(region == self.prefix, func.substr(region, 1, len(below)) == below)
        return or_(inside, region.is_(None)) if self.unregioned else inside

    def admits(self, region: str | None) -> bool:
        """The same test in Python, for rows that do not come from one SQL query."""
        return self.unregioned if region is None else within(region, self.prefix)

    def by_device(self, query, device_id: ColumnElement):
        """``query`` restricted to rows whose device (``device_id``) lies in scope; a row whose device is
        not registered counts as a row without a region."""
        return query.outerjoin(Device, Device.id == device_id).where(self.clause(Device.region))

"""Interval headers as the API reads them: the latest interval, one interval's header, the headers in a
range, one interval's origin shares, and which quantities each element kind's results store.

A header is every column of ``intervals`` except the bulky ``snapshot``, ``origin`` (JSON or packed) and
``estimation`` (``interval_header`` adds ``estimation``: the overview counts the estimated inputs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.packed_origin import origin_of
from carbonflow.center.store.schema import RESULT_MODELS, Interval

Target = Store | Session | Connection
HEADER_COLUMNS = [
    c for c in Interval.__table__.c if c.name not in ("snapshot", "origin", "origin_packed", "estimation")
]
_KEY_COLUMNS = {"ts", "level", "interval_s", "element_id", "bus_id"}


def latest_interval_ts(target: Target) -> datetime | None:
    """The end of the latest stored interval (any level), or None before the first one."""
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.max(Interval.ts))).scalar_one_or_none()


def first_interval_ts(target: Target) -> datetime | None:
    """The end of the earliest stored interval (any level): when the system began to meter."""
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.min(Interval.ts))).scalar_one_or_none()


def is_complete(estimation: dict[str, Any] | None) -> bool:
    """Every input measured or derived from measured ones (intervals stored before the flag was kept
    count as complete when they name no estimate)."""
    estimation = estimation or {}
    if "complete" in estimation:
        return bool(estimation["complete"])
    return not estimation.get("estimates")


def latest_complete_interval_ts(target: Target, look_back: int = 1000) -> datetime | None:
    """The end of the latest interval metered from complete data, among the latest ``look_back``."""
    query = select(Interval.ts, Interval.estimation).order_by(Interval.ts.desc()).limit(look_back)
    with connection_of(target, write=False) as connection:
        for ts, estimation in connection.execute(query):
            if is_complete(estimation):
                return ts
    return None


def interval_header(target: Target, ts: datetime) -> dict[str, Any] | None:
    """The header (with ``estimation``) of the interval ending at ``ts`` — the first level by name."""
    query = select(*HEADER_COLUMNS, Interval.estimation).where(Interval.ts == ts).order_by(Interval.level)
    with connection_of(target, write=False) as connection:
        row = connection.execute(query).first()
    return None if row is None else dict(row._mapping)


def interval_headers(target: Target, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Headers of the intervals inside ``[start, end)`` (ends in ``(start, end]``), by ts then level."""
    query = (
        select(*HEADER_COLUMNS)
        .where(Interval.ts > start, Interval.ts <= end)
        .order_by(Interval.ts, Interval.level)
    )
    with connection_of(target, write=False) as connection:
        return [dict(r._mapping) for r in connection.execute(query)]


def load_origins(target: Target, start: datetime, end: datetime):
    """``(ts, interval_s, loads)`` — the per-load part of the stored origin shares — of every interval
    ending in ``(start, end]`` that has them, in time order.  Streamed, and only the ``loads`` member is
    read: from the packed column without decoding the per-bus shares, from a JSON column (rows stored
    before migration 0018) by a JSON path in SQL — the per-bus shares are most of a document and exports
    do not need them."""
    loads = Interval.origin["loads"].label("loads")
    query = (
        select(Interval.ts, Interval.interval_s, loads, Interval.origin_packed)
        .where(
            Interval.ts > start,
            Interval.ts <= end,
            or_(Interval.origin_packed.is_not(None), Interval.origin.is_not(None)),
        )
        .order_by(Interval.ts, Interval.level)
        .execution_options(yield_per=200)
    )
    with connection_of(target, write=False) as connection:
        for row in connection.execute(query):
            document = origin_of({"loads": row.loads}, row.origin_packed, buses=False)
            if document and document["loads"]:
                yield row.ts, row.interval_s, document["loads"]


def interval_origin(target: Target, ts: datetime, level: str) -> dict[str, Any] | None:
    """The origin shares stored with one interval (``{"sources", "buses", "loads"}``), if any: the packed
    column's document, or the JSON column's (rows stored before migration 0018)."""
    query = select(Interval.origin, Interval.origin_packed).where(Interval.ts == ts, Interval.level == level)
    with connection_of(target, write=False) as connection:
        row = connection.execute(query).first()
    return None if row is None else origin_of(row.origin, row.origin_packed)


def result_quantities(kind: str) -> set[str]:
    """The stored quantities (non-key columns) of one element kind's results, e.g. ``flux_mw``."""
    return set(RESULT_MODELS[kind].__table__.c.keys()) - _KEY_COLUMNS

"""Device clock offsets over time (issue 18 §2): every status that carries a measured offset adds a
sample ``(device, ts, offset_s)`` — thinned: a device gets at most one sample per
``SAMPLE_SPACING_S`` unless its offset moved by ``STEP_S`` or more since the last one kept (a clock
stepped or synchronised shows at once).  ``devices.clock_offset_s`` keeps the latest value; the samples
are purged with the other history (``retention.purge_older_than``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import ClockOffset

SAMPLE_SPACING_S = 900.0  # one sample per device and 15 minutes of steady drift
STEP_S = 0.5  # ... but a change this large is kept at once


def record_offsets(connection: Connection, samples: list[tuple[str, datetime, float]]) -> int:
    """Keep the samples ``(device, ts, offset_s)`` that are news (see the module); how many were kept."""
    if not samples:
        return 0
    devices = sorted({device for device, _, _ in samples})
    newest = (
        select(ClockOffset.device_id, func.max(ClockOffset.ts).label("ts"))
        .where(ClockOffset.device_id.in_(devices))
        .group_by(ClockOffset.device_id)
        .subquery()
    )
    last = {
        row.device_id: (row.ts, row.offset_s)
        for row in connection.execute(
            select(ClockOffset.device_id, ClockOffset.ts, ClockOffset.offset_s).join(
                newest, (ClockOffset.device_id == newest.c.device_id) & (ClockOffset.ts == newest.c.ts)
            )
        )
    }
    rows = []
    for device, ts, offset in sorted(samples, key=lambda s: s[1]):
        before = last.get(device)
        if before is not None:
            spaced = ts - before[0] >= timedelta(seconds=SAMPLE_SPACING_S)
            if ts <= before[0] or not (spaced or abs(offset - before[1]) >= STEP_S):
                continue
        rows.append({"device_id": device, "ts": ts, "offset_s": float(offset)})
        last[device] = (ts, offset)
    if rows:
        connection.execute(insert(ClockOffset), rows)
    return len(rows)


def offset_series(
    target: Store | Connection, device_id: str, start: datetime, end: datetime, *, limit: int = 100_000
) -> list[dict[str, Any]]:
    """A device's samples with ``start <= ts < end``, oldest first."""
    query = (
        select(ClockOffset.ts, ClockOffset.offset_s)
        .where(ClockOffset.device_id == device_id, ClockOffset.ts >= start, ClockOffset.ts < end)
        .order_by(ClockOffset.ts)
        .limit(limit)
    )
    with connection_of(target, write=False) as connection:
        return [{"ts": row.ts, "offset_s": row.offset_s} for row in connection.execute(query)]


def latest_offset_ts(target: Store | Connection, device_id: str) -> datetime | None:
    with connection_of(target, write=False) as connection:
        return connection.execute(
            select(func.max(ClockOffset.ts)).where(ClockOffset.device_id == device_id)
        ).scalar()

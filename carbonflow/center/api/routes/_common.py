"""Shared pieces of the user-facing routes: time parameters, ranges, pagination, CSV, latest interval.

Conventions of every list endpoint: ``limit`` (default 500, at most 100,000) and ``offset``; JSON answers
``{"items": [...], "total": n, "limit": l, "offset": o}``; ``?format=csv`` answers the same rows (all of
them unless ``limit``/``offset`` are given) as ``text/csv`` with a header line.  Timestamps in answers
are ISO 8601 UTC; parameters must carry a zone (``2025-06-01T08:00:00+08:00`` or ``...Z``).  A bad
parameter is a 400 JSON error naming it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from carbonflow.center.store import Store, latest_interval_ts

DEFAULT_LIMIT = 500
MAX_LIMIT = 100_000
MAX_RANGE = timedelta(days=366)
MIN_RANGE = timedelta(minutes=1)

Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="page size (default 500)")]
Offset = Annotated[int, Query(ge=0, description="rows to skip")]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]


def bad_parameter(name: str, message: str) -> HTTPException:
    return HTTPException(400, f"bad parameter {name!r}: {message}")


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+") if value.count(" ") == 1 else value)
    except ValueError:
        raise bad_parameter(name, f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise bad_parameter(name, f"{value!r} has no time zone (add Z or +08:00)")
    return parsed.astimezone(UTC)


def zone_of(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.time_zone)


def offset_minutes(zone: ZoneInfo, at: datetime) -> int:
    return int(at.astimezone(zone).utcoffset().total_seconds() // 60)


def resolve_range(
    store: Store,
    start: str | None,
    end: str | None,
    *,
    default: timedelta = timedelta(hours=24),
    max_range: timedelta = MAX_RANGE,
) -> tuple[datetime, datetime]:
    """``[start, end)``; a missing end defaults to just after the latest interval, a missing start to
    ``default`` before the end."""
    start_t, end_t = parse_time(start, "start"), parse_time(end, "end")
    if end_t is None:
        anchor = latest_interval_ts(store) if start_t is None else start_t + default
        end_t = (anchor or datetime.now(UTC)) + timedelta(microseconds=1)
    if start_t is None:
        start_t = end_t - default
    if end_t <= start_t:
        raise bad_parameter("end", "must be after start")
    if end_t - start_t < MIN_RANGE:
        raise bad_parameter("end", "the range must be at least one minute")
    if end_t - start_t > max_range:
        raise bad_parameter("start", f"the range may span at most {max_range.days} days")
    return start_t, end_t


def local_day(ts: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local calendar day (UTC bounds) holding the interval that ENDS at ``ts``."""
    day: date = (ts - timedelta(microseconds=1)).astimezone(zone).date()
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "as_tuple"):  # Decimal: exact text, as the meter shows it
        return str(value)
    return value


def csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False)
                if isinstance(v, dict | list)
                else ("" if v is None else v)
                for k, v in jsonable(row).items()
            }
        )
    return out.getvalue()


def listing(
    rows: list[dict[str, Any]],
    *,
    limit: int | None,
    offset: int,
    format: str,
    name: str,
    extra: dict[str, Any] | None = None,
) -> Any:
    """One page of ``rows`` as JSON, or CSV (every row unless a page was asked for)."""
    total = len(rows)
    if format == "csv":
        page = rows[offset : offset + limit] if limit is not None else rows[offset:]
        return Response(
            csv_text(page),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    size = limit or DEFAULT_LIMIT
    body = {"items": jsonable(rows[offset : offset + size]), "total": total, "limit": size, "offset": offset}
    if extra:
        body.update(jsonable(extra))
    return body


def split_ids(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    return [item.strip() for item in value.split(",") if item.strip()]

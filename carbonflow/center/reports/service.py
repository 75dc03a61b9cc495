"""Building a report end to end: content → file under the report directory → a ``reports`` row with
the data version it was made from; and the scheduled reports the maintenance scheduler runs.

Files are named by the report's id (a random hex), never by anything a caller typed.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.center.reports.build import PERIODS, CarbonReport, ReportInputError, build_report
from carbonflow.center.reports.render import FORMATS, render
from carbonflow.center.store import Store, latest_complete_interval_ts, save_report, scheduled_report_exists

log = logging.getLogger(__name__)


def default_report_dir(database_url: str) -> Path:
    """Next to an SQLite database file (``<db dir>/reports``); else ``./carbonflow-reports``."""
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        return Path(database_url.removeprefix("sqlite:///")).resolve().parent / "reports"
    return Path("carbonflow-reports").resolve()


def report_directory(settings: Any) -> Path:
    """Where a center with these settings keeps its report files (``report_dir`` or the default)."""
    return Path(settings.report_dir) if settings.report_dir else default_report_dir(settings.database_url)


def make_report(
    store: Store,
    directory: Path,
    period: str,
    start: str,
    format: str,
    *,
    time_zone: str = "Asia/Shanghai",
    scope_kind: str = "all",
    scope_value: str | None = None,
    actor: str | None = None,
    scheduled: bool = False,
) -> tuple[dict[str, Any], CarbonReport]:
    """Build, render, write and record one report; answers the stored row and the content."""
    if format not in FORMATS:
        raise ReportInputError("format", f"must be one of {', '.join(FORMATS)}, not {format!r}")
    report = build_report(
        store, period, start, time_zone=time_zone, scope_kind=scope_kind, scope_value=scope_value
    )
    data = render(report, format)
    report_id = secrets.token_hex(16)
    directory.mkdir(parents=True, exist_ok=True)
    file_name = f"{report_id}.{format}"
    (directory / file_name).write_bytes(data)
    row = {
        "id": report_id,
        "period": period,
        "start": start,
        "scope_kind": scope_kind,
        "scope_value": report.scope_value,
        "region": report.scope_value if scope_kind == "region" else "",
        "format": format,
        "data_version": report.data_version,
        "intervals": report.intervals,
        "empty": report.empty,
        "file_name": file_name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "scheduled": scheduled,
        "actor": actor,
    }
    save_report(store, row)
    return row, report


def download_name(row: dict[str, Any]) -> str:
    scope = "" if row["scope_kind"] == "all" else f"-{row['scope_kind']}-{row['scope_value']}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{row['start']}{scope}")
    return f"carbon-report-{row['period']}-{safe}.{row['format']}"


def previous_period(period: str, before: datetime, zone: ZoneInfo) -> str:
    """The label of the last local calendar ``period`` that ended at or before ``before``."""
    local = before.astimezone(zone)
    if period == "day":
        return (local - timedelta(days=1)).date().isoformat()
    if period == "month":
        year, month = local.year, local.month - 1
        if month == 0:
            year, month = year - 1, 12
        return f"{year:04d}-{month:02d}"
    return f"{local.year - 1:04d}"


def parse_schedule(entries: list[str]) -> list[tuple[str, str]]:
    """``["month:xlsx", "day:pdf"]`` → ``[("month", "xlsx"), ("day", "pdf")]``; a bad entry names itself."""
    out = []
    for entry in entries:
        period, _, format = entry.partition(":")
        if period not in PERIODS or format not in FORMATS:
            raise ValueError(
                f"report schedule entry {entry!r}: write period:format, period one of {', '.join(PERIODS)}, "
                f"format one of {', '.join(FORMATS)}"
            )
        out.append((period, format))
    return out


def run_scheduled(
    store: Store, directory: Path, schedule: list[tuple[str, str]], *, time_zone: str
) -> list[dict[str, Any]]:
    """Build each scheduled (period, format) report of the last period the metering has completed
    (up to the latest complete interval), once: a report already made for it is not made again."""
    latest = latest_complete_interval_ts(store)
    if latest is None:
        return []
    zone = ZoneInfo(time_zone)
    made = []
    for period, format in schedule:
        label = previous_period(period, latest + timedelta(microseconds=1), zone)
        if scheduled_report_exists(store, period, label, format):
            continue
        row, _ = make_report(
            store, directory, period, label, format, time_zone=time_zone, actor="scheduler", scheduled=True
        )
        log.info("scheduled report %s %s (%s) built: %s", period, label, format, row["id"])
        made.append(row)
    return made

"""Remote maintenance for users (login required): collectors' status, configuration push with versions,
"sync all clocks", electric-carbon meter checks.  And the two collector-signed endpoints that go with
them: fetching a pushed configuration version and posting the collector's own status report.

(``routes/collectors.py`` holds the collector-signed command endpoints.)
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from carbonflow.center.api.deps import RawBody, RowScopeDep, SignedCollector, StoreDep, UserDep, require_user
from carbonflow.center.api.routes._common import (
    Format,
    Limit,
    Offset,
    bad_parameter,
    jsonable,
    listing,
    parse_time,
)
from carbonflow.center.ingest.receive import receive_status
from carbonflow.center.ingest.to_collector import config_headers
from carbonflow.center.metering.meter_check import list_checks, meter_summary
from carbonflow.center.store import (
    Store,
    collector_config,
    collector_configs,
    collector_devices,
    collector_exists,
    collector_secrets,
    collector_status_report,
    collectors_overview,
    list_commands,
    next_config_version,
    push_collector_config,
    queue_time_sync_all,
    record_audit,
    rotate_collector_secret,
)
from carbonflow.center.store.collector_secrets import DEFAULT_ROTATION_OVERLAP
from carbonflow.center.store.row_scope import RowScope
from carbonflow.messages.collector_config import ConfigError, collector_config_from_dict

router = APIRouter(prefix="/api/v1", tags=["remote maintenance"])
LOGIN = [Depends(require_user)]
CLOCK_PROTOCOLS = ("dlt645", "dlt698", "iec104")  # devices with a clock to set (Modbus meters have none)
MAX_CONFIG_BYTES = 1_000_000


def _with_state(row: dict[str, Any], offline_after_s: float, now: datetime) -> dict[str, Any]:
    """``status``: unknown (never heard of), offline (silent for ``offline_after_s``), else online or
    degraded as the collector last reported; the outbox from its own status report."""
    last_seen = row.get("last_seen")
    if last_seen is None:
        status = "unknown"
    elif now - last_seen > timedelta(seconds=offline_after_s):
        status = "offline"
    else:
        status = row.get("status") if row.get("status") in ("online", "degraded") else "online"
    report = row.pop("status_report", None) or {}
    return {
        **row,
        "status": status,
        "online": status in ("online", "degraded"),
        "outbox": report.get("outbox"),
        "last_send_error": report.get("last_send_error"),
    }


def _collectors(request: Request, store: Store, scope: RowScope | None = None) -> list[dict[str, Any]]:
    offline_after = request.app.state.settings.collector_offline_after_s
    now = datetime.now(UTC)
    return [_with_state(row, offline_after, now) for row in collectors_overview(store, scope=scope)]


@router.get("/collectors", dependencies=LOGIN)
def collectors(
    request: Request,
    store: StoreDep,
    scope: RowScopeDep,
    status: Literal["online", "degraded", "offline", "unknown"] | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Collectors: status, last seen, reported and pushed configuration versions, outbox, open commands."""
    rows = _collectors(request, store, scope)
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    return listing(rows, limit=limit, offset=offset, format=format, name="collectors")


@router.get("/collectors/{collector_id}", dependencies=LOGIN)
def collector(collector_id: str, request: Request, store: StoreDep, scope: RowScopeDep) -> dict:
    """One collector with its status report, pushed versions, and the latest commands and the devices
    of the user's region (a collector may read devices of several regions)."""
    rows = [r for r in _collectors(request, store) if r["id"] == collector_id]
    if not rows:
        raise HTTPException(404, f"unknown collector {collector_id!r}")
    return jsonable(
        {
            **rows[0],
            "status_report": collector_status_report(store, collector_id),
            "configs": collector_configs(store, collector_id),
            "commands": list_commands(store, collector_id=collector_id, scope=scope)[-20:][::-1],
            "devices": collector_devices(store, collector_id, scope=scope),
        }
    )


VERSION_LINE = re.compile(r"^config_version\s*=.*\n?", re.MULTILINE)  # the center numbers a version anew
# a secret's value is masked when a version is shown to an operator
SECRET_VALUE = re.compile(r"^(\s*(?:\w+_)?(?:secret|password|token))\s*=.*$", re.MULTILINE)


def _validated(collector_id: str, raw: bytes, store: Store) -> tuple[str, str]:
    """(version, TOML text as stored) or a 422 naming the problem."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise HTTPException(413, f"configuration larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise HTTPException(422, "configuration: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise HTTPException(422, f"configuration: TOML syntax: {error}") from None
    if data.get("id") != collector_id:
        raise HTTPException(422, f"configuration: id: {data.get('id')!r} is not collector {collector_id!r}")
    if "config_version" not in data:  # the center numbers versions; the file carries its own number
        version = next_config_version(store, collector_id)
        text = f'config_version = "{version}"  # set by the center\n' + text
        data["config_version"] = version
    version = data["config_version"]
    try:
        config = collector_config_from_dict(data, "configuration")
    except ConfigError as error:
        raise HTTPException(422, str(error)) from None
    held = collector_secrets(store, collector_id)  # the current one, or the one a rotation waits to retire
    if config.secret is not None and config.secret.encode("utf-8") not in held:
        raise HTTPException(
            422, "configuration: secret: differs from the collector's secret held by the center"
        )
    return str(version), text


def _push(collector_id: str, raw: bytes, store: Store, user: str) -> dict:
    version, text = _validated(collector_id, raw, store)
    url = f"/api/v1/collectors/{collector_id}/config/{version}"
    saved, command = push_collector_config(store, collector_id, version, text, url=url, actor=user)
    return jsonable({**saved, "url": url, "command_id": command.command_id, "status": "queued"})


def _known(collector_id: str, store: Store) -> None:
    if not collector_exists(store, collector_id):
        raise HTTPException(404, f"unknown collector {collector_id!r}")


@router.post("/collectors/{collector_id}/config", status_code=201)
def push_config(collector_id: str, raw: RawBody, store: StoreDep, user: UserDep) -> dict:
    """Store a new configuration version (TOML body, validated like the collector validates a file) and
    queue ``reload_config`` with ``{"version", "url"}``: the collector fetches, checks and applies it."""
    _known(collector_id, store)
    return _push(collector_id, raw, store, user)


class SecretRotation(BaseModel):
    overlap_hours: float = Field(DEFAULT_ROTATION_OVERLAP.total_seconds() / 3600, ge=0, le=24 * 90)


@router.post("/collectors/{collector_id}/secret/rotate", status_code=201)
def rotate_secret(collector_id: str, rotation: SecretRotation, store: StoreDep, user: UserDep) -> dict:
    """A new secret for the collector, shown once (install it in the collector's configuration); the old
    one keeps working until the collector signs with the new one or the overlap ends (0: cut off now)."""
    _known(collector_id, store)
    rotated = rotate_collector_secret(store, collector_id, overlap=timedelta(hours=rotation.overlap_hours))
    until = None if rotated.previous_until is None else rotated.previous_until.isoformat()
    record_audit(store, user, "collector.rotate_secret", collector_id, {"previous_until": until})
    return {"collector_id": collector_id, "secret": rotated.secret, "previous_valid_until": until}


@router.get("/collectors/{collector_id}/configs/{version}", dependencies=LOGIN)
def show_config(collector_id: str, version: str, store: StoreDep) -> dict:
    """For operators: one pushed version's TOML, secrets masked (for reading and comparing versions)."""
    _known(collector_id, store)
    text = collector_config(store, collector_id, version)
    return {"version": version, "text": SECRET_VALUE.sub(r'\1 = "***"', text)}


@router.post("/collectors/{collector_id}/config/{version}/rollback", status_code=201)
def rollback_config(collector_id: str, version: str, store: StoreDep, user: UserDep) -> dict:
    """Push an earlier version's configuration again, as a new version (a version is immutable: the
    history keeps what was rolled back and when); the collector fetches, checks and applies it."""
    _known(collector_id, store)
    text = VERSION_LINE.sub("", collector_config(store, collector_id, version), count=1)
    return _push(collector_id, text.encode("utf-8"), store, user)


@router.get("/collectors/{collector_id}/config/{version}", response_class=PlainTextResponse)
def fetch_config(collector_id: SignedCollector, version: str, store: StoreDep) -> PlainTextResponse:
    """For the collector itself (signed): the TOML text of one pushed version, signed by the center in
    the headers (the collector checks it before writing anything)."""
    text = collector_config(store, collector_id, version)
    headers = config_headers(store, collector_id, version, text)
    return PlainTextResponse(text, media_type="application/toml; charset=utf-8", headers=headers)


@router.post("/collectors/{collector_id}/status")
def post_status(collector_id: str, body: RawBody, store: StoreDep, request: Request) -> dict[str, str]:
    """For the collector itself: its status report, signed inside the document (as on MQTT)."""
    alarms = getattr(request.app.state, "alarms", None)
    receive_status(store, collector_id, body, None if alarms is None else alarms.on_status)
    return {"collector_id": collector_id, "status": "recorded"}


@router.post("/commands/time-sync-all", status_code=202, dependencies=LOGIN)
def sync_all_clocks(store: StoreDep, user: UserDep, scope: RowScopeDep) -> dict:
    """Queue a time sync for every meter and RTU (of the user's region) that has a clock and a collector
    to reach it."""
    devices = queue_time_sync_all(store, CLOCK_PROTOCOLS, actor=user, scope=scope)
    return {"queued": len(devices), "devices": devices}


@router.get("/meter-checks", dependencies=LOGIN)
def meter_checks(
    store: StoreDep,
    scope: RowScopeDep,
    device: str | None = None,
    start: str | None = None,
    end: str | None = None,
    status: Literal["ok", "mismatch", "incomplete"] | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Electric-carbon meter vs platform: per meter and span, what the meter showed, what the platform
    computed (previous register + Σ ΔkWh × factor in force), the difference and the allowance; newest
    first.  ``start``/``end`` filter on the end of the span."""
    first, last = parse_time(start, "start"), parse_time(end, "end")
    if first is not None and last is not None and last <= first:
        raise bad_parameter("end", "must be after start")
    rows = list_checks(store, device=device, start=first, end=last, status=status, scope=scope)
    return listing(rows, limit=limit, offset=offset, format=format, name="meter-checks")


@router.get("/meter-checks/summary", dependencies=LOGIN)
def meter_checks_summary(
    store: StoreDep, scope: RowScopeDep, device: str | None = None, format: Format = "json"
):
    """Electric-carbon meter vs platform, cumulated per meter over every check: energy (kWh), the carbon
    its register added and the carbon the platform computed for that energy and the downloaded factors
    (kg, primary side), their difference, the largest step allowance (the register's resolution plus
    the energy register's share), and how many steps and checks did not agree."""
    rows = meter_summary(store, device=device, scope=scope)
    return listing(rows, limit=None, offset=0, format=format, name="meter-checks-summary")

"""Alarms (contract C3): list, acknowledge, clear by hand; alarm rules as data; the notification queue.

``GET /api/v1/alarms?state=active|cleared|all&since=&region=`` → ``{"items": [{"id", "rule", "severity",
"state", "acknowledged", "subject": {"kind", "id"}, "raised_at", "cleared_at", "message", "image"}, ...],
"counts": {...}}`` (extra fields: kind, region, occurrences, flapping, ack, value, detail);
``POST /api/v1/alarms/{id}/ack`` with ``{"note": "..."}``; ``POST /api/v1/alarms/{id}/clear`` (an
operator ends an alarm whose condition the center cannot see end, e.g. a register jump);
``GET/PUT /api/v1/alarm-rules`` (PUT replaces the whole rule set; a bad rule is a 422 naming the rule
and the field, and nothing changes); ``GET /api/v1/alarm-notifications`` (queued / sent / failed).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from carbonflow.center.alarms import RuleError
from carbonflow.center.api.deps import StoreDep, UserDep, require_user
from carbonflow.center.api.routes._common import jsonable, parse_time
from carbonflow.center.store import alarms as alarm_store
from carbonflow.center.store import record_audit
from carbonflow.center.store.errors import StoreError
from carbonflow.center.store.row_scope import within

router = APIRouter(prefix="/api/v1", tags=["alarms"], dependencies=[Depends(require_user)])


class BadRuleError(StoreError):
    status_code = 422


class AckBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


@router.get("/alarms")
def alarms(
    request: Request,
    store: StoreDep,
    state: Literal["active", "cleared", "all"] = "active",
    since: str | None = None,
    region: str | None = None,
    limit: int = Query(default=500, ge=1, le=10_000),
) -> dict[str, Any]:
    # the center's own alarms (no region: metering, collectors without one) lie in the center's region
    center = within(request.app.state.settings.center_region or None, (region or "").strip("/"))
    items = alarm_store.list_alarms(
        store, state=state, since=parse_time(since, "since"), region=region, limit=limit, unregioned=center
    )
    counts = alarm_store.alarm_counts(store, region=region, unregioned=center)  # as the items
    return jsonable({"items": items, "counts": counts})


@router.get("/alarms/{alarm_id}")
def alarm(alarm_id: int, store: StoreDep) -> dict[str, Any]:
    return jsonable(alarm_store.get_alarm(store, alarm_id))


@router.post("/alarms/{alarm_id}/ack")
def acknowledge(alarm_id: int, store: StoreDep, user: UserDep, body: AckBody | None = None) -> dict[str, Any]:
    note = body.note if body is not None else None
    row = alarm_store.acknowledge_alarm(store, alarm_id, user, note)
    record_audit(store, user, "alarm.ack", str(alarm_id), {"note": note})
    return jsonable(row)


@router.post("/alarms/{alarm_id}/clear")
def clear(
    alarm_id: int, request: Request, store: StoreDep, user: UserDep, body: AckBody | None = None
) -> dict[str, Any]:
    note = body.note if body is not None else None
    request.app.state.alarms.clear_by_hand(alarm_id, user, note)
    record_audit(store, user, "alarm.clear", str(alarm_id), {"note": note})
    return jsonable(alarm_store.get_alarm(store, alarm_id))


@router.get("/alarm-rules")
def rules(request: Request) -> dict[str, Any]:
    engine = request.app.state.alarms
    return {"items": engine.rules_document(), "source": engine.rules_source}


@router.put("/alarm-rules")
def put_rules(
    request: Request, store: StoreDep, user: UserDep, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    engine = request.app.state.alarms
    try:
        rules = engine.set_rules(body, actor=user)
    except RuleError as error:
        detail = {"rule": error.rule, "field": error.field}
        raise BadRuleError(f"invalid alarm rules: {error}", detail) from None
    record_audit(store, user, "alarm.rules", None, {"rules": [rule.id for rule in rules]})
    return {"items": engine.rules_document(), "source": engine.rules_source}


@router.get("/alarm-notifications")
def notifications(
    store: StoreDep,
    status: Literal["queued", "sent", "failed"] | None = None,
    limit: int = Query(default=200, ge=1, le=10_000),
) -> dict[str, Any]:
    return jsonable({"items": alarm_store.list_notifications(store, status=status, limit=limit)})

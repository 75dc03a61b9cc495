"""Versions of the interval results (docs/recompute.md): the recomputations, a diff between two versions,
and the input corrections a recomputation applies.

``GET /api/v1/versions`` → ``{"current": n, "items": [{"version", "start", "end", "reason", "status",
"intervals", "skipped", "corrections", ...}]}``; ``GET /api/v1/versions/diff?a=0&b=2[&start=&end=]`` →
per bus and per user the energy, carbon and energy-weighted intensity of both versions and the change,
and the totals; ``GET /api/v1/corrections``; ``POST /api/v1/corrections`` with ``{"kind", "element_id",
"start", "end", "value", "reason"}`` (recorded only: ``carbonflow center recompute`` applies it).
One interval of any version: ``GET /api/v1/results?ts=...&version=n`` (routes/results.py).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from carbonflow.center.api.deps import StoreDep, UserDep, require_user
from carbonflow.center.api.routes._common import jsonable, parse_time
from carbonflow.center.store import (
    add_correction,
    corrections,
    diff_versions,
    get_version,
    latest_version,
    list_versions,
    record_audit,
)

router = APIRouter(prefix="/api/v1", tags=["versions"], dependencies=[Depends(require_user)])


class CorrectionBody(BaseModel):
    kind: Literal["emission_factor", "reading", "losses"]
    element_id: str | None = Field(default=None, max_length=200)
    start: str = Field(max_length=64)
    end: str | None = Field(default=None, max_length=64)  # a reading: its time is start
    value: str = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=2000)


@router.get("/versions")
def versions(store: StoreDep) -> dict[str, Any]:
    return jsonable({"current": latest_version(store), "items": [v.as_dict() for v in list_versions(store)]})


@router.get("/versions/diff")
def versions_diff(
    store: StoreDep,
    a: int = Query(..., ge=0, description="the older version (0: as metered)"),
    b: int = Query(..., ge=0),
    start: str | None = None,
    end: str | None = None,
    level: str = "",
) -> dict[str, Any]:
    """Version ``b`` against ``a`` over the intervals ending in ``(start, end]`` (default: the range the
    compared versions recomputed)."""
    first, last = parse_time(start, "start"), parse_time(end, "end")
    infos = []
    for number in {a, b} - {0}:
        info = get_version(store, number)
        if info is None:
            raise HTTPException(404, f"no version {number}")
        infos.append(info)
    if first is None or last is None:
        if not infos:
            raise HTTPException(400, "comparing version 0 with itself: give start and end")
        first = first or min(i.start for i in infos)
        last = last or max(i.end for i in infos)
    return jsonable(diff_versions(store, a, b, first, last, level))


@router.get("/corrections")
def list_corrections(store: StoreDep, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    items = corrections(store, parse_time(start, "start"), parse_time(end, "end"))
    return {"items": [c.as_dict() for c in items]}


@router.post("/corrections")
def new_correction(body: CorrectionBody, store: StoreDep, user: UserDep) -> dict[str, Any]:
    start = parse_time(body.start, "start")
    end = parse_time(body.end, "end") if body.end else start if body.kind == "reading" else None
    if start is None or end is None:
        raise HTTPException(422, f"{body.kind} correction: give start and end")
    correction = add_correction(
        store, body.kind, body.element_id, start, end, body.value, reason=body.reason, actor=user
    )
    record_audit(store, user, "correction.add", str(correction.id), correction.as_dict())
    return correction.as_dict()

"""The audit log for auditors (and admins): who did what, when, from where — newest first."""

from __future__ import annotations

from fastapi import APIRouter

from carbonflow.center.api.deps import StoreDep
from carbonflow.center.api.routes._common import Format, Limit, Offset, listing, parse_time
from carbonflow.center.store.audit import list_audit

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit")
def audit(
    store: StoreDep,
    actor: str | None = None,
    action: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    """Audit entries (``action`` matches as a prefix, e.g. ``login`` or ``command``)."""
    rows = list_audit(
        store, actor=actor, action=action, start=parse_time(start, "start"), end=parse_time(end, "end")
    )
    return listing(rows, limit=limit, offset=offset, format=format, name="audit")

"""Cross-region tie intensities (docs/interop.md): the endpoint a neighbouring region's center pushes
its signed documents to, and the views ``GET /api/v1/ties`` (neighbours, ties, last received, backlog)
and ``GET /api/v1/ties/intensities`` (the documents published here or received, signed, for a
neighbour's account to pull or an operator to read)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request

from carbonflow.center.api.deps import RawBody, UserDep
from carbonflow.center.api.errors import error_response
from carbonflow.center.cascade.node import Refused
from carbonflow.center.crossregion.link import TieLink

router = APIRouter(prefix="/api/v1/ties", tags=["ties"])


def _link(request: Request) -> TieLink | None:
    service = getattr(request.app.state, "ties", None)
    return None if service is None else service.link


def _not_configured():
    return error_response(404, "no ties configured", "this center has no tie lines with neighbouring regions")


@router.post("/intensities")
def receive(request: Request, body: RawBody):
    """One signed tie-intensities document from a neighbour; 200 once it is committed (or seen before)."""
    link = _link(request)
    if link is None:
        return _not_configured()
    try:
        return link.receive(body)
    except Refused as refused:
        return error_response(refused.status, refused.error, refused.detail)


@router.get("")
def ties(request: Request, _user: UserDep):
    link = _link(request)
    return _not_configured() if link is None else link.status()


@router.get("/intensities")
def documents(
    request: Request,
    _user: UserDep,
    direction: Literal["out", "in"] = "out",
    neighbour: str | None = None,
    since: datetime | None = None,
):
    """``out``: what this center published (to ``neighbour``); ``in``: what it received."""
    link = _link(request)
    if link is None:
        return _not_configured()
    if since is not None and since.tzinfo is None:
        return error_response(422, "since must carry a time zone", since.isoformat())
    return {"center": link.id, "direction": direction, "items": link.documents(direction, neighbour, since)}

"""The cascade between centers (C5): the signed message endpoint peers post to, and the views
``GET /api/v1/cascade`` (this center, its peers, last exchange, backlog, verification status) and
``GET /api/v1/cascade/verifications?since=`` (per-interval checks with both sides' numbers)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.deps import UserDep
from carbonflow.center.api.errors import error_response
from carbonflow.center.cascade.node import CascadeNode, Refused
from carbonflow.center.store.cascade import verifications as stored_verifications

router = APIRouter(prefix="/api/v1/cascade", tags=["cascade"])


def _node(request: Request) -> CascadeNode | None:
    service = getattr(request.app.state, "cascade", None)
    return None if service is None else service.node


def _not_configured():
    return error_response(404, "no cascade configured", "this center runs without upper or lower centers")


@router.post("/messages")
async def message(request: Request):
    """One signed C5 envelope from a peer; 200 once it is committed (or was seen before)."""
    # lean on purpose (a center takes ~40 of these per interval): no dependency but the app-wide guard
    # (the policy's ``collector`` rule: no user; the envelope's signature is the authentication, checked
    # by ``receive``), the body read once here, the answer a ready JSON response (``receive`` returns
    # plain JSON values); ``receive`` writes to the store, so it runs in the threadpool
    node = _node(request)
    if node is None:
        return _not_configured()
    body = await request.body()
    try:
        return JSONResponse(await run_in_threadpool(node.receive, body))
    except Refused as refused:
        return error_response(refused.status, refused.error, refused.detail)


@router.get("")
def cascade(request: Request, _user: UserDep):
    node = _node(request)
    return _not_configured() if node is None else node.status()


@router.get("/verifications")
def verifications(request: Request, _user: UserDep, since: datetime | None = None, peer: str | None = None):
    node = _node(request)
    if node is None:
        return _not_configured()
    if since is not None and since.tzinfo is None:
        return error_response(422, "since must carry a time zone", since.isoformat())
    return {"center": node.id, "items": stored_verifications(node.store, since, peer)}

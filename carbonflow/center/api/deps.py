"""Shared dependencies: the store, the current user (bearer token), the calling collector (signature).

User auth is a stub until users and roles exist: a bearer token from ``settings.api_tokens``.
Collector auth: header ``X-Carbonflow-Signature`` = hex HMAC-SHA256, under the collector's secret, of
the raw request body (POST) or of the request path (GET, e.g. ``/api/v1/collectors/C1/commands``).
The GET signature is constant per path — it authenticates but does not prevent replay, so HTTPS is
required outside localhost (docs/deployment.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from carbonflow.center.ingest.receive import verify_request_signature
from carbonflow.center.store import Store

SIGNATURE_HEADER = "X-Carbonflow-Signature"
_bearer = HTTPBearer(auto_error=False)


def get_store(request: Request) -> Store:
    return request.app.state.store


def require_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    tokens: dict[str, str] = request.app.state.settings.api_tokens
    if credentials is None or credentials.credentials not in tokens:
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return tokens[credentials.credentials]


async def signed_collector(collector_id: str, request: Request) -> str:
    """The path's collector, once the request's signature checks out under its secret."""
    payload = await request.body() if request.method != "GET" else request.url.path.encode("utf-8")
    await run_in_threadpool(
        verify_request_signature,
        request.app.state.store,
        collector_id,
        payload,
        request.headers.get(SIGNATURE_HEADER),
    )
    return collector_id


StoreDep = Annotated[Store, Depends(get_store)]
UserDep = Annotated[str, Depends(require_user)]
SignedCollector = Annotated[str, Depends(signed_collector)]

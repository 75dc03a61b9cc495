"""Shared dependencies: the store, the current user (bearer token), the calling collector (signature).

User auth: a session token from ``POST /api/v1/login`` (store ``users``/``user_sessions``), sent as
``Authorization: Bearer <token>`` or as the HttpOnly cookie ``carbonflow_session`` (the web UI); static
tokens from ``settings.api_tokens`` are accepted too (service accounts until RBAC exists).
Collector auth: header ``X-Carbonflow-Signature`` = hex HMAC-SHA256, under the collector's secret, of
the raw request body (POST) or of the request path (GET, e.g. ``/api/v1/collectors/C1/commands``).
The GET signature is constant per path — it authenticates but does not prevent replay, so HTTPS is
required outside localhost (docs/deployment.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carbonflow.center.ingest.receive import verify_request_signature
from carbonflow.center.store import Store, user_for_token

SIGNATURE_HEADER = "X-Carbonflow-Signature"
SESSION_COOKIE = "carbonflow_session"
_bearer = HTTPBearer(auto_error=False)


def get_store(request: Request) -> Store:
    return request.app.state.store


def user_of_token(app, token: str | None) -> str | None:
    """The user name a token (static API token or login session) stands for, else None."""
    if not token:
        return None
    tokens: dict[str, str] = app.state.settings.api_tokens
    if token in tokens:
        return tokens[token]
    user = user_for_token(app.state.store, token)
    return None if user is None else user.name


def request_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else request.cookies.get(SESSION_COOKIE)


def require_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    user = user_of_token(request.app, request_token(request, credentials))
    if user is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})
    return user


async def request_body(request: Request) -> bytes:
    """The raw body, read on the event loop so that plain ``def`` routes (run in the threadpool) get it."""
    return await request.body()


RawBody = Annotated[bytes, Depends(request_body)]


def signed_collector(collector_id: str, request: Request, body: RawBody) -> str:
    """The path's collector, once the request's signature checks out under its secret."""
    payload = body if request.method != "GET" else request.url.path.encode("utf-8")
    verify_request_signature(
        request.app.state.store, collector_id, payload, request.headers.get(SIGNATURE_HEADER)
    )
    return collector_id


StoreDep = Annotated[Store, Depends(get_store)]
UserDep = Annotated[str, Depends(require_user)]
SignedCollector = Annotated[str, Depends(signed_collector)]

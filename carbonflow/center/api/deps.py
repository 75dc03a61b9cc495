"""Shared dependencies: the store, the authorised principal (policy.py), the calling collector (signature).

User auth: a session token from ``POST /api/v1/login`` (store ``users``/``user_sessions``), sent as
``Authorization: Bearer <token>`` or as the HttpOnly cookie ``carbonflow_session`` (the web UI); static
tokens from ``settings.api_tokens`` name a user, whose role and region come from the users table (a
name not there is a ``viewer`` of every region).  :func:`authorize` runs on every route of the app
(``FastAPI(dependencies=...)``) and applies :data:`policy.POLICY`; a cookie-authenticated write (or
WebSocket) must come from the center's own origin (CSRF).
Collector auth: ``receive.verify_request``: HMAC-SHA256 under the collector's secret over method,
path and query, ``X-Carbonflow-Signed-At``, ``X-Carbonflow-Nonce`` and the body; stale and replayed
requests are refused (401 naming why, audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, HTTPException, Request, WebSocketException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from carbonflow.center.api.policy import Rule, role_may, rule_for, within
from carbonflow.center.ingest.receive import verify_request
from carbonflow.center.store import Store, UserInfo, get_user, resource_region, user_for_token
from carbonflow.center.store.row_scope import RowScope

SESSION_COOKIE = "carbonflow_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False)


def get_store(request: Request) -> Store:
    return request.app.state.store


def user_info_of_token(app, token: str | None) -> UserInfo | None:
    """The user a token (static API token or login session) stands for, else None."""
    if not token:
        return None
    tokens: dict[str, str] = app.state.settings.api_tokens
    if token in tokens:
        user = get_user(app.state.store, tokens[token])
        if user is None:
            return UserInfo(tokens[token], "viewer")
        return None if user.disabled else user
    return user_for_token(app.state.store, token)


def user_of_token(app, token: str | None) -> str | None:
    """The user name a token stands for, else None."""
    user = user_info_of_token(app, token)
    return None if user is None else user.name


def request_token(request: HTTPConnection, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else request.cookies.get(SESSION_COOKIE)


@dataclass(frozen=True)
class Principal:
    user: UserInfo
    by_cookie: bool


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _principal(connection: HTTPConnection) -> Principal:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    by_cookie = token is None
    if token is None and connection.scope["type"] == "websocket":
        token = connection.query_params.get("token")
        by_cookie = token is None
    if token is None:
        token = connection.cookies.get(SESSION_COOKIE)
    user = user_info_of_token(connection.app, token)
    if user is None:
        raise _Refusal(401, "login required", {"WWW-Authenticate": "Bearer"})
    return Principal(user, by_cookie)


def own_origin(connection: HTTPConnection) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return f"{scheme}://{connection.headers.get('host', '')}"


def _check_origin(connection: HTTPConnection, method: str) -> None:
    """CSRF: a cookie-authenticated write or WebSocket must carry the center's own Origin (browsers
    always send it on those); bearer-token clients are not at risk (a page cannot set the header)."""
    if method in SAFE_METHODS:
        return
    origin = connection.headers.get("origin") or ""
    allowed = {own_origin(connection), *connection.app.state.settings.allowed_origins}
    if origin not in allowed:
        raise _Refusal(403, f"cross-site request refused (Origin {origin or 'missing'!r})")


def _check_region(connection: HTTPConnection, rule: Rule, user: UserInfo) -> None:
    scope = user.region
    if not scope or rule.scope in ("none", "rows"):  # rows: the route filters them (row_scope)
        return
    settings = connection.app.state.settings
    if rule.scope == "center":
        if not within(settings.center_region or None, scope):
            raise _Refusal(403, f"this view spans the whole center; your region is {scope}")
    elif rule.scope == "region":
        query = parse_qsl(connection.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        asked = [value for key, value in query if key == "region"]
        if not asked:  # the user's own region unless another inside it is asked for
            query.append(("region", scope))
            connection.scope["query_string"] = urlencode(query).encode("latin-1")
            connection.__dict__.pop("_query_params", None)
        elif not all(within(value.strip("/"), scope) for value in asked):
            raise _Refusal(403, f"region {asked[0]!r} is outside your region {scope}")
    else:
        key = connection.path_params.get(f"{rule.scope}_id") or connection.path_params.get("key", "")
        known, region = resource_region(connection.app.state.store, rule.scope, key)
        if region is None:  # a center-level resource: for users whose prefix covers the center's region
            region = settings.center_region or None
        if not known or not within(region, scope):  # unknown and foreign look alike to a scoped user
            raise _Refusal(403, f"{rule.scope} {key!r} is not in your region {scope}")


def _rule(connection: HTTPConnection) -> tuple[str, Rule]:
    route = connection.scope.get("route")
    method = "WEBSOCKET" if connection.scope["type"] == "websocket" else connection.scope["method"]
    rule = rule_for(method, getattr(route, "path", ""))
    if rule is None:
        raise _Refusal(403, "operation not in the access policy")
    return method, rule


def _decide_user(connection: HTTPConnection, method: str, rule: Rule) -> Principal:
    """A user's route: the token's user (a store read), the Origin, the role, the region."""
    principal = _principal(connection)
    if principal.by_cookie:
        _check_origin(connection, method)
    if not role_may(principal.user.role, rule.permission):
        raise _Refusal(403, f"role {principal.user.role} may not do this ({rule.permission} needed)")
    _check_region(connection, rule, principal.user)
    return principal


async def authorize(connection: HTTPConnection) -> Principal | None:
    """The app-wide guard: the policy's rule for this route, applied (None: a public/collector route).

    Async so that the rule is looked up on the event loop: a public or collector route (a collector's
    batch, a peer center's signed cascade message) costs no trip to the threadpool; only a user's
    checks, which read the store (token, resource region), go there."""
    try:
        method, rule = _rule(connection)
        if rule.permission in ("public", "collector"):
            principal = None
        else:
            principal = await run_in_threadpool(_decide_user, connection, method, rule)
    except _Refusal as refusal:
        if connection.scope["type"] == "websocket":
            raise WebSocketException(4400 + refusal.status % 100, refusal.message) from None
        raise HTTPException(refusal.status, refusal.message, headers=refusal.headers) from None
    connection.state.principal = principal
    return principal


def require_user(request: Request) -> str:
    """The logged-in user's name (``authorize`` has already let the request through)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})
    return principal.user.name


def current_user(request: Request) -> UserInfo:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})
    return principal.user


def row_scope(request: Request) -> RowScope | None:
    """The rows a ``rows``-scoped list shows this user: None (every row) for a user of the whole country
    (empty prefix), else those of the user's region, and the center-level rows without a region when
    the user's prefix covers the center's region."""
    prefix = current_user(request).region
    if not prefix:
        return None
    center_region = request.app.state.settings.center_region or None
    return RowScope(prefix, unregioned=within(center_region, prefix))


async def request_body(request: Request) -> bytes:
    """The raw body, read on the event loop so that plain ``def`` routes (run in the threadpool) get it."""
    return await request.body()


RawBody = Annotated[bytes, Depends(request_body)]


def signed_collector(collector_id: str, request: Request, body: RawBody) -> str:
    """The path's collector, once the request's signature (fresh, not replayed) checks out."""
    # the path as it came on the wire (not percent-decoded), as the collector signed it
    target = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    if query := request.scope.get("query_string", b"").decode("latin-1"):
        target += f"?{query}"
    verify_request(request.app.state.store, collector_id, request.method, target, body, request.headers)
    return collector_id


StoreDep = Annotated[Store, Depends(get_store)]
UserDep = Annotated[str, Depends(require_user)]
CurrentUser = Annotated[UserInfo, Depends(current_user)]
RowScopeDep = Annotated[RowScope | None, Depends(row_scope)]
SignedCollector = Annotated[str, Depends(signed_collector)]

"""Login and sessions: ``POST /api/v1/login`` → bearer token (also set as an HttpOnly cookie for the UI).

Guessing is throttled: after ``login_max_failures`` wrong passwords in a row for one user name, or ten
times that many from one client address, logins for it are refused with 429 and ``Retry-After`` for
``login_lockout_s`` — the right password included (:class:`LoginThrottle`, per center process).  The
cookie is ``Secure`` whenever the request came over HTTPS, the center serves TLS itself, or
``cookie_secure`` says so.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from carbonflow.center.api.deps import SESSION_COOKIE, CurrentUser, StoreDep, _bearer, request_token
from carbonflow.center.store import authenticate, end_session, record_audit, start_session

router = APIRouter(prefix="/api/v1", tags=["auth"])
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ADDRESS_FACTOR = 10  # an address may fail for this many users' worth before it is locked


class LoginThrottle:
    """Consecutive failures per key (``user:NAME``, ``addr:IP``) and the lock each earns."""

    def __init__(self, max_failures: int, lockout_s: float, clock=time.monotonic) -> None:
        self.max_failures, self.lockout_s, self.clock = max_failures, lockout_s, clock
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int:
        """Seconds until every key is free again (0: free now)."""
        now = self.clock()
        with self._lock:
            waits = [self._locked_until.get(key, 0.0) - now for key in keys]
        return max(0, math.ceil(max(waits, default=0.0)))

    def failed(self, key: str, limit: int) -> None:
        with self._lock:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            if count >= limit:
                self._locked_until[key] = self.clock() + self.lockout_s
                self._failures[key] = 0

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def throttle_of(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        settings = state.settings
        state.login_throttle = LoginThrottle(settings.login_max_failures, settings.login_lockout_s)
    return state.login_throttle


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/login")
def login(body: Login, request: Request, store: StoreDep) -> JSONResponse:
    settings = request.app.state.settings
    throttle = throttle_of(request)
    address = request.client.host if request.client else "?"
    user_key, address_key = f"user:{body.name}", f"addr:{address}"
    wait = throttle.retry_after(user_key, address_key)
    if wait:
        record_audit(store, body.name, "login.locked", detail={"from": address})
        raise HTTPException(
            429, f"too many failed logins; retry in {wait} s", headers={"Retry-After": str(wait)}
        )
    user = authenticate(store, body.name, body.password)
    if user is None:
        throttle.failed(user_key, settings.login_max_failures)
        throttle.failed(address_key, settings.login_max_failures * ADDRESS_FACTOR)
        record_audit(store, body.name, "login.failed", detail={"from": address})
        raise HTTPException(401, "wrong user name or password")
    throttle.succeeded(user_key)
    throttle.succeeded(address_key)
    token, expires = start_session(store, user.name, lifetime=timedelta(hours=settings.session_hours))
    record_audit(store, user.name, "login", detail={"from": address})
    response = JSONResponse(
        {
            "token": token,
            "token_type": "bearer",  # nosec B105
            "user": user.name,
            "role": user.role,
            "region": user.region,
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure or settings.tls_enabled or is_https(request),
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, store: StoreDep, credentials: Credentials) -> JSONResponse:
    token = request_token(request, credentials)
    if token:
        end_session(store, token)
    response = JSONResponse({"status": "logged out"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me")
def me(user: CurrentUser, request: Request) -> dict:
    return {
        "user": user.name,
        "role": user.role,
        "region": user.region,
        "time_zone": request.app.state.settings.time_zone,
    }

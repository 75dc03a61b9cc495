"""Login and sessions: ``POST /api/v1/login`` → bearer token (also set as an HttpOnly cookie for the UI)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from carbonflow.center.api.deps import SESSION_COOKIE, StoreDep, UserDep, _bearer, request_token
from carbonflow.center.store import authenticate, end_session, record_audit, start_session, user_for_token

router = APIRouter(prefix="/api/v1", tags=["auth"])
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/login")
def login(body: Login, request: Request, store: StoreDep) -> JSONResponse:
    settings = request.app.state.settings
    user = authenticate(store, body.name, body.password)
    if user is None:
        record_audit(store, body.name, "login.failed")
        raise HTTPException(401, "wrong user name or password")
    token, expires = start_session(store, user.name, lifetime=timedelta(hours=settings.session_hours))
    record_audit(store, user.name, "login")
    response = JSONResponse(
        {
            "token": token,
            "token_type": "bearer",
            "user": user.name,
            "role": user.role,
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
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
def me(
    user: UserDep,
    request: Request,
    store: StoreDep,
    credentials: Credentials,
) -> dict:
    info = user_for_token(store, request_token(request, credentials) or "")
    return {
        "user": user,
        "role": info.role if info else "api",
        "time_zone": request.app.state.settings.time_zone,
    }

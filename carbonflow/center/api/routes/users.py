"""Users, admin only: ``GET /api/v1/users``, ``POST /api/v1/users`` (create), ``PATCH
/api/v1/users/{name}`` (role, region, disabled, password).  Every change is audited; passwords are
never returned."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from carbonflow.center.api.deps import StoreDep, UserDep
from carbonflow.center.store import create_user, get_user, list_users, record_audit, update_user

router = APIRouter(prefix="/api/v1", tags=["users"])
Role = Literal["admin", "operator", "analyst", "auditor", "viewer"]
Region = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_\-/]*$")


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@\-]+$")
    password: str = Field(min_length=8, max_length=1000)
    role: Role
    region: str = Field(default="", max_length=200, pattern=r"^[A-Za-z0-9_\-/]*$")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    region: str | None = Region
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1000)


def _from(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.get("/users")
def users(store: StoreDep) -> dict:
    return {"items": [asdict(user) for user in list_users(store)]}


@router.post("/users", status_code=201)
def add_user(body: NewUser, store: StoreDep, actor: UserDep, request: Request) -> dict:
    if get_user(store, body.name) is not None:
        raise HTTPException(409, f"user {body.name!r} exists (change it with PATCH)")
    user = create_user(store, body.name, body.password, body.role, body.region)
    record_audit(
        store,
        actor,
        "user.create",
        body.name,
        {"role": user.role, "region": user.region, "from": _from(request)},
    )
    return asdict(user)


@router.patch("/users/{name}")
def change_user(name: str, body: UserChange, store: StoreDep, actor: UserDep, request: Request) -> dict:
    changes = body.model_dump(exclude_none=True)
    if name == actor and (changes.get("disabled") or changes.get("role", "admin") != "admin"):
        raise HTTPException(409, "an admin cannot disable or demote themself")
    user = update_user(store, name, **changes)
    if user is None:
        raise HTTPException(404, f"unknown user {name!r}")
    shown = {key: value for key, value in changes.items() if key != "password"}
    if "password" in changes:
        shown["password"] = "changed"
    record_audit(store, actor, "user.update", name, {**shown, "from": _from(request)})
    return asdict(user)

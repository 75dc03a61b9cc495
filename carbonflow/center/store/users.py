"""The center's users and their login sessions.

Passwords are stored as scrypt hashes (``hashlib.scrypt``, RFC 7914; n=2**14, r=8, p=1, 16-byte random
salt) in the self-describing form ``scrypt$n$r$p$salt$hash`` (base64), so the cost can be raised later
without breaking stored hashes.  A login creates a session: a random 256-bit token handed to the client
once; only its SHA-256 is stored (a leaked table gives no usable token), with an expiry.  Each user
has a role (``admin``, ``operator``, ``analyst``, ``auditor``, ``viewer`` — what each may do is the
table in ``center/api/policy.py``) and a region prefix (``""`` = everything, ``AH``, ``AH/HF``, …) that
scopes what they see and command.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, Connection, ForeignKey, Index, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import Base
from carbonflow.center.store.types import UtcDateTime

ROLES = ("admin", "operator", "analyst", "auditor", "viewer")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_LIFETIME = timedelta(hours=12)


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(200), default="", server_default="")  # "" = all regions
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UserSession(Base):
    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    region: str = ""
    disabled: bool = False


def normalise_region(region: str | None) -> str:
    """``"AH/HF/"`` → ``"AH/HF"``; ``None``/``""``/``"/"`` → ``""`` (every region).  A part may hold
    letters, digits, ``-`` and ``_`` only."""
    parts = [part for part in (region or "").strip().split("/") if part]
    for part in parts:
        if not all(ch.isalnum() or ch in "-_" for ch in part):
            raise ValueError(f"region {region!r}: part {part!r} may hold letters, digits, - and _ only")
    return "/".join(parts)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * int(n) * int(r) * 2 + 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def create_user(
    target: Store | Session | Connection,
    name: str,
    password: str,
    role: str = "operator",
    region: str = "",
) -> UserInfo:
    """Create (or reset: same name → new password, role and region) a user."""
    if not name or not password:
        raise ValueError("a user needs a name and a non-empty password")
    _check_role(role)
    region = normalise_region(region)
    row = {"password_hash": hash_password(password), "role": role, "region": region, "disabled": False}
    with connection_of(target, write=True) as connection:
        exists = connection.execute(select(User.name).where(User.name == name)).first()
        if exists:
            connection.execute(User.__table__.update().where(User.name == name).values(**row))
        else:
            connection.execute(
                User.__table__.insert(), {"name": name, "created_at": datetime.now(UTC), **row}
            )
    return UserInfo(name, role, region)


def update_user(
    target: Store | Session | Connection,
    name: str,
    *,
    role: str | None = None,
    region: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> UserInfo | None:
    """Change what is given of an existing user (None: unknown user).  Disabling or a new password
    ends the user's sessions."""
    values: dict[str, object] = {}
    if role is not None:
        _check_role(role)
        values["role"] = role
    if region is not None:
        values["region"] = normalise_region(region)
    if disabled is not None:
        values["disabled"] = disabled
    if password is not None:
        if not password:
            raise ValueError("the password must not be empty")
        values["password_hash"] = hash_password(password)
    with connection_of(target, write=True) as connection:
        if values:
            connection.execute(User.__table__.update().where(User.name == name).values(**values))
        if disabled or password is not None:
            connection.execute(delete(UserSession).where(UserSession.user_name == name))
        row = connection.execute(_USER_COLUMNS.where(User.name == name)).first()
    return None if row is None else _info(row)


def get_user(target: Store | Session | Connection, name: str) -> UserInfo | None:
    with connection_of(target, write=False) as connection:
        row = connection.execute(_USER_COLUMNS.where(User.name == name)).first()
    return None if row is None else _info(row)


def list_users(target: Store | Session | Connection) -> list[UserInfo]:
    with connection_of(target, write=False) as connection:
        rows = connection.execute(_USER_COLUMNS.order_by(User.name)).all()
    return [_info(row) for row in rows]


_USER_COLUMNS = select(User.name, User.role, User.region, User.disabled)


def _info(row) -> UserInfo:
    return UserInfo(row.name, row.role, row.region or "", bool(row.disabled))


def authenticate(target: Store | Session | Connection, name: str, password: str) -> UserInfo | None:
    """The user if the password is right (and the user not disabled), else None."""
    with connection_of(target, write=False) as connection:
        user = connection.execute(
            select(User.name, User.password_hash, User.role, User.region, User.disabled).where(
                User.name == name
            )
        ).first()
    if user is None:
        verify_password(password, hash_password("x"))  # same work either way: no user-name oracle by timing
        return None
    if user.disabled or not verify_password(password, user.password_hash):
        return None
    return _info(user)


def start_session(
    target: Store | Session | Connection,
    user_name: str,
    *,
    lifetime: timedelta = SESSION_LIFETIME,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A new session for the user: (token — shown once, stored only hashed — and its expiry)."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    expires = now + lifetime
    with connection_of(target, write=True) as connection:
        connection.execute(UserSession.__table__.delete().where(UserSession.expires_at < now))
        connection.execute(
            UserSession.__table__.insert(),
            {
                "token_hash": _token_hash(token),
                "user_name": user_name,
                "created_at": now,
                "expires_at": expires,
            },
        )
    return token, expires


def user_for_token(
    target: Store | Session | Connection, token: str, *, now: datetime | None = None
) -> UserInfo | None:
    now = now or datetime.now(UTC)
    query = _USER_COLUMNS.join(UserSession, UserSession.user_name == User.name).where(
        UserSession.token_hash == _token_hash(token),
        UserSession.expires_at > now,
        User.disabled.is_(False),
    )
    with connection_of(target, write=False) as connection:
        row = connection.execute(query).first()
    return None if row is None else _info(row)


def end_session(target: Store | Session | Connection, token: str) -> None:
    with connection_of(target, write=True) as connection:
        connection.execute(delete(UserSession).where(UserSession.token_hash == _token_hash(token)))

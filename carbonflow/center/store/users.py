"""The center's users and their login sessions.

Passwords are stored as scrypt hashes (``hashlib.scrypt``, RFC 7914; n=2**14, r=8, p=1, 16-byte random
salt) in the self-describing form ``scrypt$n$r$p$salt$hash`` (base64), so the cost can be raised later
without breaking stored hashes.  A login creates a session: a random 256-bit token handed to the client
once; only its SHA-256 is stored (a leaked table gives no usable token), with an expiry.  Roles are
plain names until the security issue brings RBAC (``admin``, ``operator``, ``viewer``).
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

ROLES = ("admin", "operator", "viewer")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_LIFETIME = timedelta(hours=12)


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
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


def create_user(
    target: Store | Session | Connection, name: str, password: str, role: str = "operator"
) -> UserInfo:
    """Create (or reset: same name → new password and role) a user."""
    if not name or not password:
        raise ValueError("a user needs a name and a non-empty password")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    row = {"password_hash": hash_password(password), "role": role, "disabled": False}
    with connection_of(target, write=True) as connection:
        exists = connection.execute(select(User.name).where(User.name == name)).first()
        if exists:
            connection.execute(User.__table__.update().where(User.name == name).values(**row))
        else:
            connection.execute(
                User.__table__.insert(), {"name": name, "created_at": datetime.now(UTC), **row}
            )
    return UserInfo(name, role)


def authenticate(target: Store | Session | Connection, name: str, password: str) -> UserInfo | None:
    """The user if the password is right (and the user not disabled), else None."""
    with connection_of(target, write=False) as connection:
        user = connection.execute(
            select(User.name, User.password_hash, User.role, User.disabled).where(User.name == name)
        ).first()
    if user is None:
        verify_password(password, hash_password("x"))  # same work either way: no user-name oracle by timing
        return None
    if user.disabled or not verify_password(password, user.password_hash):
        return None
    return UserInfo(user.name, user.role)


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
    query = (
        select(User.name, User.role)
        .join(UserSession, UserSession.user_name == User.name)
        .where(
            UserSession.token_hash == _token_hash(token),
            UserSession.expires_at > now,
            User.disabled.is_(False),
        )
    )
    with connection_of(target, write=False) as connection:
        row = connection.execute(query).first()
    return None if row is None else UserInfo(row.name, row.role)


def end_session(target: Store | Session | Connection, token: str) -> None:
    with connection_of(target, write=True) as connection:
        connection.execute(delete(UserSession).where(UserSession.token_hash == _token_hash(token)))

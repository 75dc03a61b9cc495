"""A collector's secret, rotated without downtime (docs/security.md#collector-secrets).

``rotate_collector_secret`` makes a new secret current and keeps the old one as *previous*, accepted
until ``previous_secret_until`` (the overlap) or until the collector proves it holds the new one — its
first message that verifies under the new secret retires the old one at once.  Until then the center
signs what it sends down (commands, configurations) with the previous secret, the one the collector
still holds, so commands keep flowing while the operator installs the new secret on the collector.
An overlap of zero cuts the old secret off at once (a stolen secret).  Both are sealed at rest
(store/sealing.py).
"""

from __future__ import annotations

import secrets as random_secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import NotFoundError, StoreError
from carbonflow.center.store.schema import Collector
from carbonflow.center.store.sealing import reseal, seal, unseal

__all__ = [
    "DEFAULT_ROTATION_OVERLAP",
    "RotatedSecret",
    "collector_secrets",
    "collector_signing_secret",
    "retire_previous_secret",
    "rewrap_collector_secrets",
    "rotate_collector_secret",
]

DEFAULT_ROTATION_OVERLAP = timedelta(days=7)


@dataclass(frozen=True)
class RotatedSecret:
    collector_id: str
    secret: str  # shown once, to be installed on the collector
    previous_until: datetime | None  # None: the old secret was cut off at once


def _row(connection: Connection, collector_id: str):
    return connection.execute(
        select(Collector.secret, Collector.previous_secret, Collector.previous_secret_until).where(
            Collector.id == collector_id
        )
    ).one_or_none()


def _pending_previous(row, now: datetime) -> str | None:
    if row.previous_secret is None or row.previous_secret_until is None or row.previous_secret_until <= now:
        return None
    return row.previous_secret


def collector_secrets(
    target: Store | Session | Connection, collector_id: str, *, now: datetime | None = None
) -> list[bytes]:
    """The secrets a message of this collector may be signed with: the current one, then the previous
    one while its overlap lasts.  Empty for an unknown collector."""
    now = now or datetime.now(UTC)
    with connection_of(target, write=False) as connection:
        row = _row(connection, collector_id)
    if row is None:
        return []
    what = f"collector {collector_id!r}"
    found = [unseal(row.secret, what).encode("utf-8")]
    previous = _pending_previous(row, now)
    if previous is not None:
        found.append(unseal(previous, f"{what} (previous secret)").encode("utf-8"))
    return found


def collector_signing_secret(target: Store | Session | Connection, collector_id: str) -> bytes | None:
    """The secret to sign what goes down to the collector with: the one it holds — the previous secret
    while a rotation waits for the collector, else the current one."""
    secrets = collector_secrets(target, collector_id)
    return secrets[-1] if secrets else None


def rotate_collector_secret(
    target: Store | Session | Connection,
    collector_id: str,
    *,
    new_secret: str | None = None,
    overlap: timedelta = DEFAULT_ROTATION_OVERLAP,
    now: datetime | None = None,
) -> RotatedSecret:
    now = now or datetime.now(UTC)
    if overlap < timedelta(0):
        raise StoreError(f"collector {collector_id!r}: overlap must not be negative")
    secret = new_secret if new_secret is not None else random_secrets.token_urlsafe(32)
    if len(secret) < 16:
        raise StoreError(f"collector {collector_id!r}: a secret needs at least 16 characters")
    with connection_of(target, write=True) as connection:
        row = _row(connection, collector_id)
        if row is None:
            raise NotFoundError(f"collector {collector_id!r} not found")
        pending = _pending_previous(row, now)
        if pending is not None and overlap > timedelta(0):
            # a second rotation would drop the secret the collector may still hold: it would go silent
            raise StoreError(
                f"collector {collector_id!r}: a rotation waits for the collector until "
                f"{row.previous_secret_until.isoformat()}; install that secret first, "
                "or rotate with overlap 0"
            )
        until = now + overlap if overlap > timedelta(0) else None
        connection.execute(
            update(Collector)
            .where(Collector.id == collector_id)
            .values(
                secret=seal(secret),
                previous_secret=None if until is None else row.secret,
                previous_secret_until=until,
            )
        )
    return RotatedSecret(collector_id, secret, until)


def retire_previous_secret(target: Store | Session | Connection, collector_id: str) -> None:
    """The collector signed with its current secret: the old one is no longer needed."""
    with connection_of(target, write=True) as connection:
        connection.execute(
            update(Collector)
            .where(Collector.id == collector_id, Collector.previous_secret.is_not(None))
            .values(previous_secret=None, previous_secret_until=None)
        )


def rewrap_collector_secrets(target: Store | Session | Connection) -> int:
    """Seal every stored collector secret under the first configured key (clear ones included); the
    number of collectors rewritten."""
    with connection_of(target, write=True) as connection:
        rows = connection.execute(select(Collector.id, Collector.secret, Collector.previous_secret)).all()
        for row in rows:
            what = f"collector {row.id!r}"
            previous = row.previous_secret
            connection.execute(
                update(Collector)
                .where(Collector.id == row.id)
                .values(
                    secret=reseal(row.secret, what),
                    previous_secret=None if previous is None else reseal(previous, what),
                )
            )
    return len(rows)

"""Freshness of signed collector messages: each carries ``sent_at`` (the stamp's ``signed_at``) and a
random ``nonce`` inside its signature; the center accepts one only when it is recent
(``|now - sent_at| <= window``), its nonce unseen and — per collector and kind, for kinds where only the
latest counts (status reports) — not older than the newest already accepted (out of order).  Batches,
images, command results and requests are not ordered: several may be in flight at once and each stands
on its own (batches and images are idempotent); the nonce alone stops their replay.

Nonces are kept for twice the window in ``message_nonces`` (what a restart must not forget); older ones
are pruned on the way, since a message that old is refused as stale anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Index, String, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import StoreError
from carbonflow.center.store.schema import ID, Base
from carbonflow.center.store.types import UtcDateTime
from carbonflow.messages.signing import FRESHNESS_WINDOW

__all__ = ["FRESHNESS_WINDOW", "MessageNonce", "StaleMessageError", "accept_fresh"]


class MessageNonce(Base):
    __tablename__ = "message_nonces"
    __table_args__ = (Index("ix_message_nonces_sent_at", "sent_at"),)

    collector_id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StaleMessageError(StoreError):
    """A signed message outside the freshness window, replayed, or older than one already accepted."""

    status_code = 401


def accept_fresh(
    target: Store | Session | Connection,
    collector_id: str,
    kind: str,
    nonce: str | None,
    sent_at: datetime | None,
    *,
    now: datetime,
    window: timedelta = FRESHNESS_WINDOW,
    ordered: bool = True,
) -> None:
    """Record the message's nonce, or raise :class:`StaleMessageError` saying why it is refused."""
    what = f"{kind} of collector {collector_id!r}"
    if not nonce or sent_at is None or len(nonce) > 64:
        raise StaleMessageError(f"{what}: no sent_at and nonce inside the signature", {"reason": "unfresh"})
    if abs(now - sent_at) > window:
        raise StaleMessageError(
            f"{what}: stale (sent_at {sent_at.isoformat()}, {window.total_seconds():.0f} s window)",
            {"reason": "stale"},
        )
    with connection_of(target, write=True) as connection:
        connection.execute(delete(MessageNonce).where(MessageNonce.sent_at < now - 2 * window))
        newest = None
        if ordered:
            newest = connection.execute(
                select(func.max(MessageNonce.sent_at)).where(
                    MessageNonce.collector_id == collector_id, MessageNonce.kind == kind
                )
            ).scalar()
        if newest is not None and sent_at < newest:
            raise StaleMessageError(
                f"{what}: out of order (older than one accepted)", {"reason": "reordered"}
            )
        try:
            with connection.begin_nested():
                connection.execute(
                    MessageNonce.__table__.insert(),
                    {"collector_id": collector_id, "kind": kind, "nonce": nonce, "sent_at": sent_at},
                )
        except IntegrityError:
            raise StaleMessageError(
                f"{what}: replayed (nonce already used)", {"reason": "replayed"}
            ) from None

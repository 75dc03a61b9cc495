"""Signed checkpoints of the chain heads (docs/tamper-evidence.md).

A checkpoint records the heads (kind, key, seq, hash) of every chain that moved since the previous
checkpoint, in ``checkpoint_heads``, and signs with Ed25519 a small document: its id, time, the
SHA-256 over those heads, their number, the signing public key and the previous checkpoint's document
hash (checkpoints form a chain of their own, so a deleted or inserted checkpoint shows).  A verifier
then knows, per chain, a link that existed when the newest checkpoint mentioning it was made: deleting
it later — the tail of a chain, the head row too — is caught even by someone who rewrote
``chain_heads``.

"Moved since" is ``chain_heads.updated_at`` at or after the previous checkpoint's time minus
``IN_FLIGHT_MARGIN``: a transaction that appended before that checkpoint but committed after it is
still picked up by the next one (re-recording an unchanged head is harmless).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import BigInteger, Connection, Integer, String, Text, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.chain import GENESIS, ChainHead, ts_text
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import AutoId, Base
from carbonflow.center.store.types import Sha256, UtcDateTime

IN_FLIGHT_MARGIN = timedelta(minutes=10)  # longer than any write transaction of the center


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    previous: Mapped[str] = mapped_column(String(64))  # document hash of the checkpoint before
    heads_sha256: Mapped[str] = mapped_column(String(64))
    n_heads: Mapped[int] = mapped_column(Integer)
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the raw 32-byte Ed25519 key
    signature: Mapped[str] = mapped_column(Text)  # base64 Ed25519 signature of the document


class CheckpointHead(Base):
    __tablename__ = "checkpoint_heads"

    checkpoint_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(Sha256)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def document(row: Any) -> bytes:
    """The signed bytes of a checkpoint: compact JSON, keys sorted."""
    fields = {
        "id": row["id"],
        "created_at": ts_text(row["created_at"]),
        "previous": row["previous"],
        "heads_sha256": row["heads_sha256"],
        "n_heads": row["n_heads"],
        "public_key": row["public_key"],
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")


def document_hash(row: Any) -> str:
    return hashlib.sha256(document(row)).hexdigest()


class HeadsDigest:
    """SHA-256 over the heads of one checkpoint, fed in (kind, key) order."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0

    def add(self, kind: str, key: str, seq: int, digest: str) -> None:
        self.digest.update(json.dumps([kind, key, seq, digest], separators=(",", ":")).encode("utf-8"))
        self.digest.update(b"\n")
        self.count += 1

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def make_checkpoint(store: Store, key: Ed25519PrivateKey, *, now: datetime | None = None) -> dict[str, Any]:
    """Record and sign the heads that moved since the last checkpoint; answers the checkpoint row."""
    now = now or datetime.now(UTC)
    with store.write() as connection:
        last = connection.execute(
            select(Checkpoint.__table__).order_by(Checkpoint.id.desc()).limit(1)
        ).first()
        heads = select(ChainHead.kind, ChainHead.key, ChainHead.seq, ChainHead.hash).where(ChainHead.seq > 0)
        if last is not None:
            heads = heads.where(ChainHead.updated_at >= last.created_at - IN_FLIGHT_MARGIN)
        row: dict[str, Any] = {
            "created_at": now,
            "previous": GENESIS if last is None else document_hash(last._mapping),
            "heads_sha256": "",
            "n_heads": 0,
            "public_key": public_key_text(key),
            "signature": "",
        }
        row["id"] = connection.execute(insert(Checkpoint).returning(Checkpoint.id), row).scalar_one()
        digest = HeadsDigest()
        page: list[dict[str, Any]] = []
        # (kind, key) order without relying on the database's collation: sorted here, heads are few
        for head in sorted(connection.execute(heads), key=lambda h: (h.kind, h.key)):
            digest.add(head.kind, head.key, head.seq, head.hash)
            page.append(
                {
                    "checkpoint_id": row["id"],
                    "kind": head.kind,
                    "key": head.key,
                    "seq": head.seq,
                    "hash": head.hash,
                }
            )
            if len(page) >= 1000:
                connection.execute(insert(CheckpointHead), page)
                page = []
        if page:
            connection.execute(insert(CheckpointHead), page)
        row["heads_sha256"], row["n_heads"] = digest.hexdigest(), digest.count
        row["signature"] = base64.b64encode(key.sign(document(row))).decode("ascii")
        connection.execute(
            Checkpoint.__table__.update()
            .where(Checkpoint.id == row["id"])
            .values(heads_sha256=row["heads_sha256"], n_heads=row["n_heads"], signature=row["signature"])
        )
    return row


def stored_key(text: str) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError:
        return None


def signature_ok(row: Any, public_key: Ed25519PublicKey | None) -> bool:
    if public_key is None:
        return False
    try:
        public_key.verify(base64.b64decode(row["signature"]), document(row))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class CheckpointView:
    """What verifying the checkpoints leaves for the chain walk: per chain, the newest checkpointed link."""

    expected: dict[tuple[str, str], tuple[int, str, int]]  # (kind, key) → (seq, hash, checkpoint id)
    count: int = 0
    last_id: int | None = None
    last_hash: str | None = None


def checkpoint_rows(connection: Connection) -> Iterator[Any]:
    yield from connection.execute(select(Checkpoint.__table__).order_by(Checkpoint.id))


def checkpoint_heads(connection: Connection, checkpoint_id: int) -> list[Any]:
    query = select(CheckpointHead.kind, CheckpointHead.key, CheckpointHead.seq, CheckpointHead.hash).where(
        CheckpointHead.checkpoint_id == checkpoint_id
    )
    return sorted(connection.execute(query), key=lambda h: (h.kind, h.key))

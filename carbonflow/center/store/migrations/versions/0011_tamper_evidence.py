"""Tamper evidence: hash-chain columns on readings, interval versions, releases and the audit log;
chain heads, retention gaps, and signed checkpoints (docs/tamper-evidence.md).  The rows already stored are
chained here (store/backfill.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.backfill import chain_existing
from carbonflow.center.store.types import Sha256, UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# table → the integer type of its chain_seq (a reading chain or the audit log can grow past 2**31)
CHAINED = {
    "readings": sa.BigInteger(),
    "intervals": sa.Integer(),
    "interval_versions": sa.Integer(),
    "releases": sa.BigInteger(),
    "audit": sa.BigInteger(),
}


def upgrade() -> None:
    for table, seq_type in CHAINED.items():
        op.add_column(table, sa.Column("chain_seq", seq_type, nullable=True))
        op.add_column(table, sa.Column("chain_hash", Sha256(), nullable=True))
    op.create_table(
        "chain_heads",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", Sha256(), nullable=False),
        sa.Column("anchor_seq", sa.BigInteger(), nullable=False),
        sa.Column("anchor_hash", Sha256(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key"),
    )
    op.create_index("ix_chain_heads_updated_at", "chain_heads", ["updated_at"], unique=False)
    op.create_table(
        "chain_gaps",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", Sha256(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "seq"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("previous", sa.String(length=64), nullable=False),
        sa.Column("heads_sha256", sa.String(length=64), nullable=False),
        sa.Column("n_heads", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "checkpoint_heads",
        sa.Column("checkpoint_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", Sha256(), nullable=False),
        sa.PrimaryKeyConstraint("checkpoint_id", "kind", "key"),
    )
    chain_existing(op.get_bind())  # rows stored before: linked, so verify does not call them inserted


def downgrade() -> None:
    for table in ("checkpoint_heads", "checkpoints", "chain_gaps", "chain_heads"):
        op.drop_table(table)
    for table in CHAINED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("chain_hash")
            batch.drop_column("chain_seq")

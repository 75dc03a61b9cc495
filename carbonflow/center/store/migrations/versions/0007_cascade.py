"""The cascade between centers: messages accepted, sent and metered; each interval's region result;
the verdicts of the mutual verification (carbonflow/center/store/cascade.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cascade_messages",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", name="uq_cascade_messages_message_id"),
    )
    op.create_index("ix_cascade_messages_ts", "cascade_messages", ["ts", "kind"], unique=False)
    op.create_table(
        "cascade_results",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("region", sa.String(length=200), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("losses", sa.String(length=20), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "region"),
    )
    op.create_table(
        "cascade_verifications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=False),
        sa.Column("judge", sa.String(length=100), nullable=False),
        sa.Column("check", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("expected", sa.Float(), nullable=True),
        sa.Column("found", sa.Float(), nullable=True),
        sa.Column("tolerance", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("report_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cascade_verifications_ts", "cascade_verifications", ["ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cascade_verifications_ts", table_name="cascade_verifications")
    op.drop_table("cascade_verifications")
    op.drop_table("cascade_results")
    op.drop_index("ix_cascade_messages_ts", table_name="cascade_messages")
    op.drop_table("cascade_messages")

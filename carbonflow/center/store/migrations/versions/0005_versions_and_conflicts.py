"""Superseded versions of interval results (an interval metered again keeps what it replaces), and
readings offered again for a stored (point, ts) with a different value.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import ExactDecimal, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interval_versions",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("estimation", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("superseded_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s", "version"),
    )
    op.create_index("ix_interval_versions_ts", "interval_versions", ["ts"], unique=False)
    op.create_table(
        "reading_conflicts",
        sa.Column("point_id", sa.String(length=100), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("stored_value", ExactDecimal(), nullable=True),
        sa.Column("offered_value", ExactDecimal(), nullable=True),
        sa.Column("collector_id", sa.String(length=100), nullable=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("point_id", "ts", "batch_id"),
    )
    op.create_index("ix_reading_conflicts_received_at", "reading_conflicts", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reading_conflicts_received_at", table_name="reading_conflicts")
    op.drop_table("reading_conflicts")
    op.drop_index("ix_interval_versions_ts", table_name="interval_versions")
    op.drop_table("interval_versions")

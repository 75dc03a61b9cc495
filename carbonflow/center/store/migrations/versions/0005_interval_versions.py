"""Superseded versions of interval results (an interval metered again keeps what it replaces).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

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


def downgrade() -> None:
    op.drop_index("ix_interval_versions_ts", table_name="interval_versions")
    op.drop_table("interval_versions")

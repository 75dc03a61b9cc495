"""Clock offsets over time: every measured offset of a device with its time (issue 18 §2), for the
maintenance page's chart (store/clock_offsets.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "clock_offsets",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("offset_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_clock_offsets_device_ts", "clock_offsets", ["device_id", "ts"], unique=False)
    op.create_index("ix_clock_offsets_ts", "clock_offsets", ["ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_clock_offsets_ts", table_name="clock_offsets")
    op.drop_index("ix_clock_offsets_device_ts", table_name="clock_offsets")
    op.drop_table("clock_offsets")

"""Metrology: each point's accuracy (MPE %, from its device's class), register resolution and whether it
shows the secondary side; each device's CT and VT ratios, accuracy class and a metrology problem found
at registration; the per-step comparison of an electric-carbon meter check.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import ExactDecimal

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("points") as batch:  # batch mode: SQLite cannot ALTER much
        batch.add_column(sa.Column("accuracy_percent", sa.Float(), nullable=True))
        batch.add_column(sa.Column("resolution", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("secondary", sa.Boolean(), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("ct_ratio", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("vt_ratio", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("accuracy_class", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("metrology_error", sa.Text(), nullable=True))
    with op.batch_alter_table("meter_checks") as batch:
        batch.add_column(sa.Column("intervals", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meter_checks") as batch:
        batch.drop_column("intervals")
    with op.batch_alter_table("devices") as batch:
        for column in ("metrology_error", "accuracy_class", "vt_ratio", "ct_ratio"):
            batch.drop_column(column)
    with op.batch_alter_table("points") as batch:
        for column in ("secondary", "resolution", "accuracy_percent"):
            batch.drop_column(column)

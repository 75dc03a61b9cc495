"""Remote maintenance and meter checks: collector status reports, versioned collector configurations,
electric-carbon meter vs platform comparisons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import ExactDecimal, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collectors") as batch:  # batch mode: SQLite cannot ALTER much
        batch.add_column(sa.Column("status_report", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reported_at", UtcDateTime(), nullable=True))
    op.create_table(
        "collector_configs",
        sa.Column("collector_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["collector_id"], ["collectors.id"]),
        sa.PrimaryKeyConstraint("collector_id", "version"),
    )
    op.create_table(
        "meter_checks",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("carbon_point", sa.String(length=200), nullable=False),
        sa.Column("energy_point", sa.String(length=200), nullable=False),
        sa.Column("start_ts", UtcDateTime(), nullable=False),
        sa.Column("end_ts", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("energy_kwh", ExactDecimal(), nullable=True),
        sa.Column("expected_kg", ExactDecimal(), nullable=True),
        sa.Column("shown_kg", ExactDecimal(), nullable=True),
        sa.Column("deviation_kg", ExactDecimal(), nullable=True),
        sa.Column("resolution_kg", ExactDecimal(), nullable=True),
        sa.Column("uncertainty_kg", ExactDecimal(), nullable=True),
        sa.Column("factors", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'mismatch', 'incomplete')", name="ck_meter_checks_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_meter_checks_device_end", "meter_checks", ["device_id", "end_ts"], unique=False)
    op.create_index("ix_meter_checks_end", "meter_checks", ["end_ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_meter_checks_end", table_name="meter_checks")
    op.drop_index("ix_meter_checks_device_end", table_name="meter_checks")
    op.drop_table("meter_checks")
    op.drop_table("collector_configs")
    with op.batch_alter_table("collectors") as batch:
        batch.drop_column("reported_at")
        batch.drop_column("status_report")

"""Alarms: rules (as data), raised alarms with their lifecycle, and the notification queue.

Revision ID: 0010
Revises: 0009

Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alarm_rules",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("subject_kind", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.String(length=100), nullable=False),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("ack_by", sa.String(length=100), nullable=True),
        sa.Column("ack_at", UtcDateTime(), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("raised_at", UtcDateTime(), nullable=False),
        sa.Column("cleared_at", UtcDateTime(), nullable=True),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("image_camera", sa.String(length=100), nullable=True),
        sa.Column("image_ts", UtcDateTime(), nullable=True),
        sa.Column("image_key", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alarms_state", "alarms", ["state"], unique=False)
    op.create_index(
        "ix_alarms_subject", "alarms", ["rule_id", "subject_kind", "subject_id", "state"], unique=False
    )
    op.create_index("ix_alarms_updated_at", "alarms", ["updated_at"], unique=False)
    op.create_index("ix_alarms_raised_at", "alarms", ["raised_at"], unique=False)
    op.create_table(
        "alarm_notifications",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alarm_notifications_status", "alarm_notifications", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_alarm_notifications_status", table_name="alarm_notifications")
    op.drop_table("alarm_notifications")
    for name in ("ix_alarms_raised_at", "ix_alarms_updated_at", "ix_alarms_subject", "ix_alarms_state"):
        op.drop_index(name, table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("alarm_rules")

"""Site-camera images: one row per (camera, ts) pointing to a content-addressed file on disk.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

(0004, remote maintenance, was written against 0002 in parallel; this revision follows it so the
history stays one line: 0001 -> 0002 -> 0004 -> 0003.)
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("camera_id", sa.String(length=100), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("object_key", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("collector_id", sa.String(length=100), nullable=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "ts"),
    )
    op.create_index("ix_images_ts", "images", ["ts"], unique=False)
    op.create_index("ix_images_object_key", "images", ["object_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_images_object_key", table_name="images")
    op.drop_index("ix_images_ts", table_name="images")
    op.drop_table("images")

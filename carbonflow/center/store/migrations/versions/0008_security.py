"""Security: each user's region scope; the nonces of signed collector messages (freshness, replay).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("region", sa.String(length=200), nullable=False, server_default=""))
    op.create_table(
        "message_nonces",
        sa.Column("collector_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("collector_id", "kind", "nonce"),
    )
    op.create_index("ix_message_nonces_sent_at", "message_nonces", ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_message_nonces_sent_at", table_name="message_nonces")
    op.drop_table("message_nonces")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("region")

"""Collector secrets sealed at rest and rotated without downtime: the secret column grows to hold a
Fernet token, and the secret before a rotation is kept (with its deadline) until the collector has
moved to the new one (docs/security.md, store/collector_secrets.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite does not enforce VARCHAR lengths, and re-creating the table (batch mode) would trip the
    # foreign keys of devices: only PostgreSQL widens the column
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("collectors", "secret", type_=sa.Text(), existing_type=sa.String(200))
    op.add_column("collectors", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column("collectors", sa.Column("previous_secret_until", UtcDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("collectors", "previous_secret_until")
    op.drop_column("collectors", "previous_secret")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("collectors", "secret", type_=sa.String(200), existing_type=sa.Text())

"""An interval's origin shares packed into one binary value (``intervals.origin_packed``,
store/packed_origin.py) instead of the JSON document in ``intervals.origin``; rows stored before keep
their JSON column and stay readable (readers take the packed column when it is set, else the JSON one).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intervals") as batch:
        batch.add_column(sa.Column("origin_packed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intervals") as batch:
        batch.drop_column("origin_packed")

"""The element rows of an archived interval result packed into one value of its header
(``archived_intervals.element_rows``, store/archived_rows.py) instead of one ``archived_results`` row
each; ``archived_results`` keeps what was archived before and stays readable.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archived_intervals") as batch:
        batch.add_column(sa.Column("element_rows", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("archived_intervals") as batch:
        batch.drop_column("element_rows")

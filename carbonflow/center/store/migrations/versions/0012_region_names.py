"""Region names: the regions of the grid document with their names in Chinese and English, so that the
UI shows names, not codes (docs/web.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("path", sa.String(200), primary_key=True),
        sa.Column("name_zh", sa.String(200), nullable=True),
        sa.Column("name_en", sa.String(200), nullable=True),
        sa.Column("level", sa.String(20), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("regions")

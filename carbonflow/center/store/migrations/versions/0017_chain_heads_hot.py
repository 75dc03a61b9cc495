"""``chain_heads`` updated in place: its ``updated_at`` index dropped and, on PostgreSQL, pages left half
free (``fillfactor = 50``), so moving a head is a heap-only (HOT) update — no index entry written.

Every ingested reading moves its point's head (2,000 per batch of 2,000 readings); with ``updated_at``
indexed each move wrote a new entry in both indexes.  The one reader of that index, the checkpoint's
"heads moved since" (store/checkpoints.py, minutes apart), scans the table instead — one row per chain.
The fillfactor applies to pages written from now on (``VACUUM FULL chain_heads`` rewrites the old ones).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_chain_heads_updated_at", table_name="chain_heads")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE chain_heads SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE chain_heads RESET (fillfactor)")
    op.create_index("ix_chain_heads_updated_at", "chain_heads", ["updated_at"], unique=False)

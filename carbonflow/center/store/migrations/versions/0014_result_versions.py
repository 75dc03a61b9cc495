"""Versioned recomputation (issue 17 §3): input corrections kept as records, numbered versions of the
interval results, the chunks a recomputation has written, and the results a version replaced
(store/corrections.py, store/result_versions.py, docs/recompute.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.types import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "input_corrections",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("element_id", sa.String(length=200), nullable=True),
        sa.Column("start_ts", UtcDateTime(), nullable=False),
        sa.Column("end_ts", UtcDateTime(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('emission_factor', 'reading', 'losses')", name="ck_input_corrections_kind"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_input_corrections_period", "input_corrections", ["start_ts", "end_ts"], unique=False)
    op.create_table(
        "result_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("start_ts", UtcDateTime(), nullable=False),
        sa.Column("end_ts", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.JSON(), nullable=True),
        sa.Column("corrections", sa.JSON(), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_index("ix_result_versions_fingerprint", "result_versions", ["fingerprint"], unique=True)
    op.create_table(
        "recompute_chunks",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("written_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", "chunk"),
    )
    op.create_table(
        "archived_intervals",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("superseded_by", sa.Integer(), nullable=False),
        sa.Column("losses", sa.String(length=20), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("estimation", sa.JSON(), nullable=True),
        sa.Column("generation_energy_kwh", sa.Float(), nullable=False),
        sa.Column("load_energy_kwh", sa.Float(), nullable=False),
        sa.Column("generation_carbon_kg", sa.Float(), nullable=False),
        sa.Column("load_carbon_kg", sa.Float(), nullable=False),
        sa.Column("loss_carbon_kg", sa.Float(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", "ts", "level", "interval_s"),
    )
    op.create_index("ix_archived_intervals_ts", "archived_intervals", ["ts"], unique=False)
    op.create_table(
        "archived_results",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_kg", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("version", "ts", "level", "interval_s", "kind", "element_id"),
    )
    op.create_index("ix_archived_results_ts", "archived_results", ["ts"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_archived_results_ts", table_name="archived_results")
    op.drop_table("archived_results")
    op.drop_index("ix_archived_intervals_ts", table_name="archived_intervals")
    op.drop_table("archived_intervals")
    op.drop_table("recompute_chunks")
    op.drop_index("ix_result_versions_fingerprint", table_name="result_versions")
    op.drop_table("result_versions")
    op.drop_index("ix_input_corrections_period", table_name="input_corrections")
    op.drop_table("input_corrections")

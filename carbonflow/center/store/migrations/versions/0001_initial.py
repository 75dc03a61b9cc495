"""Initial schema: topology, collection, readings, interval results, commands, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

On PostgreSQL the time-series tables are created as RANGE-partitioned parents (``postgresql_partition_by``)
and the monthly partitions around today are created at once; SQLite gets the same tables unpartitioned.
"""

import sqlalchemy as sa
from alembic import op

from carbonflow.center.store.partitions import ensure_partitions_ahead
from carbonflow.center.store.types import ExactDecimal, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DROP_ORDER = (
    "readings",
    "points",
    "devices",
    "batches",
    "commands",
    "collectors",
    "audit",
    "bus_results",
    "branch_results",
    "generator_results",
    "load_results",
    "intervals",
    "generators",
    "branches",
    "loads",
    "storage",
    "buses",
)


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("object", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"], unique=False)

    op.create_table(
        "branch_results",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_kg", sa.Float(), nullable=False),
        sa.Column("sending_bus", sa.String(length=100), nullable=True),
        sa.Column("p_send_mw", sa.Float(), nullable=False),
        sa.Column("p_recv_mw", sa.Float(), nullable=False),
        sa.Column("carbon_send_t_per_h", sa.Float(), nullable=False),
        sa.Column("carbon_recv_t_per_h", sa.Float(), nullable=False),
        sa.Column("loss_carbon_t_per_h", sa.Float(), nullable=False),
        sa.Column("loss_carbon_kg", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s", "element_id"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_branch_results_element", "branch_results", ["element_id", "ts"], unique=False)

    op.create_table(
        "bus_results",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_kg", sa.Float(), nullable=False),
        sa.Column("flux_mw", sa.Float(), nullable=False),
        sa.Column("load_mw", sa.Float(), nullable=False),
        sa.Column("load_carbon_t_per_h", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s", "element_id"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_bus_results_element", "bus_results", ["element_id", "ts"], unique=False)

    op.create_table(
        "buses",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("voltage_kv", sa.Float(), nullable=False),
        sa.Column("region", sa.String(length=200), nullable=False),
        sa.Column("industry", sa.String(length=100), nullable=True),
        sa.Column("x_km", sa.Float(), nullable=True),
        sa.Column("y_km", sa.Float(), nullable=True),
        sa.CheckConstraint("kind IN ('plant', 'substation', 'user')", name="ck_buses_kind"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_buses_industry"), "buses", ["industry"], unique=False)
    op.create_index(op.f("ix_buses_region"), "buses", ["region"], unique=False)

    op.create_table(
        "collectors",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("config_version", sa.String(length=100), nullable=True),
        sa.Column("last_seen", UtcDateTime(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "generator_results",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_kg", sa.Float(), nullable=False),
        sa.Column("p_mw", sa.Float(), nullable=False),
        sa.Column("carbon_t_per_h", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s", "element_id"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_generator_results_element", "generator_results", ["element_id", "ts"], unique=False)

    op.create_table(
        "intervals",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("losses", sa.String(length=20), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("estimation", sa.JSON(), nullable=True),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("origin", sa.JSON(), nullable=True),
        sa.Column("generation_energy_kwh", sa.Float(), nullable=False),
        sa.Column("load_energy_kwh", sa.Float(), nullable=False),
        sa.Column("generation_carbon_kg", sa.Float(), nullable=False),
        sa.Column("load_carbon_kg", sa.Float(), nullable=False),
        sa.Column("loss_carbon_kg", sa.Float(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_table(
        "load_results",
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("carbon_kg", sa.Float(), nullable=False),
        sa.Column("p_mw", sa.Float(), nullable=False),
        sa.Column("carbon_t_per_h", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ts", "level", "interval_s", "element_id"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_load_results_element", "load_results", ["element_id", "ts"], unique=False)

    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("collector_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("n_readings", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["collector_id"],
            ["collectors.id"],
        ),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_index(op.f("ix_batches_collector_id"), "batches", ["collector_id"], unique=False)
    op.create_index("ix_batches_received_at", "batches", ["received_at"], unique=False)

    op.create_table(
        "branches",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("from_bus", sa.String(length=100), nullable=False),
        sa.Column("to_bus", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.CheckConstraint("kind IN ('line', 'transformer')", name="ck_branches_kind"),
        sa.ForeignKeyConstraint(
            ["from_bus"],
            ["buses.id"],
        ),
        sa.ForeignKeyConstraint(
            ["to_bus"],
            ["buses.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_branches_from_bus"), "branches", ["from_bus"], unique=False)
    op.create_index(op.f("ix_branches_to_bus"), "branches", ["to_bus"], unique=False)

    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("collector_id", sa.String(length=100), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'acknowledged', 'failed')", name="ck_commands_status"
        ),
        sa.ForeignKeyConstraint(
            ["collector_id"],
            ["collectors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_commands_collector_status", "commands", ["collector_id", "status"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("collector_id", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=True),
        sa.Column("protocol", sa.String(length=30), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=True),
        sa.Column("address", sa.JSON(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("bus_id", sa.String(length=100), nullable=True),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("last_seen", UtcDateTime(), nullable=True),
        sa.Column("clock_offset_s", sa.Float(), nullable=True),
        sa.Column("firmware", sa.String(length=100), nullable=True),
        sa.Column("config_version", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["collector_id"],
            ["collectors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_devices_collector_id"), "devices", ["collector_id"], unique=False)

    op.create_table(
        "generators",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("plant", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=100), nullable=True),
        sa.Column("fuel", sa.String(length=50), nullable=True),
        sa.Column("intensity_g_per_kwh", sa.Float(), nullable=True),
        sa.Column("intensity_source", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bus_id"],
            ["buses.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_generators_bus_id"), "generators", ["bus_id"], unique=False)

    op.create_table(
        "loads",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=True),
        sa.Column("industry", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["bus_id"],
            ["buses.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_loads_bus_id"), "loads", ["bus_id"], unique=False)
    op.create_index(op.f("ix_loads_industry"), "loads", ["industry"], unique=False)

    op.create_table(
        "storage",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("bus_id", sa.String(length=100), nullable=False),
        sa.Column("p_max_mw", sa.Float(), nullable=True),
        sa.Column("e_max_mwh", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bus_id"],
            ["buses.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_storage_bus_id"), "storage", ["bus_id"], unique=False)

    op.create_table(
        "points",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=False),
        sa.Column("element_kind", sa.String(length=20), nullable=False),
        sa.Column("element_id", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.String(length=50), nullable=False),
        sa.Column("end", sa.String(length=10), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=True),
        sa.Column("scale", ExactDecimal(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_points_device_id"), "points", ["device_id"], unique=False)
    op.create_index("ix_points_element", "points", ["element_kind", "element_id", "quantity"], unique=False)

    op.create_table(
        "readings",
        sa.Column("point_id", sa.String(length=200), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("value", ExactDecimal(), nullable=True),
        sa.Column("quality", sa.String(length=10), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["point_id"],
            ["points.id"],
        ),
        sa.PrimaryKeyConstraint("point_id", "ts"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_readings_ts", "readings", ["ts"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # the partitioned parents exist; rows need a partition per month: create the current window now
        ensure_partitions_ahead(op.get_bind())


def downgrade() -> None:
    for table in DROP_ORDER:
        op.drop_table(table)  # indexes and (on PostgreSQL) partitions go with their table

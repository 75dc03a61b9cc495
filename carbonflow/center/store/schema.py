"""The center's tables (DESIGN §4a) as SQLAlchemy 2 declarative models.

Ids are strings.  Element tables hold the topology the metering assembles snapshots from; ``points`` maps
one quantity of one device to ``(element_kind, element_id, quantity, end)``; ``readings`` holds the
exact meter values, unique on ``(point_id, ts)``.  Interval result tables carry per interval both the
engine's rates and the interval's energies and carbon amounts, so every aggregation is a ratio of sums.

Time-series tables (``readings`` and the interval result tables) are RANGE-partitioned by month on
PostgreSQL (``postgresql_partition_by``; SQLite ignores it and gets plain tables), which is why their
primary keys include ``ts`` and why results keep no foreign key to the topology: history outlives a
renamed or removed element, and a partition drops without touching other tables.

The Alembic migrations in ``migrations/versions`` are the schema's history; ``tests/test_store.py``
checks that migrating an empty database yields exactly these models.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carbonflow.center.store.types import ExactDecimal, Sha256, UtcDateTime

ID = String(100)
PARTITIONED = {"postgresql_partition_by": "RANGE (ts)"}
TIME_SERIES_TABLES = (
    "readings",
    "intervals",
    "bus_results",
    "branch_results",
    "generator_results",
    "load_results",
)
AutoId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class Base(DeclarativeBase):
    pass


# --- topology ----------------------------------------------------------------------------------------


class Bus(Base):
    __tablename__ = "buses"
    __table_args__ = (CheckConstraint("kind IN ('plant', 'substation', 'user')", name="ck_buses_kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    voltage_kv: Mapped[float] = mapped_column(Float)
    region: Mapped[str] = mapped_column(String(200), index=True)  # path "AH/HF/FX"
    industry: Mapped[str | None] = mapped_column(String(100), index=True)
    x_km: Mapped[float | None] = mapped_column(Float)
    y_km: Mapped[float | None] = mapped_column(Float)


class Region(Base):
    """A region of the grid by its path (``AH/HF/FX``) with its names, as the grid document gives them:
    the UI shows names, not codes."""

    __tablename__ = "regions"

    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    name_zh: Mapped[str | None] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str | None] = mapped_column(String(20))  # province | city | county


class Generator(Base):
    __tablename__ = "generators"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    bus_id: Mapped[str] = mapped_column(ForeignKey("buses.id"), index=True)
    plant: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str | None] = mapped_column(String(100))
    fuel: Mapped[str | None] = mapped_column(String(50))
    intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)  # nominal, when no meter gives it
    intensity_source: Mapped[str | None] = mapped_column(Text)  # how the nominal figure was obtained


class Branch(Base):
    __tablename__ = "branches"
    __table_args__ = (CheckConstraint("kind IN ('line', 'transformer')", name="ck_branches_kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    from_bus: Mapped[str] = mapped_column(ForeignKey("buses.id"), index=True)
    to_bus: Mapped[str] = mapped_column(ForeignKey("buses.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))


class Load(Base):
    __tablename__ = "loads"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    bus_id: Mapped[str] = mapped_column(ForeignKey("buses.id"), index=True)
    user_name: Mapped[str | None] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(100), index=True)


class Storage(Base):
    __tablename__ = "storage"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    bus_id: Mapped[str] = mapped_column(ForeignKey("buses.id"), index=True)
    p_max_mw: Mapped[float | None] = mapped_column(Float)
    e_max_mwh: Mapped[float | None] = mapped_column(Float)


# --- collection ----------------------------------------------------------------------------------------


class Collector(Base):
    __tablename__ = "collectors"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    # HMAC key shared with the collector; it must be usable to verify, so it cannot be stored hashed:
    # it is sealed under the environment's secrets key instead (store/sealing.py)
    # SQLite keeps the declared VARCHAR(200) of migration 0001 (it does not enforce lengths, and
    # widening would re-create the table under the devices' foreign keys): migration 0013
    secret: Mapped[str] = mapped_column(Text().with_variant(String(200), "sqlite"))
    # the secret before a rotation, accepted until the collector signs with the new one or until
    # previous_secret_until (store/collector_secrets.py)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    name: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(200))
    config_version: Mapped[str | None] = mapped_column(String(100))
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="unknown")
    # the collector's own status report (outbox, last send error, devices), and when it arrived
    status_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reported_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    collector_id: Mapped[str | None] = mapped_column(ForeignKey("collectors.id"), index=True)
    kind: Mapped[str | None] = mapped_column(String(50))
    protocol: Mapped[str] = mapped_column(String(30))
    endpoint: Mapped[str | None] = mapped_column(String(200))  # "host:port"
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # protocol address (sa, common_address, ...)
    model: Mapped[str | None] = mapped_column(String(100))
    bus_id: Mapped[str | None] = mapped_column(ID)
    region: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="unknown")  # online | offline | unknown
    online: Mapped[bool | None] = mapped_column(Boolean)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clock_offset_s: Mapped[float | None] = mapped_column(Float)
    firmware: Mapped[str | None] = mapped_column(String(100))
    config_version: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    # metrology (device map): instrument transformers, accuracy class; a problem found at registration
    ct_ratio: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    vt_ratio: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    accuracy_class: Mapped[str | None] = mapped_column(String(10))
    metrology_error: Mapped[str | None] = mapped_column(Text)  # e.g. secondary points without a CT ratio


class ClockOffset(Base):
    """Each measured clock offset of a device with its time: the maintenance page's offsets over time.
    Kept like the other history (``retention_days``); ``devices.clock_offset_s`` holds the latest."""

    __tablename__ = "clock_offsets"
    __table_args__ = (
        Index("ix_clock_offsets_device_ts", "device_id", "ts"),
        Index("ix_clock_offsets_ts", "ts"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)  # when it was measured (the status's last_seen)
    offset_s: Mapped[float] = mapped_column(Float)  # device clock minus collector clock


class Point(Base):
    __tablename__ = "points"
    __table_args__ = (Index("ix_points_element", "element_kind", "element_id", "quantity"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "<device id>/<point name>"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    element_kind: Mapped[str] = mapped_column(String(20))
    element_id: Mapped[str] = mapped_column(ID)
    quantity: Mapped[str] = mapped_column(String(50))
    end: Mapped[str] = mapped_column(String(10), default="-")
    unit: Mapped[str | None] = mapped_column(String(20))
    scale: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # device value / scale = value in §3 unit
    accuracy_percent: Mapped[float | None] = mapped_column(Float)  # MPE, % of the reading (device class)
    resolution: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # the register's last digit, device unit
    secondary: Mapped[bool | None] = mapped_column(Boolean)  # shows the secondary side of the CT/VT


class Reading(Base):
    __tablename__ = "readings"
    __table_args__ = (Index("ix_readings_ts", "ts"), PARTITIONED)

    point_id: Mapped[str] = mapped_column(ForeignKey("points.id"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    value: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    quality: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    batch_id: Mapped[str] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)  # the point's hash chain (store/chain.py)
    chain_hash: Mapped[str | None] = mapped_column(Sha256)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_received_at", "received_at"),)

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collector_id: Mapped[str] = mapped_column(ForeignKey("collectors.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    n_readings: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical batch: a reused id is caught


# --- interval results ----------------------------------------------------------------------------------


class Interval(Base):
    """One metered interval (``ts`` = its end) at one level (the center's scope, e.g. region "AH")."""

    __tablename__ = "intervals"
    __table_args__ = (PARTITIONED,)

    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    level: Mapped[str] = mapped_column(String(100), primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    losses: Mapped[str] = mapped_column(String(20), default="receiving")
    hash: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    estimation: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # which inputs were estimated, and how
    totals: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # rows stored before migration 0018
    generation_energy_kwh: Mapped[float] = mapped_column(Float)
    load_energy_kwh: Mapped[float] = mapped_column(Float)
    generation_carbon_kg: Mapped[float] = mapped_column(Float)
    load_carbon_kg: Mapped[float] = mapped_column(Float)
    loss_carbon_kg: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    chain_seq: Mapped[int | None] = mapped_column(Integer)  # the interval's chain of versions
    chain_hash: Mapped[str | None] = mapped_column(Sha256)
    # the origin shares packed (store/packed_origin.py, migration 0018); read instead of ``origin`` when set
    origin_packed: Mapped[bytes | None] = mapped_column(LargeBinary)


class _ElementResult:
    """Columns every result table shares: the key, the element's bus, and the interval's amounts.

    ``energy_kwh`` / ``carbon_kg`` are what aggregations sum (intensity = Σ carbon / Σ energy):
    bus = active-power flux through the bus; branch = power sent into it; generator = generated;
    load = consumed.  ``bus_id`` attributes the element to a region / voltage level (branch: from bus).
    """

    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True, sort_order=-1)
    level: Mapped[str] = mapped_column(String(100), primary_key=True, sort_order=-1)
    interval_s: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-1)
    element_id: Mapped[str] = mapped_column(ID, primary_key=True, sort_order=-1)
    bus_id: Mapped[str] = mapped_column(ID, sort_order=-1)
    intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float, sort_order=-1)
    energy_kwh: Mapped[float] = mapped_column(Float, sort_order=-1)
    carbon_kg: Mapped[float] = mapped_column(Float, sort_order=-1)


class BusResult(_ElementResult, Base):
    __tablename__ = "bus_results"
    __table_args__ = (Index("ix_bus_results_element", "element_id", "ts"), PARTITIONED)

    flux_mw: Mapped[float] = mapped_column(Float)
    load_mw: Mapped[float] = mapped_column(Float)
    load_carbon_t_per_h: Mapped[float] = mapped_column(Float)


class BranchResult(_ElementResult, Base):
    __tablename__ = "branch_results"
    __table_args__ = (Index("ix_branch_results_element", "element_id", "ts"), PARTITIONED)

    sending_bus: Mapped[str | None] = mapped_column(ID)
    p_send_mw: Mapped[float] = mapped_column(Float)
    p_recv_mw: Mapped[float] = mapped_column(Float)
    carbon_send_t_per_h: Mapped[float] = mapped_column(Float)
    carbon_recv_t_per_h: Mapped[float] = mapped_column(Float)
    loss_carbon_t_per_h: Mapped[float] = mapped_column(Float)
    loss_carbon_kg: Mapped[float] = mapped_column(Float)


class GeneratorResult(_ElementResult, Base):
    __tablename__ = "generator_results"
    __table_args__ = (Index("ix_generator_results_element", "element_id", "ts"), PARTITIONED)

    p_mw: Mapped[float] = mapped_column(Float)
    carbon_t_per_h: Mapped[float] = mapped_column(Float)


class LoadResult(_ElementResult, Base):
    __tablename__ = "load_results"
    __table_args__ = (Index("ix_load_results_element", "element_id", "ts"), PARTITIONED)

    p_mw: Mapped[float] = mapped_column(Float)
    carbon_t_per_h: Mapped[float] = mapped_column(Float)


RESULT_MODELS: dict[str, type[_ElementResult]] = {
    "bus": BusResult,
    "branch": BranchResult,
    "generator": GeneratorResult,
    "load": LoadResult,
}


# --- maintenance and audit -------------------------------------------------------------------------------


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sent', 'acknowledged', 'failed')", name="ck_commands_status"),
        Index("ix_commands_collector_status", "collector_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collector_id: Mapped[str] = mapped_column(ForeignKey("collectors.id"))
    device_id: Mapped[str | None] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(30))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_ts", "ts"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    object: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)  # the audit log's hash chain
    chain_hash: Mapped[str | None] = mapped_column(Sha256)


class CollectorConfigVersion(Base):
    """One version of a collector's configuration as pushed by the center (TOML text, validated)."""

    __tablename__ = "collector_configs"

    collector_id: Mapped[str] = mapped_column(ForeignKey("collectors.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    toml: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str | None] = mapped_column(String(100))


class MeterCheck(Base):
    """What an electric-carbon meter showed vs what the platform computed for it over one span."""

    __tablename__ = "meter_checks"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'mismatch', 'incomplete')", name="ck_meter_checks_status"),
        Index("ix_meter_checks_device_end", "device_id", "end_ts"),
        Index("ix_meter_checks_end", "end_ts"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ID)
    carbon_point: Mapped[str] = mapped_column(String(200))
    energy_point: Mapped[str] = mapped_column(String(200))
    start_ts: Mapped[datetime] = mapped_column(UtcDateTime)  # the base reading (previous register)
    end_ts: Mapped[datetime] = mapped_column(UtcDateTime)  # the last reading compared
    status: Mapped[str] = mapped_column(String(20))
    energy_kwh: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    expected_kg: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    shown_kg: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    deviation_kg: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # shown - expected, the worst one
    resolution_kg: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    uncertainty_kg: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    factors: Mapped[list[Any] | None] = mapped_column(JSON)  # the factors in force over the span
    detail: Mapped[str | None] = mapped_column(Text)
    intervals: Mapped[list[Any] | None] = mapped_column(
        JSON
    )  # per reading-to-reading step: shown vs computed
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


metadata = Base.metadata

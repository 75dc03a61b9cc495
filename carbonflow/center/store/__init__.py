"""Center storage: SQLAlchemy 2 schema, Alembic migrations, and the repository functions over it.

Open with ``Store.open(url)`` (``sqlite:///path.db`` embedded default, ``postgresql+psycopg://...`` in
production); it migrates to the latest schema.  See docs/storage.md.
"""

from carbonflow.center.store import cascade as _cascade  # noqa: F401  (the cascade tables join the metadata)
from carbonflow.center.store.alarms import (  # the alarm tables join the metadata too
    alarm_counts,
    list_alarms,
)
from carbonflow.center.store.cameras import camera_known, camera_overview
from carbonflow.center.store.collector_admin import (
    collector_config,
    collector_configs,
    collector_exists,
    collector_status_report,
    collectors_overview,
    next_config_version,
    push_collector_config,
)
from carbonflow.center.store.conflicts import Conflict, list_conflicts
from carbonflow.center.store.devices import (
    collector_devices,
    device_row,
    device_status_counts,
    list_devices,
    list_points,
    queue_time_sync_all,
)
from carbonflow.center.store.elements import generator_plants, topology_tables
from carbonflow.center.store.engine import Store, make_engine, upgrade
from carbonflow.center.store.errors import (
    DATABASE_DOWN_ERRORS,
    BadSignatureError,
    BatchConflictError,
    DatabaseUnavailableError,
    InvalidBatchError,
    NotFoundError,
    StoreError,
    UnknownCollectorError,
)
from carbonflow.center.store.freshness import StaleMessageError, accept_fresh  # joins the metadata too
from carbonflow.center.store.images import (  # the image model joins the metadata too
    DEFAULT_IMAGE_RETENTION_DAYS,
    ImagePurgeReport,
    ImageStore,
)
from carbonflow.center.store.intervals import (
    interval_header,
    interval_headers,
    interval_origin,
    is_complete,
    latest_complete_interval_ts,
    latest_interval_ts,
    result_quantities,
)
from carbonflow.center.store.maintenance import (
    list_commands,
    queue_command,
    record_audit,
    record_command_result,
    requeue_unanswered,
    take_queued_commands,
)
from carbonflow.center.store.readings import (
    StoredReading,
    count_readings,
    ingest_batch,
    latest_reading_ts,
    readings_for_element,
    readings_for_point,
    record_status,
)
from carbonflow.center.store.results import (
    Aggregate,
    IntervalRecord,
    aggregate,
    aggregate_totals,
    interval_from_document,
    interval_results,
    save_interval,
)
from carbonflow.center.store.retention import DEFAULT_RETENTION_DAYS, PurgeReport, purge_older_than
from carbonflow.center.store.scope import resource_region
from carbonflow.center.store.topology import (
    collector_secret,
    metrology_problems,
    register_devices,
    upsert_collector,
    upsert_rows,
    upsert_topology,
)
from carbonflow.center.store.users import (  # the models join the metadata the migrations are checked against
    UserInfo,
    authenticate,
    create_user,
    end_session,
    get_user,
    list_users,
    normalise_region,
    start_session,
    update_user,
    user_for_token,
)
from carbonflow.center.store.versions import (  # superseded interval results join the metadata too
    StoredVersion,
    interval_versions,
    save_new_version,
)

__all__ = [
    "DATABASE_DOWN_ERRORS",
    "DEFAULT_IMAGE_RETENTION_DAYS",
    "DEFAULT_RETENTION_DAYS",
    "Aggregate",
    "BadSignatureError",
    "BatchConflictError",
    "Conflict",
    "DatabaseUnavailableError",
    "ImagePurgeReport",
    "ImageStore",
    "IntervalRecord",
    "InvalidBatchError",
    "NotFoundError",
    "PurgeReport",
    "StaleMessageError",
    "Store",
    "StoreError",
    "StoredReading",
    "StoredVersion",
    "UnknownCollectorError",
    "UserInfo",
    "accept_fresh",
    "aggregate",
    "aggregate_totals",
    "alarm_counts",
    "authenticate",
    "camera_known",
    "camera_overview",
    "collector_config",
    "collector_configs",
    "collector_devices",
    "collector_exists",
    "collector_secret",
    "collector_status_report",
    "collectors_overview",
    "count_readings",
    "create_user",
    "device_row",
    "device_status_counts",
    "end_session",
    "generator_plants",
    "get_user",
    "ingest_batch",
    "interval_from_document",
    "interval_header",
    "interval_headers",
    "interval_origin",
    "interval_results",
    "interval_versions",
    "is_complete",
    "latest_complete_interval_ts",
    "latest_interval_ts",
    "latest_reading_ts",
    "list_alarms",
    "list_commands",
    "list_conflicts",
    "list_devices",
    "list_points",
    "list_users",
    "make_engine",
    "metrology_problems",
    "next_config_version",
    "normalise_region",
    "purge_older_than",
    "push_collector_config",
    "queue_command",
    "queue_time_sync_all",
    "readings_for_element",
    "readings_for_point",
    "record_audit",
    "record_command_result",
    "record_status",
    "register_devices",
    "requeue_unanswered",
    "resource_region",
    "result_quantities",
    "save_interval",
    "save_new_version",
    "start_session",
    "take_queued_commands",
    "topology_tables",
    "update_user",
    "upgrade",
    "upsert_collector",
    "upsert_rows",
    "upsert_topology",
    "user_for_token",
]

"""Center storage: SQLAlchemy 2 schema, Alembic migrations, and the repository functions over it.

Open with ``Store.open(url)`` (``sqlite:///path.db`` embedded default, ``postgresql+psycopg://...`` in
production); it migrates to the latest schema.  See docs/storage.md.
"""

from carbonflow.center.store.engine import Store, make_engine, upgrade
from carbonflow.center.store.errors import (
    BadSignatureError,
    BatchConflictError,
    DatabaseUnavailableError,
    InvalidBatchError,
    NotFoundError,
    StoreError,
    UnknownCollectorError,
)
from carbonflow.center.store.images import (  # the image model joins the metadata too
    DEFAULT_IMAGE_RETENTION_DAYS,
    ImagePurgeReport,
    ImageStore,
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
from carbonflow.center.store.topology import (
    collector_secret,
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
    start_session,
    user_for_token,
)
from carbonflow.center.store.versions import (  # superseded interval results join the metadata too
    StoredVersion,
    interval_versions,
    save_new_version,
)

__all__ = [
    "DEFAULT_IMAGE_RETENTION_DAYS",
    "DEFAULT_RETENTION_DAYS",
    "Aggregate",
    "BadSignatureError",
    "BatchConflictError",
    "DatabaseUnavailableError",
    "ImagePurgeReport",
    "ImageStore",
    "IntervalRecord",
    "InvalidBatchError",
    "NotFoundError",
    "PurgeReport",
    "Store",
    "StoreError",
    "StoredReading",
    "StoredVersion",
    "UnknownCollectorError",
    "UserInfo",
    "aggregate",
    "aggregate_totals",
    "authenticate",
    "collector_secret",
    "count_readings",
    "create_user",
    "end_session",
    "ingest_batch",
    "interval_from_document",
    "interval_results",
    "interval_versions",
    "list_commands",
    "make_engine",
    "purge_older_than",
    "queue_command",
    "readings_for_element",
    "readings_for_point",
    "record_audit",
    "record_command_result",
    "record_status",
    "register_devices",
    "requeue_unanswered",
    "save_interval",
    "save_new_version",
    "start_session",
    "take_queued_commands",
    "upgrade",
    "upsert_collector",
    "upsert_rows",
    "upsert_topology",
    "user_for_token",
]

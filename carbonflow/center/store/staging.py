"""PostgreSQL bulk path for a batch's readings: ``COPY`` into a staging table, one ``INSERT … SELECT``.

Why: the multi-row ``INSERT … VALUES`` pages cost more in building and parsing the statement (6,000
parameters per 1,000 rows, split and bound by the driver, parsed and planned by the server) than in
storing the rows.  ``COPY`` streams the rows with no statement to parse, and one set-based insert
moves them into ``readings``.

Semantics are exactly those of the multi-row path (``readings._insert_readings``):

* the staging table is a per-connection temporary table (``ON COMMIT DELETE ROWS``) and the insert
  empties it in the same statement (``DELETE … RETURNING`` as its source), so a rollback leaves
  nothing behind and two batches stored in one caller's transaction never see each other's rows;
* ``DISTINCT ON (point_id, ts) … ORDER BY point_id, ts, ordinal`` keeps the first row of a batch for a
  ``(point, ts)`` offered twice — the row the VALUES path stores — and the later one is a duplicate;
* ``ON CONFLICT (point_id, ts) DO NOTHING``: a stored reading is never overwritten (first write wins),
  and ``accepted`` is the number of rows this insert stored (the command tag; psycopg reports it
  exactly for ``INSERT``);
* values and timestamps go through the column types' own bind processors (``ExactDecimal``,
  ``UtcDateTime``) and psycopg's text dumpers, the same conversions as the parameters of the VALUES
  path: a value is stored as the same exact ``NUMERIC``.

Rows are inserted in ``(point_id, ts)`` order, so two transactions offering overlapping readings take
their row locks in the same order (one waits for the other; no lock cycle between them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from carbonflow.center.store.schema import Reading

STAGING_TABLE = "cf_readings_staging"  # the statements below spell it out: literals, nothing formatted in
# the order COPY writes; chain_seq/chain_hash: the reading's link in its point's hash chain (store/chain.py)
_COLUMNS = ("point_id", "ts", "value", "quality", "received_at", "batch_id", "chain_seq", "chain_hash")

# LIKE readings: the staging columns are readings' own types (NUMERIC, TIMESTAMPTZ, lengths), so a value
# that COPY accepts into staging is one the insert accepts into readings.  IF NOT EXISTS: created once
# per database connection; a creation rolled back with its batch is simply redone by the next one.
_CREATE_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS cf_readings_staging "
    "(ordinal integer NOT NULL, LIKE readings) ON COMMIT DELETE ROWS"
)
# emptied first: a savepoint rolled back after an insert (readings.py redoes a batch without the readings
# stored before) also rolls back the insert's DELETE, which would leave the undone rows staged
_CLEAR_STAGING = "DELETE FROM cf_readings_staging"
_COPY_STAGING = (
    "COPY cf_readings_staging (ordinal, point_id, ts, value, quality, received_at, batch_id, chain_seq, "
    "chain_hash) FROM STDIN"
)
_MOVE_STAGED = (
    "WITH staged AS (DELETE FROM cf_readings_staging RETURNING *) "
    "INSERT INTO readings (point_id, ts, value, quality, received_at, batch_id, chain_seq, chain_hash) "
    "SELECT DISTINCT ON (point_id, ts) point_id, ts, value, quality, received_at, batch_id, chain_seq, "
    "chain_hash FROM staged "
    "ORDER BY point_id, ts, ordinal "
    "ON CONFLICT (point_id, ts) DO NOTHING"
)


def copy_readings(connection: Connection, rows: list[dict[str, Any]]) -> int:
    """Store ``rows`` (dicts keyed by the readings columns) inside ``connection``'s transaction;
    returns how many were inserted (the rest were already stored, or repeated within ``rows``)."""
    binds = [_bind(connection, name) for name in _COLUMNS]
    # the psycopg connection under SQLAlchemy's: same session, same open transaction, committed by it
    driver = connection.connection.driver_connection
    driver_error = connection.dialect.loaded_dbapi.Error
    statement = _CREATE_STAGING
    try:
        with driver.cursor() as cursor:
            cursor.execute(statement)
            statement = _CLEAR_STAGING
            cursor.execute(statement)
            statement = _COPY_STAGING
            with cursor.copy(statement) as copy:
                for ordinal, row in enumerate(rows):
                    copy.write_row((ordinal, *(bind(row.get(name)) for bind, name in zip(binds, _COLUMNS))))
            statement = _MOVE_STAGED
            cursor.execute(statement)
            return cursor.rowcount
    except driver_error as error:
        # raised the way SQLAlchemy raises its own statements' errors, so callers treat them alike:
        # e.g. an OperationalError (database down) is a 503 on HTTP and a retry without PUBACK on MQTT
        raise DBAPIError.instance(statement, None, error, driver_error) from error


def _bind(connection: Connection, column: str) -> Callable[[Any], Any]:
    """The Python → driver conversion of a bound parameter of ``readings.<column>``: the same as the
    VALUES path's.  ``dialect_impl``: the type as compiled for PostgreSQL — the bare type's processor
    would turn a NUMERIC into a float (generic Numeric), which must never happen to a meter value."""
    dialect = connection.dialect
    processor = Reading.__table__.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return processor or _unchanged


def _unchanged(value: Any) -> Any:
    return value

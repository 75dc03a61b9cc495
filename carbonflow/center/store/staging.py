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
* values and timestamps get the column types' own bind conversions (``ExactDecimal``, ``UtcDateTime``)
  written as psycopg's text dumpers write them, the same as the parameters of the VALUES path: a value
  is stored as the same exact ``NUMERIC`` (``copy_text_block``; tests/test_ingest_copy_text.py).

Rows are inserted in ``(point_id, ts)`` order, so two transactions offering overlapping readings take
their row locks in the same order (one waits for the other; no lock cycle between them).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
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


def copy_readings(connection: Connection, rows: list[dict[str, Any]], heads: list[str] | None = None) -> int:
    """Store ``rows`` (dicts keyed by the readings columns) inside ``connection``'s transaction;
    returns how many were inserted (the rest were already stored, or repeated within ``rows``).
    ``heads``: the rows' ``copy_line_heads`` when the caller wrote them already (before the chain heads
    were locked)."""
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
                # the rows as COPY text in one block: formatting a line here costs a fraction of
                # write_row's per-row call (issue 17 §2)
                copy.write(copy_text_block(connection.dialect, rows, heads))
            statement = _MOVE_STAGED
            cursor.execute(statement)
            return cursor.rowcount
    except driver_error as error:
        # raised the way SQLAlchemy raises its own statements' errors, so callers treat them alike:
        # e.g. an OperationalError (database down) is a 503 on HTTP and a retry without PUBACK on MQTT
        raise DBAPIError.instance(statement, None, error, driver_error) from error


def copy_text_block(dialect: Dialect, rows: list[dict[str, Any]], heads: list[str] | None = None) -> str:
    """``rows`` as COPY text lines (``ordinal`` first, then ``_COLUMNS``), each field the bind processor's
    output (``ExactDecimal`` checks a value and keeps its exact digits — never a float —, ``UtcDateTime``
    converts to UTC, ``Sha256`` hex to bytes) in ``_copy_text``'s form.

    Written out per column rather than as a loop over the columns: the generic form cost ~9 calls per
    field on 16,000 fields a batch (issue 17 §2).  Timestamps and strings repeat within a batch (one
    ``received_at`` and ``batch_id``, a ts per poll, four qualities), so each distinct one is formatted
    once; decimals are never memoised (``Decimal("1.0") == Decimal("1")``: equal keys, other digits).
    tests/test_ingest_copy_text.py checks the block against the generic per-field form.

    A line is its head (``copy_line_heads``: ``ordinal`` to ``batch_id``, known before the reading's link
    in its chain) and its tail (``chain_seq``, ``chain_hash``); ``heads`` given: those of ``rows``."""
    if heads is None:
        heads = copy_line_heads(dialect, rows)
    hash_bind = partial(_HASH.process_bind_param, dialect=dialect)

    def digest(value: Any) -> str:
        return "\\\\x" + bytes.fromhex(value).hex() if type(value) is str else _copy_text(hash_bind(value))

    lines = []
    for head, row in zip(heads, rows, strict=True):
        seq = row.get("chain_seq")
        lines.append(
            f"{head}{seq if type(seq) is int else _copy_text(seq)}\t{digest(row.get('chain_hash'))}\n"
        )
    return "".join(lines)


def copy_line_heads(dialect: Dialect, rows: list[dict[str, Any]]) -> list[str]:
    """Each row's COPY line up to its chain columns: ``ordinal`` (the row's index) to ``batch_id``, each
    field followed by a tab (see ``copy_text_block``)."""
    stamp_bind = partial(_TIMESTAMP.process_bind_param, dialect=dialect)
    value_bind = partial(_VALUE.process_bind_param, dialect=dialect)
    stamps: dict[Any, str] = {}
    words: dict[str, str] = {}

    def stamp(value: Any) -> str:
        text = stamps.get(value) if isinstance(value, datetime) else None
        if text is None:
            text = _copy_text(stamp_bind(value))
            if isinstance(value, datetime):
                stamps[value] = text
        return text

    def word(value: Any) -> str:
        if type(value) is not str:  # keys of one type only: 1 == True == Decimal(1) as dict keys
            return _copy_text(value)
        text = words.get(value)
        if text is None:
            text = words[value] = value.translate(_COPY_ESCAPES)
        return text

    def exact(value: Any) -> str:
        # a reading's decimal text as ExactDecimal binds it (its Decimal, refused unless finite) without
        # the call layers; anything else through the bind itself
        if type(value) is str:
            number = Decimal(value)
            if number.is_finite():
                return str(number)
        return _copy_text(value_bind(value))

    heads = []
    for ordinal, row in enumerate(rows):
        get = row.get
        heads.append(
            f"{ordinal}\t{word(get('point_id'))}\t{stamp(get('ts'))}\t{exact(get('value'))}\t"
            f"{word(get('quality'))}\t{stamp(get('received_at'))}\t{word(get('batch_id'))}\t"
        )
    return heads


_TIMESTAMP, _VALUE, _HASH = (Reading.__table__.c[name].type for name in ("ts", "value", "chain_hash"))

# COPY's text format: backslash, tab, newline and carriage return escaped; NULL is \N; bytea as \x + hex
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One field in COPY's text format, written as psycopg's text dumpers would: str of a Decimal (the
    exact digits), ISO 8601 with offset for a timestamp, hex for bytes."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, Decimal | int):
        return str(value)
    raise TypeError(f"no COPY text form for {type(value).__name__}")

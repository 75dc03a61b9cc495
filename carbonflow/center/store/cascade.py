"""What a center keeps of the cascade: every message it accepted, sent or metered itself
(``cascade_messages``), its result of each interval (``cascade_results``, the region's solution and
hash) and every verdict of the mutual verification (``cascade_verifications``, both sides' numbers)."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import ID, AutoId, Base, Interval
from carbonflow.center.store.types import UtcDateTime, sqlite_ts, utc


class CascadeMessage(Base):
    __tablename__ = "cascade_messages"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_cascade_messages_message_id"),
        Index("ix_cascade_messages_ts", "ts", "kind"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(10))  # in | out | own
    peer: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(30))
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    interval_s: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CascadeResult(Base):
    __tablename__ = "cascade_results"

    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    region: Mapped[str] = mapped_column(String(200), primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer)
    losses: Mapped[str] = mapped_column(String(20))
    hash: Mapped[str] = mapped_column(String(64))
    totals: Mapped[dict[str, Any]] = mapped_column(JSON)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CascadeVerification(Base):
    __tablename__ = "cascade_verifications"
    __table_args__ = (Index("ix_cascade_verifications_ts", "ts"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    peer: Mapped[str] = mapped_column(ID)  # the other center of the pair
    judge: Mapped[str] = mapped_column(ID)  # the center that made the verdict
    check: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(String(200))
    expected: Mapped[float | None] = mapped_column(Float)  # the judge's number
    found: Mapped[float | None] = mapped_column(Float)  # the judged side's number
    tolerance: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)
    report_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    direction: str
    peer: str
    kind: str
    ts: datetime
    payload: dict[str, Any]
    digest: str
    received_at: datetime


def _message(row) -> StoredMessage:
    return StoredMessage(
        row.message_id,
        row.direction,
        row.peer,
        row.kind,
        utc(row.ts),
        row.payload,
        row.digest,
        utc(row.received_at),
    )


def message_seen(store: Store, message_id: str) -> bool:
    """Whether a message with this id is stored (in either direction) — the id alone is read: this runs
    for every message received, and the payload of the rare duplicate is not needed (issue 16).  On the
    driver's connection: through SQLAlchemy's statement machinery, a transaction and its begin event,
    this one-row look-up cost ~7 % of a center's CPU per interval."""
    with _driver(store, _SEEN) as cursor:
        cursor.execute(_sql(store.engine.dialect, _SEEN), (message_id,))
        return cursor.fetchone() is not None


def find_message(store: Store, direction: str, peer: str, kind: str, ts: datetime) -> StoredMessage | None:
    """The newest message of one kind for one interval between this center and ``peer``."""
    with store.read() as connection:
        row = connection.execute(
            select(CascadeMessage)
            .where(
                CascadeMessage.direction == direction,
                CascadeMessage.peer == peer,
                CascadeMessage.kind == kind,
                CascadeMessage.ts == ts,
            )
            .order_by(CascadeMessage.id.desc())
            .limit(1)
        ).first()
    return None if row is None else _message(row)


def message_digests(store: Store, direction: str, peer: str, kind: str, ts: datetime) -> set[str]:
    """The digests of every version of one kind of message for one interval (replays are found)."""
    with store.read() as connection:
        return set(
            connection.execute(
                select(CascadeMessage.digest).where(
                    CascadeMessage.direction == direction,
                    CascadeMessage.peer == peer,
                    CascadeMessage.kind == kind,
                    CascadeMessage.ts == ts,
                )
            ).scalars()
        )


def save_message(store: Store, message: StoredMessage, interval_s: int, created_at: datetime) -> None:
    with store.write() as connection:
        insert_message(connection, message, interval_s, created_at)


def insert_message(connection, message: StoredMessage, interval_s: int, created_at: datetime) -> None:
    """:func:`save_message` inside a transaction the caller holds (one commit for one step)."""
    write_group(connection, [MessageWrite(message, interval_s, created_at)])


def last_exchange(store: Store, peer: str) -> datetime | None:
    """When a message from ``peer`` was last accepted."""
    with store.read() as connection:
        value = connection.execute(
            select(func.max(CascadeMessage.received_at)).where(
                CascadeMessage.peer == peer, CascadeMessage.direction == "in"
            )
        ).scalar_one_or_none()
    return None if value is None else utc(value)


def pending_intervals(store: Store, since: datetime) -> list[datetime]:
    """Intervals with any cascade message since ``since`` that have no stored result yet."""
    with store.read() as connection:
        seen = connection.execute(
            select(CascadeMessage.ts).where(CascadeMessage.ts >= since).distinct()
        ).scalars()
        done = set(connection.execute(select(CascadeResult.ts).where(CascadeResult.ts >= since)).scalars())
        return sorted(utc(ts) for ts in seen if ts not in done)


def save_result(store: Store, *row: Any) -> None:
    """One interval's result in its own transaction; ``row``: the arguments of :func:`insert_result`
    after the connection (ts, region, interval_s, losses, result_hash, totals, document, now)."""
    with store.write() as connection:
        insert_result(connection, *row)


def insert_result(
    connection,
    ts: datetime,
    region: str,
    interval_s: int,
    losses: str,
    result_hash: str,
    totals: dict[str, Any],
    document: dict[str, Any],
    now: datetime,
) -> None:
    """:func:`save_result` inside a transaction the caller holds."""
    write_group(connection, [ResultWrite(ts, region, interval_s, losses, result_hash, totals, document, now)])


def result_hash_at(store: Store, ts: datetime, region: str) -> str | None:
    with store.read() as connection:
        return connection.execute(
            select(CascadeResult.hash).where(CascadeResult.ts == ts, CascadeResult.region == region)
        ).scalar_one_or_none()


def metered_snapshot(store: Store, ts: datetime, interval_s: int, level: str = "") -> dict[str, Any] | None:
    """The snapshot the center's metering assembled for the interval ending at ``ts`` (newest version)."""
    with store.read() as connection:
        return connection.execute(
            select(Interval.snapshot).where(
                Interval.ts == ts, Interval.level == level, Interval.interval_s == interval_s
            )
        ).scalar_one_or_none()


def result_at(store: Store, ts: datetime, region: str) -> dict[str, Any] | None:
    with store.read() as connection:
        row = connection.execute(
            select(CascadeResult).where(CascadeResult.ts == ts, CascadeResult.region == region)
        ).first()
    if row is None:
        return None
    return {
        "ts": utc(row.ts),
        "region": row.region,
        "hash": row.hash,
        "totals": row.totals,
        "document": row.document,
        "losses": row.losses,
    }


def save_verdicts(store: Store, *row: Any) -> None:
    """The verdicts of a judge on a pair for one interval, in their own transaction; ``row``: the
    arguments of :func:`replace_verdicts` after the connection."""
    with store.write() as connection:
        replace_verdicts(connection, *row)


def replace_verdicts(
    connection,
    ts: datetime,
    peer: str,
    judge: str,
    report_hash: str | None,
    verdicts: list[dict[str, Any]],
    now: datetime,
) -> None:
    """The verdicts of ``judge`` on the pair (this center, ``peer``) for one interval, replacing earlier
    ones of the same judge (an interval judged again is never counted twice), inside a transaction the
    caller holds."""
    write_group(connection, [VerdictsWrite(ts, peer, judge, report_hash, verdicts, now)])


# -- the writes of a group commit ---------------------------------------------------------------------
# A node's steps queue their writes as these records; the group commit writes them all with one
# driver-level executemany per statement (plain tuples, timestamps and JSON converted here exactly as
# the column types convert them).  Through SQLAlchemy's per-statement compilation, parameter
# processing and result objects, these few rows per step cost ~18 % of a center's CPU (issue 16).
class GroupWrite:
    """A record of a group commit (below); called with a connection, it is written alone."""

    def __call__(self, connection) -> None:
        write_group(connection, [self])


@dataclass(frozen=True)
class MessageWrite(GroupWrite):
    message: StoredMessage
    interval_s: int
    created_at: datetime


@dataclass(frozen=True)
class ResultWrite(GroupWrite):
    """One interval's result, replacing the stored one of the region (a new version)."""

    ts: datetime
    region: str
    interval_s: int
    losses: str
    hash: str
    totals: dict[str, Any]
    document: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class VerdictsWrite(GroupWrite):
    """A judge's verdicts on a pair for one interval, replacing its earlier ones (none: only removed)."""

    ts: datetime
    peer: str
    judge: str
    report_hash: str | None
    verdicts: list[dict[str, Any]]
    created_at: datetime


_SEEN = "SELECT 1 FROM cascade_messages WHERE message_id = ? LIMIT 1"
_MESSAGE_COLUMNS = (
    "message_id", "direction", "peer", "kind", "ts", "interval_s", "payload", "digest", "created_at",
    "received_at",
)  # fmt: skip
_RESULT_COLUMNS = ("ts", "region", "interval_s", "losses", "hash", "totals", "document", "created_at")
_VERDICT_COLUMNS = (
    "ts", "peer", "judge", "check", "status", "subject", "expected", "found", "tolerance", "detail",
    "report_hash", "created_at",
)  # fmt: skip
_JSON_COLUMNS = {"payload", "totals", "document"}


@contextlib.contextmanager
def _wrapped(dialect, statement: str):
    """The driver's errors as SQLAlchemy raises them (``OperationalError``: the API answers 503, the
    sender retries), as if the statements had gone through SQLAlchemy."""
    base = dialect.loaded_dbapi.Error
    try:
        yield
    except base as error:
        raise DBAPIError.instance(statement, None, error, base, dialect=dialect) from error


@contextlib.contextmanager
def _driver(store: Store, statement: str, *, commit: bool = False):
    """A cursor on a pooled connection's driver connection, closed and given back afterwards; with
    ``commit``: the transaction committed at the end, rolled back on an error."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            with _wrapped(store.engine.dialect, statement):
                yield cursor
                if commit:
                    raw.commit()
        except BaseException:
            if commit:  # a rollback that fails too (connection lost) must not hide the first error
                with contextlib.suppress(Exception):
                    raw.rollback()
            raise
        finally:
            cursor.close()
    finally:
        raw.close()  # back to the pool (PostgreSQL: an open read transaction is rolled back there)


@functools.lru_cache(maxsize=32)
def _sql(dialect, sql: str) -> str:
    """``sql`` written with ``?`` markers, in the driver's paramstyle (``%s`` for psycopg)."""
    return sql if dialect.paramstyle == "qmark" else sql.replace("?", "%s")


@functools.lru_cache(maxsize=32)
def _insert(dialect, table: str, names: tuple[str, ...]) -> str:
    postgres = dialect.name == "postgresql"  # JSON columns: the text cast as the JSON type casts it
    markers = ", ".join("?::json" if postgres and name in _JSON_COLUMNS else "?" for name in names)
    columns = ", ".join(f'"{name}"' if name == "check" else name for name in names)  # a reserved word
    return _sql(dialect, f"INSERT INTO {table} ({columns}) VALUES ({markers})")  # nosec B608


def _stamper(dialect) -> Callable[[datetime], Any]:
    """What ``UtcDateTime`` binds: SQLite's fixed ISO text, PostgreSQL's aware datetime."""
    return sqlite_ts if dialect.name == "sqlite" else utc


_RECORDS = (MessageWrite, ResultWrite, VerdictsWrite)


def write_group(connection, writes: Iterable[Callable[[Any], None]]) -> None:
    """Every write of a group commit, in one transaction the caller holds (a SQLAlchemy connection):
    the message, result and verdict records batched (:func:`_write_records`), any other write called in
    its turn, before them."""
    records = []
    for write in writes:
        if type(write) in _RECORDS:
            records.append(write)
        else:
            write(connection)
    if records:
        cursor = connection.connection.cursor()  # the driver's cursor, inside the caller's transaction
        try:
            with _wrapped(connection.dialect, "cascade writes"):
                _write_records(cursor, connection.dialect, records)
        finally:
            cursor.close()


def commit_group(store: Store, writes: list[Callable[[Any], None]]) -> None:
    """:func:`write_group` in a transaction of its own, committed: a group of records only (every
    write of a cascade node) on the driver's connection — ``BEGIN IMMEDIATE`` on SQLite as
    :meth:`Store.write` begins, the statements, the commit — without SQLAlchemy's connection, begin
    event and transaction objects (~8 % of the nodes' CPU in ``bench/cascade_store.py``)."""
    if any(type(write) not in _RECORDS for write in writes):
        with store.write() as connection:
            write_group(connection, writes)
        return
    with _driver(store, "cascade group commit", commit=True) as cursor:
        if store.dialect == "sqlite":  # the driver is in autocommit mode (engine.py): begin here
            cursor.execute("BEGIN IMMEDIATE")
        _write_records(cursor, store.engine.dialect, writes)


def _write_records(cursor, dialect, writes: list) -> None:
    """Message, result and verdict records with one ``executemany`` per statement on a DBAPI cursor;
    a result or a judge's verdicts written twice in the group: the last one stands, as if each
    replaced the one before."""
    messages: list[MessageWrite] = []
    results: dict[tuple, ResultWrite] = {}
    verdicts: dict[tuple, VerdictsWrite] = {}
    for write in writes:
        kind = type(write)
        if kind is MessageWrite:
            messages.append(write)
        elif kind is ResultWrite:
            key = (write.ts, write.region)
            results.pop(key, None)  # re-inserted: rows keep the order of the writes that stand
            results[key] = write
        else:
            key = (write.ts, write.peer, write.judge)
            verdicts.pop(key, None)
            verdicts[key] = write
    stamp = functools.lru_cache(maxsize=None)(_stamper(dialect))  # a group has few distinct instants
    dumps = json.dumps  # what SQLAlchemy's JSON type serialises with (no json_serializer is configured)
    if messages:
        rows = [
            (
                m.message.message_id,
                m.message.direction,
                m.message.peer,
                m.message.kind,
                stamp(m.message.ts),
                m.interval_s,
                dumps(m.message.payload),
                m.message.digest,
                stamp(m.created_at),
                stamp(m.message.received_at),
            )
            for m in messages
        ]
        cursor.executemany(_insert(dialect, "cascade_messages", _MESSAGE_COLUMNS), rows)
    if results:
        done = list(results.values())
        cursor.executemany(
            _sql(dialect, "DELETE FROM cascade_results WHERE ts = ? AND region = ?"),
            [(stamp(r.ts), r.region) for r in done],
        )
        rows = [
            (
                stamp(r.ts),
                r.region,
                r.interval_s,
                r.losses,
                r.hash,
                dumps(r.totals),
                dumps(r.document),
                stamp(r.created_at),
            )
            for r in done
        ]
        cursor.executemany(_insert(dialect, "cascade_results", _RESULT_COLUMNS), rows)
    if verdicts:
        done = list(verdicts.values())
        cursor.executemany(
            _sql(dialect, "DELETE FROM cascade_verifications WHERE ts = ? AND peer = ? AND judge = ?"),
            [(stamp(v.ts), v.peer, v.judge) for v in done],
        )
        rows = [
            (
                stamp(v.ts),
                v.peer,
                v.judge,
                row["check"],
                row["status"],
                row.get("subject"),
                row.get("expected"),
                row.get("found"),
                row.get("tolerance"),
                row.get("detail"),
                v.report_hash,
                stamp(v.created_at),
            )
            for v in done
            for row in v.verdicts
        ]
        if rows:
            cursor.executemany(_insert(dialect, "cascade_verifications", _VERDICT_COLUMNS), rows)


def verifications(
    store: Store, since: datetime | None = None, peer: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    query = select(CascadeVerification).order_by(CascadeVerification.ts, CascadeVerification.id)
    if since is not None:
        query = query.where(CascadeVerification.ts >= since)
    if peer is not None:
        query = query.where(CascadeVerification.peer == peer)
    with store.read() as connection:
        rows = connection.execute(query.limit(limit)).all()
    return [
        {
            "ts": utc(r.ts).isoformat(),
            "peer": r.peer,
            "judge": r.judge,
            "check": r.check,
            "status": r.status,
            "subject": r.subject,
            "expected": r.expected,
            "found": r.found,
            "tolerance": r.tolerance,
            "detail": r.detail,
            "report_hash": r.report_hash,
            "created_at": utc(r.created_at).isoformat(),
        }
        for r in rows
    ]


def verification_summary(store: Store, peer: str) -> dict[str, Any]:
    """Per peer: status of the newest judged interval, when that was, intervals with a mismatch."""
    with store.read() as connection:
        newest = connection.execute(
            select(func.max(CascadeVerification.ts)).where(CascadeVerification.peer == peer)
        ).scalar_one_or_none()
        mismatched = connection.execute(
            select(func.count(func.distinct(CascadeVerification.ts))).where(
                CascadeVerification.peer == peer, CascadeVerification.status == "mismatch"
            )
        ).scalar_one()
        status = "pending"
        if newest is not None:
            bad = connection.execute(
                select(func.count()).where(
                    CascadeVerification.peer == peer,
                    CascadeVerification.ts == newest,
                    CascadeVerification.status == "mismatch",
                )
            ).scalar_one()
            status = "mismatch" if bad else "ok"
    return {
        "status": status,
        "last_verified_ts": None if newest is None else utc(newest).isoformat(),
        "mismatches": int(mismatched),
    }


def judged_hash(store: Store, ts: datetime, peer: str, judge: str) -> str | None:
    """The report hash of the verdicts ``judge`` stored on (this center, ``peer``) for ``ts``; "" when
    verdicts exist without one, None when the interval was not judged yet."""
    with store.read() as connection:
        row = connection.execute(
            select(CascadeVerification.report_hash)
            .where(
                CascadeVerification.ts == ts,
                CascadeVerification.peer == peer,
                CascadeVerification.judge == judge,
            )
            .limit(1)
        ).first()
    return None if row is None else (row[0] or "")


def messages_at(store: Store, ts: datetime) -> list[StoredMessage]:
    """Every message of one interval, oldest first — on the driver's connection: a node reads this once
    per interval, and SQLAlchemy's ORM row loading was most of the read's cost."""
    dialect = store.engine.dialect
    with _driver(store, _MESSAGES_AT) as cursor:
        cursor.execute(_sql(dialect, _MESSAGES_AT), (_stamper(dialect)(ts),))
        rows = cursor.fetchall()
    read_ts = _read_ts
    return [
        StoredMessage(
            message_id,
            direction,
            peer,
            kind,
            read_ts(stamp),
            # SQLite holds the JSON text; psycopg hands the json column over already parsed
            json.loads(payload) if isinstance(payload, str | bytes) else payload,
            digest,
            read_ts(received_at),
        )
        for message_id, direction, peer, kind, stamp, payload, digest, received_at in rows
    ]


_MESSAGES_AT = (
    "SELECT message_id, direction, peer, kind, ts, payload, digest, received_at"
    " FROM cascade_messages WHERE ts = ? ORDER BY id"
)


_UTC_DATETIME = UtcDateTime()


def _read_ts(value: Any) -> datetime:
    """What ``UtcDateTime`` reads (SQLite's ISO text or PostgreSQL's aware datetime), in UTC as
    :func:`_message` gives it."""
    return utc(_UTC_DATETIME.process_result_value(value, None))

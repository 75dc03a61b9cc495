"""Readings: idempotent batch ingestion (contract C4) and queries by point and by element.

``ingest_batch`` stores one batch in ONE transaction:

1. the collector must exist (signature checking is the transport's job, before this);
2. the batch row is inserted first; an existing ``batch_id`` with the same content digest answers
   ``duplicate_batch=True`` and stores nothing; with a different digest it is refused
   (``BatchConflictError``): accepting either version would silently lose the other;
3. every reading must name a known point of a device of this collector (or of no collector), and
   every status a known device — otherwise the WHOLE batch is refused naming the first offender and
   nothing is stored.  Why all-or-nothing: a partly stored batch would be acknowledged, the collector
   would delete it from its outbox, and the refused readings would be lost without anyone noticing;
   refused, the batch stays in the outbox and the error is visible until the point map is fixed;
4. readings go in with ``INSERT ... ON CONFLICT (point_id, ts) DO NOTHING`` — on SQLite in multi-row
   pages with ``RETURNING``, on PostgreSQL by ``COPY`` into a staging table and one ``INSERT ...
   SELECT`` (``staging``) — so ``accepted`` counts exactly the rows inserted and ``duplicates`` the
   rest (first write wins: a reading is immutable once stored);
5. device statuses, device ``last_seen`` and the collector's ``last_seen`` / ``seq`` / config version
   are updated; the commit happens before the function returns (when given a ``Store``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from carbonflow.center.store.access import chunks, connection_of, driver_rows
from carbonflow.center.store.chain import (
    READING,
    link_prefix,
    links_after,
    lock_heads,
    move_heads,
    reading_fields,
)
from carbonflow.center.store.clock_offsets import record_offsets
from carbonflow.center.store.conflicts import record_conflicts
from carbonflow.center.store.engine import Store
from carbonflow.center.store.errors import (
    BatchConflictError,
    InvalidBatchError,
    StoreError,
    UnknownCollectorError,
)
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Collector, Device, Point, Reading
from carbonflow.center.store.staging import copy_line_heads, copy_readings
from carbonflow.messages.c4 import Ack, Batch, DeviceStatus

INSERT_PAGE = 1000  # rows per multi-row INSERT on SQLite (6 parameters each: well under its limit)
LOOKUP_PAGE = 500
MAX_FUTURE = timedelta(days=1)  # a reading stamped further ahead than this is a clock fault, not data

log = logging.getLogger(__name__)
readings_table = Reading.__table__
# months whose partitions are known to exist, per engine (PostgreSQL): saves a catalogue query per batch
_known_months: weakref.WeakKeyDictionary[Engine, set[datetime]] = weakref.WeakKeyDictionary()


def dialect_insert(connection: Connection, table):
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


def canonical_digest(canonical: bytes) -> str:
    """The content digest of a batch from its ``canonical()`` bytes."""
    return hashlib.sha256(canonical).hexdigest()


def ingest_batch(
    target: Store | Session | Connection,
    batch: Batch,
    *,
    received_at: datetime | None = None,
    canonical: bytes | None = None,
) -> Ack:
    """Store one batch idempotently; see the module docstring for the rules.  ``canonical``: the
    batch's ``canonical()`` bytes when the caller has them already (verifying the signature)."""
    received_at = received_at or datetime.now(UTC)
    digest = canonical_digest(batch.canonical() if canonical is None else canonical)
    with connection_of(target, write=True) as connection:
        (outcome,) = _store_group(connection, [(batch, received_at, digest)], isolate=False)
        return outcome  # type: ignore[return-value]


Offered = tuple[Batch, datetime, str]  # a batch, when it was received, its content digest


def ingest_batches(store: Store, offered: Sequence[Offered]) -> list[Ack | Exception]:
    """Store several batches in ONE transaction (issue 17 §2: one COPY, one insert, one lock and move of
    the chain heads for all of them), each with the outcome it would have alone, in order: its Ack, or
    the error refusing it (bad input, unknown point, reused ``batch_id``…: checked in a savepoint of its
    own, so it takes none of the others down).  Readings are stored and chained in the batches' order,
    exactly as ``ingest_batch`` called on each in turn stores them (``tests/test_ingest_groups.py``).
    Should the group's transaction fail otherwise (a database error), every batch is stored alone."""
    if len(offered) == 1:
        batch, received_at, digest = offered[0]
        try:
            with store.write() as connection:
                return _store_group(connection, [(batch, received_at, digest)], isolate=False)
        except Exception as error:
            return [error]
    try:
        with store.write() as connection:
            return _store_group(connection, offered, isolate=True)
    except Exception as error:
        log.warning("a group of %d batches failed (%s); storing them one by one", len(offered), error)
    outcomes: list[Ack | Exception] = []
    for batch, received_at, digest in offered:
        try:
            with store.write() as connection:
                outcomes.extend(_store_group(connection, [(batch, received_at, digest)], isolate=False))
        except Exception as error:
            outcomes.append(error)
    return outcomes


def _store_group(
    connection: Connection, offered: Sequence[Offered], *, isolate: bool
) -> list[Ack | Exception]:
    """The batches' rows, checks, readings and bookkeeping in ``connection``'s transaction.  ``isolate``:
    each batch's checks in a savepoint, a refusal answered as that batch's outcome (else raised)."""
    outcomes: list[Ack | Exception | None] = [None] * len(offered)
    opened: list[int] = []  # batches neither refused nor answered as a duplicate: their readings go in
    for k, (batch, received_at, digest) in enumerate(offered):
        try:
            with connection.begin_nested() if isolate else nullcontext():
                outcomes[k] = _open_batch(connection, batch, received_at, digest)
        except StoreError as error:
            if not isolate:
                raise
            outcomes[k] = error
            continue
        if outcomes[k] is None:
            opened.append(k)
    rows_of = {k: _reading_rows(*offered[k][:2]) for k in opened}
    rows = [row for k in opened for row in rows_of[k]]
    if rows and connection.dialect.name == "postgresql":
        # once for the group: a month seen to exist is remembered, so a partition created by one batch
        # of this transaction must not be taken as existing by the next (it vanishes on a rollback)
        _ensure_months(connection, min(row["ts"] for row in rows), max(row["ts"] for row in rows))
    inserted = _insert_chained(connection, rows)
    accepted_of = dict.fromkeys(opened, 0)
    owner = [k for k in opened for _ in rows_of[k]]
    for position in inserted:
        accepted_of[owner[position]] += 1
    for k, (batch, received_at, _digest) in enumerate(offered):  # in order, as one by one would
        outcome = outcomes[k]
        if isinstance(outcome, Exception):
            continue
        if outcome is None:
            outcomes[k] = _close_batch(connection, batch, rows_of[k], accepted_of[k], received_at)
        else:  # a duplicate batch
            _touch_collector(connection, batch, received_at)
    return outcomes  # type: ignore[return-value]


def _open_batch(connection: Connection, batch: Batch, received_at: datetime, digest: str) -> Ack | None:
    """The batch's row inserted and its readings checked (None), or the duplicate's Ack; raises a refusal."""
    collector = connection.execute(
        select(Collector.id).where(Collector.id == batch.collector_id)
    ).scalar_one_or_none()
    if collector is None:
        raise UnknownCollectorError(f"unknown collector {batch.collector_id!r}")
    n = len(batch.readings)
    inserted = connection.execute(
        dialect_insert(connection, BatchRow.__table__)
        .values(
            batch_id=batch.batch_id,
            collector_id=batch.collector_id,
            seq=batch.seq,
            created_at=batch.created_at,
            received_at=received_at,
            n_readings=n,
            accepted=0,
            duplicates=0,
            digest=digest,
        )
        .on_conflict_do_nothing(index_elements=["batch_id"])
        .returning(BatchRow.batch_id)  # rowcount of an INSERT is not reliable across drivers
    ).first()
    if inserted is None:
        seen = connection.execute(
            select(BatchRow.digest, BatchRow.collector_id).where(BatchRow.batch_id == batch.batch_id)
        ).one()
        if seen.digest != digest or seen.collector_id != batch.collector_id:
            raise BatchConflictError(
                f"batch_id {batch.batch_id!r} was stored before with different content; refusing it",
                {"batch_id": batch.batch_id},
            )
        return Ack(batch_id=batch.batch_id, accepted=0, duplicates=n, duplicate_batch=True)
    _check_readings(connection, batch, received_at)
    return None


def _reading_rows(batch: Batch, received_at: datetime) -> list[dict]:
    return [
        {
            "point_id": r.point,
            "ts": r.ts,
            "value": r.value,
            "quality": r.quality,
            "received_at": received_at,
            "batch_id": batch.batch_id,
        }
        for r in batch.readings
    ]


def _close_batch(
    connection: Connection, batch: Batch, rows: list[dict], accepted: int, received_at: datetime
) -> Ack:
    """After the readings went in: conflicts, the batch row's counts, the collector, the devices."""
    duplicates = len(rows) - accepted
    conflicts = record_conflicts(connection, rows, batch.collector_id, received_at) if duplicates else 0
    connection.execute(
        update(BatchRow)
        .where(BatchRow.batch_id == batch.batch_id)
        .values(accepted=accepted, duplicates=duplicates)
    )
    _touch_collector(connection, batch, received_at)
    _update_devices(connection, batch, received_at)  # after: the collector's own status may say "degraded"
    return Ack(batch_id=batch.batch_id, accepted=accepted, duplicates=duplicates, conflicts=conflicts)


def _insert_readings(connection: Connection, rows: list[dict], copy_heads: list[str] | None) -> int:
    """Insert the rows that are new by ``(point_id, ts)`` (first write wins); returns how many.  The one
    statement that differs by backend: PostgreSQL streams them with COPY (``staging``; ``copy_heads``: the
    rows' COPY lines up to their chain columns), SQLite takes multi-row ``INSERT … ON CONFLICT DO NOTHING
    … RETURNING`` pages."""
    if connection.dialect.name == "postgresql":
        return copy_readings(connection, rows, copy_heads)
    statement = (
        dialect_insert(connection, readings_table)
        .on_conflict_do_nothing(index_elements=["point_id", "ts"])
        .returning(readings_table.c.point_id)
    )
    return sum(len(connection.execute(statement, page).all()) for page in chunks(rows, INSERT_PAGE))


class _StoredBefore(Exception):
    """Some readings of the batch were stored before: the optimistic insert is undone."""


def _insert_chained(connection: Connection, rows: list[dict]) -> list[int]:
    """Insert the new readings — not stored before, first of their (point, ts) in ``rows`` — each
    with its link in its point's chain, in the order of ``rows``; answers their positions in ``rows``.

    The heads are locked first, so no concurrent batch can append to these chains meanwhile.  Then
    optimistically: a replayed batch was already answered by its ``batch_id``, so a reading stored
    before is rare — all rows are linked and inserted inside a savepoint, and only if some were stored
    before is the savepoint undone and the insert redone without them (a lookup per page)."""
    if not rows:
        return []
    seen: set[tuple[str, datetime]] = set()
    positions = []
    for position, row in enumerate(rows):
        if (row["point_id"], row["ts"]) not in seen:
            seen.add((row["point_id"], row["ts"]))
            positions.append(position)
    unique = [rows[position] for position in positions]
    # before the heads are locked — a concurrent batch of the same points waits on them until this one
    # commits —, whatever of a link and of its COPY line does not depend on its chain's head
    prefixes = [
        link_prefix(READING, reading_fields(r["point_id"], r["ts"], r["value"], r["quality"])) for r in unique
    ]
    copy_heads = (
        copy_line_heads(connection.dialect, unique) if connection.dialect.name == "postgresql" else None
    )
    heads = lock_heads(connection, READING, (row["point_id"] for row in unique))
    try:
        with connection.begin_nested():
            _link_and_insert(connection, unique, prefixes, copy_heads, heads)
            return positions
    except _StoredBefore:
        pass
    stored: set[tuple[str, datetime]] = set()
    key = tuple_(readings_table.c.point_id, readings_table.c.ts)
    for page in chunks([(row["point_id"], row["ts"]) for row in unique], LOOKUP_PAGE):
        found = connection.execute(
            select(readings_table.c.point_id, readings_table.c.ts).where(key.in_(page))
        )
        stored.update((point, ts) for point, ts in found)
    fresh = [k for k, row in enumerate(unique) if (row["point_id"], row["ts"]) not in stored]
    try:
        _link_and_insert(
            connection,
            [unique[k] for k in fresh],
            [prefixes[k] for k in fresh],
            None if copy_heads is None else [copy_heads[k] for k in fresh],  # ordinals still ascending
            heads,
        )
    except _StoredBefore:  # cannot happen under the head locks; if it did, the chains would break
        raise RuntimeError("readings stored by another transaction under a locked chain head") from None
    return [positions[k] for k in fresh]


def _link_and_insert(
    connection: Connection,
    rows: list[dict],
    prefixes: list[bytes],
    copy_heads: list[str] | None,
    heads: dict[str, tuple[int, str]],
) -> int:
    links, moved = links_after([(row["point_id"], prefix) for row, prefix in zip(rows, prefixes)], heads)
    for row, (seq, digest) in zip(rows, links, strict=True):
        row["chain_seq"], row["chain_hash"] = seq, digest  # in place: a redo after a savepoint overwrites
    accepted = _insert_readings(connection, rows, copy_heads)
    if accepted != len(rows):
        raise _StoredBefore
    move_heads(connection, READING, moved)
    return accepted


_POINT_OWNERS = (
    "SELECT points.id, devices.collector_id FROM points JOIN devices ON devices.id = points.device_id "
    "WHERE points.id IN (SELECT jsonb_array_elements_text(%s::jsonb))"
)


def _check_readings(connection: Connection, batch: Batch, received_at: datetime) -> None:
    latest = received_at + MAX_FUTURE
    for index, reading in enumerate(batch.readings):
        if reading.ts > latest:
            raise InvalidBatchError(
                f"reading {index} (point {reading.point!r}): ts {reading.ts.isoformat()} is in the future",
                {"index": index, "point": reading.point},
            )
    wanted = list(dict.fromkeys(r.point for r in batch.readings))
    owner: dict[str, str | None] = {}
    if connection.dialect.name == "postgresql":
        # one JSON parameter, as a hash semi-join, rows as tuples (access.driver_rows): 2,000 separate
        # IN parameters, or SQLAlchemy's row layer, cost more than the look-up (issue 17 §2)
        owner.update(driver_rows(connection, _POINT_OWNERS, (json.dumps(wanted, ensure_ascii=False),)))
    else:
        query = select(Point.id, Device.collector_id).join(Device, Device.id == Point.device_id)
        for page in chunks(wanted, LOOKUP_PAGE):
            owner.update(
                {row.id: row.collector_id for row in connection.execute(query.where(Point.id.in_(page)))}
            )
    for index, reading in enumerate(batch.readings):
        if reading.point not in owner:
            raise InvalidBatchError(
                f"reading {index}: unknown point {reading.point!r} (batch refused, nothing stored)",
                {"index": index, "point": reading.point},
            )
        if owner[reading.point] not in (None, batch.collector_id):
            raise InvalidBatchError(
                f"reading {index}: point {reading.point!r} belongs to collector {owner[reading.point]!r}",
                {"index": index, "point": reading.point},
            )
    own = batch.collector_id
    _check_statuses(connection, own, [s for s in batch.statuses if s.device != own])


def _own_status(
    connection: Connection, collector_id: str, statuses: list[DeviceStatus]
) -> list[DeviceStatus]:
    """A collector reports on itself with ``device == collector id`` (e.g. "outbox full"): that goes to
    the collector's row; the device statuses are returned."""
    devices = []
    for status in statuses:
        if status.device != collector_id:
            devices.append(status)
            continue
        values = {"status": "online" if status.online and not status.error else "degraded"}
        connection.execute(update(Collector).where(Collector.id == collector_id).values(**values))
    return devices


def _check_statuses(connection: Connection, collector_id: str, statuses: list[DeviceStatus]) -> None:
    devices = [s.device for s in statuses]
    if devices:
        known = dict(
            (row.id, row.collector_id)
            for row in connection.execute(
                select(Device.id, Device.collector_id).where(Device.id.in_(devices))
            )
        )
        for index, status in enumerate(statuses):
            if status.device not in known or known[status.device] not in (None, collector_id):
                raise InvalidBatchError(
                    f"status {index}: unknown device {status.device!r} for collector {collector_id!r}",
                    {"index": index, "device": status.device},
                )


def _ensure_months(connection: Connection, first: datetime, last: datetime) -> None:
    known = _known_months.setdefault(connection.engine, set())
    months = [m for m in months_between(first, last) if m not in known]
    if months and not ensure_partitions(connection, ["readings"], months):
        # remember months only once seen to exist: a partition created here vanishes if this rolls back
        known.update(months)


def _update_devices(connection: Connection, batch: Batch, received_at: datetime) -> None:
    newest: dict[str, datetime] = {}
    for reading in batch.readings:
        device = reading.point.rsplit("/", 1)[0]
        if reading.quality != "invalid" and (device not in newest or reading.ts > newest[device]):
            newest[device] = reading.ts
    statuses = _own_status(connection, batch.collector_id, batch.statuses)
    explicit = {s.device: s for s in statuses}
    _apply_statuses(connection, statuses, newest, received_at)
    for device, ts in newest.items():
        if device in explicit:
            continue
        connection.execute(
            update(Device)
            .where(Device.id == device, (Device.last_seen.is_(None)) | (Device.last_seen < ts))
            .values(last_seen=ts, online=True, status="online")
        )


def _apply_statuses(
    connection: Connection, statuses: list[DeviceStatus], newest: dict[str, datetime], received_at: datetime
) -> None:
    """The devices' status columns; each measured clock offset also joins the device's offsets over time
    (``clock_offsets``), at the status's ``last_seen`` (else its newest reading, else when received)."""
    offsets = []
    for status in statuses:
        values = {
            "online": status.online,
            "status": "online" if status.online else "offline",
            "error": status.error,
        }
        last_seen = status.last_seen or newest.get(status.device)
        if last_seen is not None:
            values["last_seen"] = last_seen
        if status.clock_offset_s is not None:
            values["clock_offset_s"] = status.clock_offset_s
            offsets.append((status.device, last_seen or received_at, status.clock_offset_s))
        if status.firmware is not None:
            values["firmware"] = status.firmware
        connection.execute(update(Device).where(Device.id == status.device).values(**values))
    record_offsets(connection, offsets)


def record_status(
    target: Store | Session | Connection,
    collector_id: str,
    statuses: list[DeviceStatus],
    *,
    config_version: str | None = None,
    received_at: datetime | None = None,
) -> None:
    """A collector's live status (no readings): device statuses and the collector's last seen."""
    received_at = received_at or datetime.now(UTC)
    with connection_of(target, write=True) as connection:
        if connection.execute(select(Collector.id).where(Collector.id == collector_id)).first() is None:
            raise UnknownCollectorError(f"unknown collector {collector_id!r}")
        statuses = _own_status(connection, collector_id, statuses)
        _check_statuses(connection, collector_id, statuses)
        _apply_statuses(connection, statuses, {}, received_at)
        values: dict = {"last_seen": received_at, "status": "online"}
        if config_version is not None:
            values["config_version"] = config_version
        connection.execute(update(Collector).where(Collector.id == collector_id).values(**values))


def _touch_collector(connection: Connection, batch: Batch, received_at: datetime) -> None:
    values: dict = {"last_seen": received_at, "status": "online"}
    if batch.config_version is not None:
        values["config_version"] = batch.config_version
    connection.execute(update(Collector).where(Collector.id == batch.collector_id).values(**values))
    connection.execute(
        update(Collector)
        .where(
            Collector.id == batch.collector_id,
            (Collector.last_seq.is_(None)) | (Collector.last_seq < batch.seq),
        )
        .values(last_seq=batch.seq)
    )


# --- queries -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredReading:
    point_id: str
    ts: datetime
    value: Decimal | None
    quality: str
    received_at: datetime
    batch_id: str


def _stored(rows) -> list[StoredReading]:
    return [StoredReading(*row) for row in rows]


_COLUMNS = (
    Reading.point_id,
    Reading.ts,
    Reading.value,
    Reading.quality,
    Reading.received_at,
    Reading.batch_id,
)


def readings_for_point(
    target: Store | Session | Connection,
    point_id: str,
    start: datetime,
    end: datetime,
    *,
    scope: RowScope | None = None,
) -> list[StoredReading]:
    """Readings of one point with ``start <= ts < end``, oldest first (none when its device is outside
    ``scope``)."""
    query = (
        select(*_COLUMNS)
        .where(Reading.point_id == point_id, Reading.ts >= start, Reading.ts < end)
        .order_by(Reading.ts)
    )
    if scope is not None:
        query = scope.by_device(query.join(Point, Point.id == Reading.point_id), Point.device_id)
    with connection_of(target, write=False) as connection:
        return _stored(connection.execute(query))


def readings_for_element(
    target: Store | Session | Connection,
    element_kind: str,
    element_id: str,
    quantity: str,
    start: datetime,
    end: datetime,
    *,
    end_side: str | None = None,
    scope: RowScope | None = None,
) -> list[StoredReading]:
    """Readings of every point mapped to ``(element_kind, element_id, quantity[, end])``, by ts then point
    (those of devices in ``scope``)."""
    query = (
        select(*_COLUMNS)
        .join(Point, Point.id == Reading.point_id)
        .where(
            Point.element_kind == element_kind,
            Point.element_id == element_id,
            Point.quantity == quantity,
            Reading.ts >= start,
            Reading.ts < end,
        )
        .order_by(Reading.ts, Reading.point_id)
    )
    if end_side is not None:
        query = query.where(Point.end == end_side)
    if scope is not None:
        query = scope.by_device(query, Point.device_id)
    with connection_of(target, write=False) as connection:
        return _stored(connection.execute(query))


def count_readings(target: Store | Session | Connection) -> int:
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.count()).select_from(readings_table)).scalar_one()


def latest_reading_ts(target: Store | Session | Connection) -> datetime | None:
    """The time of the latest stored reading, or None before the first."""
    with connection_of(target, write=False) as connection:
        return connection.execute(select(func.max(readings_table.c.ts))).scalar_one_or_none()

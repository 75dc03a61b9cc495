"""Versions of the interval results as a whole: a recomputation of history is one numbered version.

Version 0 is the results as metered (the live loop, re-meterings for late readings included); every
``carbonflow center recompute`` run that changes something is version 1, 2, ... (``result_versions``:
its range, reason, input fingerprint, state, and which intervals it could not recompute and why).

``intervals`` and the result tables always hold each interval's *current* result; its version number
is ``estimation["result_version"]`` (absent: 0).  When a recomputation replaces an interval, the
result it replaces moves to ``archived_intervals`` (the header: totals, sums, estimation) and
its element rows (bus, branch, generator, load — key, bus, intensity, energy, carbon) packed into one
value of that header (store/archived_rows.py; ``archived_results`` holds those of results archived
before that format), tagged with its version, so any version stays readable: the result of an interval *as of
version v* is its newest result whose version is ≤ v.

Reading a version and the diff of two: store/version_reads.py.

A recomputation writes its results one chunk of intervals at a time, each chunk in one transaction with
its ``recompute_chunks`` row: a chunk is written once (a second writer of the same version and chunk
finds the row, or on PostgreSQL collides on its key and rolls back), and a chunk whose writer died
before the commit left nothing behind and is simply done again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import Target, chunks, connection_of
from carbonflow.center.store.archived_rows import pack_columns, pack_rows
from carbonflow.center.store.engine import Store
from carbonflow.center.store.result_rows import (
    bound_ts,
    changed_rows,
    insert_results,
    value_columns,
    write_changed,
)
from carbonflow.center.store.results import IntervalRecord
from carbonflow.center.store.schema import RESULT_MODELS, Base, Interval
from carbonflow.center.store.types import UtcDateTime, utc
from carbonflow.center.store.versions import IntervalVersion, version_of

KEY_PAGE = 400  # interval keys per IN list
HEADER_SUMS = (
    "generation_energy_kwh",
    "load_energy_kwh",
    "generation_carbon_kg",
    "load_carbon_kg",
    "loss_carbon_kg",
)


class ResultVersion(Base):
    __tablename__ = "result_versions"
    __table_args__ = (Index("ix_result_versions_fingerprint", "fingerprint", unique=True),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    level: Mapped[str] = mapped_column(String(100))
    interval_s: Mapped[int] = mapped_column(Integer)
    start_ts: Mapped[datetime] = mapped_column(UtcDateTime)  # intervals ending in (start_ts, end_ts]
    end_ts: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the range and every input
    status: Mapped[str] = mapped_column(String(20))  # running | done
    chunks: Mapped[int] = mapped_column(Integer)
    intervals: Mapped[int | None] = mapped_column(Integer)  # recomputed
    skipped: Mapped[list[Any] | None] = mapped_column(JSON)  # [{"ts", "reason"}]: not recomputed
    corrections: Mapped[list[Any] | None] = mapped_column(JSON)  # ids of the corrections applied
    runner: Mapped[str | None] = mapped_column(String(200))  # "local 2 processes", "dask tcp://..."
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RecomputeChunk(Base):
    __tablename__ = "recompute_chunks"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    intervals: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[list[Any] | None] = mapped_column(JSON)
    worker: Mapped[str | None] = mapped_column(String(200))
    written_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ArchivedInterval(Base):
    __tablename__ = "archived_intervals"
    __table_args__ = (Index("ix_archived_intervals_ts", "ts"),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    level: Mapped[str] = mapped_column(String(100), primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    superseded_by: Mapped[int] = mapped_column(Integer)
    losses: Mapped[str] = mapped_column(String(20))
    hash: Mapped[str] = mapped_column(String(64))
    totals: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    estimation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    generation_energy_kwh: Mapped[float] = mapped_column(Float)
    load_energy_kwh: Mapped[float] = mapped_column(Float)
    generation_carbon_kg: Mapped[float] = mapped_column(Float)
    load_carbon_kg: Mapped[float] = mapped_column(Float)
    loss_carbon_kg: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # its element rows in one value (store/archived_rows.py); None: archived before, in archived_results
    element_rows: Mapped[bytes | None] = mapped_column(LargeBinary)


class ArchivedResult(Base):
    """Element rows of results archived before they were packed into ``archived_intervals.element_rows``
    (kept readable; nothing writes here any more)."""

    __tablename__ = "archived_results"
    __table_args__ = (Index("ix_archived_results_ts", "ts"),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    level: Mapped[str] = mapped_column(String(100), primary_key=True)
    interval_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # bus | branch | generator | load
    element_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    bus_id: Mapped[str] = mapped_column(String(100))
    intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    energy_kwh: Mapped[float] = mapped_column(Float)
    carbon_kg: Mapped[float] = mapped_column(Float)


# what the archive keeps of a replaced header (not its snapshot and origin: the bulk of a row)
REPLACED_COLUMNS = [c for c in Interval.__table__.c if c.name not in ("snapshot", "origin", "origin_packed")]
ARCHIVED_COLUMNS = ("element_id", "bus_id", "intensity_g_per_kwh", "energy_kwh", "carbon_kg")


def result_version_of(estimation: dict[str, Any] | None) -> int:
    return int((estimation or {}).get("result_version", 0))


@dataclass(frozen=True)
class VersionInfo:
    version: int
    level: str
    interval_s: int
    start: datetime
    end: datetime
    reason: str | None
    fingerprint: str
    status: str
    chunks: int
    intervals: int | None
    skipped: list[dict[str, Any]]
    corrections: list[int]
    runner: str | None
    created_at: datetime
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "level": self.level,
            "interval_s": self.interval_s,
            "start": self.start,
            "end": self.end,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "chunks": self.chunks,
            "intervals": self.intervals,
            "skipped": self.skipped,
            "corrections": self.corrections,
            "runner": self.runner,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


def _info(row: Any) -> VersionInfo:
    return VersionInfo(
        row.version, row.level, row.interval_s, row.start_ts, row.end_ts, row.reason, row.fingerprint,
        row.status, row.chunks, row.intervals, list(row.skipped or []), list(row.corrections or []),
        row.runner, row.created_at, row.finished_at,
    )  # fmt: skip


def list_versions(target: Target) -> list[VersionInfo]:
    with connection_of(target, write=False) as connection:
        rows = connection.execute(select(ResultVersion.__table__).order_by(ResultVersion.version)).all()
    return [_info(row) for row in rows]


def get_version(target: Target, version: int) -> VersionInfo | None:
    with connection_of(target, write=False) as connection:
        row = connection.execute(
            select(ResultVersion.__table__).where(ResultVersion.version == version)
        ).first()
    return None if row is None else _info(row)


def latest_version(target: Target) -> int:
    """The newest finished version (0: nothing recomputed yet)."""
    with connection_of(target, write=False) as connection:
        value = connection.execute(
            select(func.max(ResultVersion.version)).where(ResultVersion.status == "done")
        ).scalar()
    return int(value or 0)


def open_version(
    store: Store,
    *,
    level: str,
    interval_s: int,
    start: datetime,
    end: datetime,
    fingerprint: str,
    chunks: int,
    reason: str | None,
    actor: str | None,
    corrections: Sequence[int],
    runner: str,
) -> tuple[VersionInfo, bool]:
    """The version for these inputs: ``(info, True)`` a new one, ``(info, False)`` the one that already
    has this fingerprint (done: nothing to do; running: an interrupted run, resumed chunk by chunk)."""
    with store.write() as connection:
        row = connection.execute(
            select(ResultVersion.__table__).where(ResultVersion.fingerprint == fingerprint)
        ).first()
        if row is not None:
            return _info(row), False
        number = int(connection.execute(select(func.max(ResultVersion.version))).scalar() or 0) + 1
        connection.execute(
            ResultVersion.__table__.insert(),
            {
                "version": number, "level": level, "interval_s": interval_s, "start_ts": utc(start),
                "end_ts": utc(end), "reason": reason, "actor": actor, "fingerprint": fingerprint,
                "status": "running", "chunks": chunks, "intervals": None, "skipped": None,
                "corrections": list(corrections), "runner": runner, "created_at": datetime.now(UTC),
                "finished_at": None,
            },
        )  # fmt: skip
        row = connection.execute(select(ResultVersion.__table__).where(ResultVersion.version == number)).one()
    return _info(row), True


def written_chunks(target: Target, version: int) -> dict[int, tuple[int, list[Any]]]:
    """The chunks of ``version`` already written: chunk -> (intervals, skipped)."""
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(RecomputeChunk.chunk, RecomputeChunk.intervals, RecomputeChunk.skipped).where(
                RecomputeChunk.version == version
            )
        ).all()
    return {row.chunk: (row.intervals, list(row.skipped or [])) for row in rows}


def finish_version(store: Store, version: int) -> VersionInfo:
    """Mark ``version`` done with the sums of its chunks (every chunk must be written)."""
    written = written_chunks(store, version)
    skipped = sorted((s for _n, (_i, items) in written.items() for s in items), key=lambda s: s["ts"])
    with store.write() as connection:
        connection.execute(
            update(ResultVersion)
            .where(ResultVersion.version == version)
            .values(
                status="done",
                intervals=sum(n for n, _s in written.values()),
                skipped=skipped,
                finished_at=datetime.now(UTC),
            )
        )
    info = get_version(store, version)
    assert info is not None
    return info


def write_chunk(
    store: Store,
    version: int,
    chunk: int,
    records: Sequence[IntervalRecord],
    skipped: Sequence[dict[str, Any]],
    *,
    worker: str | None = None,
    reason: str = "",
) -> bool:
    """Write one chunk of ``version``'s results in one transaction: False when it was already written
    (by an earlier attempt, or concurrently by a twin of a task that was thought lost).

    The replaced results are read and compared with ``records`` before the write transaction, in a read
    transaction (:func:`_prepare`): with several workers on SQLite the writes queue on the one writer,
    and that work no longer holds it.  The write transaction uses what was read only if the replaced
    headers are still the very rows read (every write of an interval's results gives it a new header
    with a new link of its chain); else it reads them again under the lock."""
    prepared = _prepare(store, records) if records else None
    try:
        with store.write() as connection:
            done = connection.execute(
                select(RecomputeChunk.chunk).where(
                    RecomputeChunk.version == version, RecomputeChunk.chunk == chunk
                )
            ).first()
            if done is not None:
                return False
            connection.execute(
                RecomputeChunk.__table__.insert(),
                {
                    "version": version, "chunk": chunk, "intervals": len(records), "skipped": list(skipped),
                    "worker": worker, "written_at": datetime.now(UTC),
                },
            )  # fmt: skip
            if records:
                _replace(connection, version, records, reason or f"recomputed as version {version}", prepared)
    except IntegrityError:
        return False  # PostgreSQL: a twin committed the same chunk first
    return True


def _keyed(model, level: str, interval_s: int, ts: Sequence[datetime]):
    return (model.level == level, model.interval_s == interval_s, model.ts.in_(ts))


def _replaced_rows(
    connection: Connection, level: str, interval_s: int, stamps: Sequence[datetime]
) -> tuple[dict[datetime, bytes], dict[str, dict[Any, dict[str, tuple[Any, ...]]]]]:
    """The element rows of the current results at ``stamps``: packed per interval (archived_rows.py; read
    in key order, so the same rows give the same bytes), and every row as read — ``(ts, element_id,
    *value_columns)`` — by kind, interval (its ``ts`` as read) and element (what ``update_rows`` compares
    the new rows with)."""
    by_ts: dict[datetime, dict[str, tuple[tuple[Any, ...], ...]]] = defaultdict(dict)
    stored: dict[str, dict[Any, dict[str, tuple[Any, ...]]]] = {}
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    with closing(connection.connection.cursor()) as cursor:  # plain tuples, in the chunk's transaction
        for kind, model in RESULT_MODELS.items():
            table = model.__table__
            values = value_columns(table)
            archived = itemgetter(1, *(2 + values.index(name) for name in ARCHIVED_COLUMNS[1:]))  # of columns
            as_read = table.c.ts.type.process_result_value
            keyed = stored[kind] = {}
            for page in chunks(stamps, KEY_PAGE):
                # at the driver: 150,000 rows a chunk as plain tuples, no per-row result processing
                query = (
                    f"SELECT ts, element_id, {', '.join(values)} FROM {table.name} "  # nosec B608
                    f"WHERE level = {marker} AND interval_s = {marker} "
                    f"AND ts IN ({', '.join([marker] * len(page))}) ORDER BY ts, element_id"
                )
                cursor.execute(query, (level, interval_s, *(bound_ts(connection, model, ts) for ts in page)))
                for ts, group in groupby(cursor.fetchall(), key=itemgetter(0)):
                    rows = list(group)
                    columns = list(zip(*rows))  # transposed once: the archive packs columns
                    by_ts[utc(as_read(ts, connection.dialect))][kind] = archived(columns)
                    keyed[ts] = dict(zip(columns[1], rows))
    return {ts: pack_columns(kinds) for ts, kinds in by_ts.items()}, stored


@dataclass(frozen=True)
class _Prepared:
    """What :func:`_replace` needs of the replaced results, read and compared ahead of the write lock."""

    current: dict[datetime, tuple[Any, ...]]  # the replaced headers as read (REPLACED_COLUMNS)
    packed: dict[datetime, bytes]  # their element rows packed for the archive
    changed: dict[str, list[tuple[Any, ...]]] | None  # changed_rows: None, not in place


def _current(connection: Connection, records: Sequence[IntervalRecord]) -> dict[datetime, Any]:
    """The stored headers (REPLACED_COLUMNS) of ``records``' intervals, by timestamp."""
    level, interval_s = records[0].level, records[0].interval_s
    current: dict[datetime, Any] = {}
    for page in chunks([record.ts for record in records], KEY_PAGE):
        for row in connection.execute(
            select(*REPLACED_COLUMNS).where(*_keyed(Interval, level, interval_s, page))
        ):
            current[utc(row.ts)] = row
    return current


def _read_replaced(connection: Connection, records: Sequence[IntervalRecord], current) -> _Prepared:
    packed, stored = _replaced_rows(connection, records[0].level, records[0].interval_s, sorted(current))
    changed = changed_rows(connection, records, stored)
    return _Prepared({ts: tuple(row) for ts, row in current.items()}, packed, changed)


def _prepare(store: Store, records: Sequence[IntervalRecord]) -> _Prepared:
    with store.read() as connection:  # headers first: a write in between gives them a new header
        return _read_replaced(connection, records, _current(connection, records))


def _replace(
    connection: Connection,
    version: int,
    records: Sequence[IntervalRecord],
    reason: str,
    prepared: _Prepared | None = None,
) -> None:
    """Archive the current results of ``records``' intervals, then store ``records`` as current
    (``prepared``: the replaced results as read before, used if the headers are still those read)."""
    level, interval_s = records[0].level, records[0].interval_s
    keys = [record.ts for record in records]
    now = datetime.now(UTC)
    current = _current(connection, records)
    if prepared is None or prepared.current != {ts: tuple(row) for ts, row in current.items()}:
        prepared = _read_replaced(connection, records, current)
    packed = prepared.packed
    archived, history = [], []
    for ts, row in current.items():
        archived.append(
            {
                "version": result_version_of(row.estimation), "ts": ts, "level": level,
                "interval_s": interval_s, "superseded_by": version, "losses": row.losses, "hash": row.hash,
                "totals": row.totals, "estimation": row.estimation, "created_at": row.created_at,
                "element_rows": packed.get(ts) or pack_rows({}),
                **{name: getattr(row, name) for name in HEADER_SUMS},
            }
        )  # fmt: skip
        history.append(
            {
                "ts": ts, "level": level, "interval_s": interval_s, "version": version_of(row.estimation),
                "hash": row.hash, "totals": row.totals, "estimation": row.estimation,
                "created_at": row.created_at, "superseded_at": now, "reason": reason,
                "chain_seq": row.chain_seq, "chain_hash": row.chain_hash,
            }
        )  # fmt: skip
    if archived:
        connection.execute(ArchivedInterval.__table__.insert(), archived)
        connection.execute(IntervalVersion.__table__.insert(), history)
    for page in chunks(keys, KEY_PAGE):
        connection.execute(delete(Interval).where(*_keyed(Interval, level, interval_s, page)))
    # the element rows in place when the new results have exactly the replaced rows' elements (the
    # usual case: the same network; no index entry changes; unchanged rows left alone), else deleted
    # and inserted
    in_place = prepared.changed is not None and write_changed(connection, prepared.changed)
    if not in_place:
        for model in RESULT_MODELS.values():
            for page in chunks(keys, KEY_PAGE):
                connection.execute(delete(model).where(*_keyed(model, level, interval_s, page)))
    for record in records:
        previous = current.get(record.ts)
        record.estimation = {
            **(record.estimation or {}),
            "version": (version_of(previous.estimation) + 1) if previous is not None else 1,
            "result_version": version,
        }
    insert_results(connection, records, rows=not in_place)

"""Versions of the interval results as a whole: a recomputation of history is one numbered version.

Version 0 is the results as metered (the live loop, re-meterings for late readings included); every
``carbonflow center recompute`` run that changes something is version 1, 2, ... (``result_versions``:
its range, reason, input fingerprint, state, and which intervals it could not recompute and why).

``intervals`` and the result tables always hold each interval's *current* result; its version number
is ``estimation["result_version"]`` (absent: 0).  When a recomputation replaces an interval, the
result it replaces moves to ``archived_intervals`` (the header: totals, sums, estimation) and
``archived_results`` (every element row: bus, branch, generator, load — key, bus, intensity, energy,
carbon), tagged with its version, so any version stays readable: the result of an interval *as of
version v* is its newest result whose version is ≤ v.

A recomputation writes its results one chunk of intervals at a time, each chunk in one transaction
with its ``recompute_chunks`` row: a chunk is written once (a second writer of the same version and
chunk finds the row, or on PostgreSQL collides on its key and rolls back), and a chunk whose writer
died before the commit left nothing behind and is simply done again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Text,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import Target, chunks, connection_of
from carbonflow.center.store.chain import INTERVAL, append_links, interval_fields, interval_key
from carbonflow.center.store.engine import Store
from carbonflow.center.store.intervals import HEADER_COLUMNS
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.results import IntervalRecord, header_row
from carbonflow.center.store.schema import RESULT_MODELS, TIME_SERIES_TABLES, Base, Interval, Load
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


class ArchivedResult(Base):
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
REPLACED_COLUMNS = [c for c in Interval.__table__.c if c.name not in ("snapshot", "origin")]
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
    (by an earlier attempt, or concurrently by a twin of a task that was thought lost)."""
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
                _replace(connection, version, records, reason or f"recomputed as version {version}")
    except IntegrityError:
        return False  # PostgreSQL: a twin committed the same chunk first
    return True


def _keyed(model, level: str, interval_s: int, ts: Sequence[datetime]):
    return (model.level == level, model.interval_s == interval_s, model.ts.in_(ts))


def _replace(connection: Connection, version: int, records: Sequence[IntervalRecord], reason: str) -> None:
    """Archive the current results of ``records``' intervals, then store ``records`` as current."""
    level, interval_s = records[0].level, records[0].interval_s
    keys = [record.ts for record in records]
    now = datetime.now(UTC)
    current: dict[datetime, Any] = {}
    for page in chunks(keys, KEY_PAGE):
        for row in connection.execute(
            select(*REPLACED_COLUMNS).where(*_keyed(Interval, level, interval_s, page))
        ):
            current[utc(row.ts)] = row
    by_source: dict[int, list[datetime]] = defaultdict(list)
    archived, history = [], []
    for ts, row in current.items():
        source = result_version_of(row.estimation)
        by_source[source].append(ts)
        archived.append(
            {
                "version": source, "ts": ts, "level": level, "interval_s": interval_s,
                "superseded_by": version, "losses": row.losses, "hash": row.hash, "totals": row.totals,
                "estimation": row.estimation, "created_at": row.created_at,
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
    archive = ArchivedResult.__table__
    for source, stamps in by_source.items():
        for kind, model in RESULT_MODELS.items():
            for page in chunks(stamps, KEY_PAGE):
                columns = [model.__table__.c[name] for name in ARCHIVED_COLUMNS]
                query = select(
                    literal(source), model.ts, model.level, model.interval_s, literal(kind), *columns
                ).where(*_keyed(model, level, interval_s, page))
                connection.execute(
                    archive.insert().from_select(
                        ["version", "ts", "level", "interval_s", "kind", *ARCHIVED_COLUMNS], query
                    )
                )
    for model in (Interval, *RESULT_MODELS.values()):
        for page in chunks(keys, KEY_PAGE):
            connection.execute(delete(model).where(*_keyed(model, level, interval_s, page)))
    for record in records:
        previous = current.get(record.ts)
        record.estimation = {
            **(record.estimation or {}),
            "version": (version_of(previous.estimation) + 1) if previous is not None else 1,
            "result_version": version,
        }
    insert_results(connection, records)


def insert_results(connection: Connection, records: Sequence[IntervalRecord]) -> None:
    """Store ``records`` (of one level and interval length, none stored yet) as current results: their
    headers with one new link each in the interval chains, and their element rows — in bulk."""
    if not records:
        return
    level, interval_s = records[0].level, records[0].interval_s
    if connection.dialect.name == "postgresql":
        stamps = [record.ts for record in records]
        ensure_partitions(connection, TIME_SERIES_TABLES[1:], months_between(min(stamps), max(stamps)))
    headers = [header_row(record) for record in records]
    links = append_links(
        connection,
        INTERVAL,
        [(interval_key(h["ts"], level, interval_s), interval_fields(h)) for h in headers],
    )
    for header, (seq, digest) in zip(headers, links):
        header["chain_seq"], header["chain_hash"] = seq, digest
    connection.execute(Interval.__table__.insert(), headers)
    for kind, model in RESULT_MODELS.items():
        _insert_rows(connection, model.__table__, records, kind)


def _insert_rows(connection: Connection, table, records: Sequence[IntervalRecord], kind: str) -> None:
    """The element rows of ``kind`` as one driver-level executemany of plain tuples: the interval's
    timestamp is converted once per interval, not once per row (most of the cost of a bulk insert
    through the ORM's per-row parameter processing)."""
    dialect = connection.dialect
    names = [column.name for column in table.c]
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([marker] * len(names))})"  # nosec B608
    ts_type = table.c.ts.type
    rows = []
    for record in records:
        key = {"ts": ts_type.process_bind_param(record.ts, dialect), "level": record.level,
               "interval_s": record.interval_s}  # fmt: skip
        for row in record.rows.get(kind, []):
            rows.append(tuple(key[name] if name in key else row.get(name) for name in names))
    for page in chunks(rows, 5000):
        connection.exec_driver_sql(statement, page)


# --- reading a version -----------------------------------------------------------------------------------


def header_as_of(target: Target, ts: datetime, version: int, level: str = "") -> dict[str, Any] | None:
    """The header of the interval ending at ``ts`` as of ``version`` (its newest result ≤ version), with
    ``result_version``; None when the interval had no result then."""
    ts = utc(ts)
    with connection_of(target, write=False) as connection:
        row = connection.execute(
            select(*HEADER_COLUMNS, Interval.estimation).where(Interval.ts == ts, Interval.level == level)
        ).first()
        if row is not None and result_version_of(row.estimation) <= version:
            header = dict(row._mapping)
            header["result_version"] = result_version_of(row.estimation)
            header["current"] = True
            return header
        table = ArchivedInterval.__table__
        row = connection.execute(
            select(table)
            .where(table.c.ts == ts, table.c.level == level, table.c.version <= version)
            .order_by(table.c.version.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    header = dict(row._mapping)
    header["result_version"] = header.pop("version")
    header["current"] = False
    return header


def archived_rows(target: Target, kind: str, header: dict[str, Any]) -> list[dict[str, Any]]:
    """The element rows of an archived version's interval (``header`` from :func:`header_as_of`)."""
    table = ArchivedResult.__table__
    with connection_of(target, write=False) as connection:
        rows = connection.execute(
            select(*(table.c[name] for name in ARCHIVED_COLUMNS))
            .where(
                table.c.version == header["result_version"],
                table.c.ts == header["ts"],
                table.c.level == header["level"],
                table.c.interval_s == header["interval_s"],
                table.c.kind == kind,
            )
            .order_by(table.c.element_id)
        ).all()
    return [dict(row._mapping) for row in rows]


def versions_in(target: Target, start: datetime, end: datetime, level: str | None = None) -> list[int]:
    """The result versions of the current results of the intervals ending in ``(start, end]``."""
    column = Interval.estimation["result_version"].as_integer()
    query = select(func.coalesce(column, 0)).where(Interval.ts > start, Interval.ts <= end).distinct()
    if level is not None:
        query = query.where(Interval.level == level)
    with connection_of(target, write=False) as connection:
        return sorted(int(v) for (v,) in connection.execute(query))


def _sources(connection: Connection, version: int, start: datetime, end: datetime, level: str):
    """Per interval ending in ``(start, end]``: where its result as of ``version`` is — ``"current"``,
    an archived version number, or absent — as sorted ``(ts, source)`` pairs."""
    column = func.coalesce(Interval.estimation["result_version"].as_integer(), 0)
    current = {
        utc(ts): int(v)
        for ts, v in connection.execute(
            select(Interval.ts, column).where(
                Interval.ts > start, Interval.ts <= end, Interval.level == level
            )
        )
    }
    table = ArchivedInterval.__table__
    archived: dict[datetime, int] = {}
    for ts, v in connection.execute(
        select(table.c.ts, func.max(table.c.version))
        .where(table.c.ts > start, table.c.ts <= end, table.c.level == level, table.c.version <= version)
        .group_by(table.c.ts)
    ):
        archived[utc(ts)] = int(v)
    out: list[tuple[datetime, Any]] = []
    for ts in sorted(set(current) | set(archived)):
        if ts in current and current[ts] <= version:
            out.append((ts, "current"))
        elif ts in archived:
            out.append((ts, archived[ts]))
    return out


def _runs(pairs: Sequence[tuple[datetime, Any]]) -> Iterable[tuple[Any, datetime, datetime]]:
    """Consecutive intervals with the same source, as ``(source, first ts, last ts)``."""
    run: list[Any] = []
    for ts, source in pairs:
        if run and run[0] == source:
            run[2] = ts
        else:
            if run:
                yield tuple(run)
            run = [source, ts, ts]
    if run:
        yield tuple(run)


def _sums(connection: Connection, kind: str, source: Any, first: datetime, last: datetime, level: str):
    if source == "current":
        model = RESULT_MODELS[kind]
        table = model.__table__
        query = select(
            table.c.element_id, table.c.bus_id, func.sum(table.c.energy_kwh), func.sum(table.c.carbon_kg)
        )
    else:
        table = ArchivedResult.__table__
        query = select(
            table.c.element_id, table.c.bus_id, func.sum(table.c.energy_kwh), func.sum(table.c.carbon_kg)
        ).where(table.c.version == source, table.c.kind == kind)
    query = query.where(table.c.ts >= first, table.c.ts <= last, table.c.level == level).group_by(
        table.c.element_id, table.c.bus_id
    )
    return connection.execute(query).all()


def _header_sums(connection: Connection, source: Any, first: datetime, last: datetime, level: str):
    table = Interval.__table__ if source == "current" else ArchivedInterval.__table__
    query = select(*(func.sum(table.c[name]) for name in HEADER_SUMS)).where(
        table.c.ts >= first, table.c.ts <= last, table.c.level == level
    )
    if source != "current":
        query = query.where(table.c.version == source)
    return connection.execute(query).one()


def _as_of(connection: Connection, version: int, start: datetime, end: datetime, level: str):
    pairs = _sources(connection, version, start, end, level)
    elements: dict[str, dict[str, list[float]]] = {"bus": {}, "load": {}}
    totals = dict.fromkeys(HEADER_SUMS, 0.0)
    for source, first, last in _runs(pairs):
        for kind, sums in elements.items():
            for element_id, bus_id, energy, carbon in _sums(connection, kind, source, first, last, level):
                entry = sums.setdefault(element_id, [0.0, 0.0, bus_id])
                entry[0] += float(energy or 0.0)
                entry[1] += float(carbon or 0.0)
        for name, value in zip(HEADER_SUMS, _header_sums(connection, source, first, last, level)):
            totals[name] += float(value or 0.0)
    return dict(pairs), elements, totals


def _intensity(entry: list[Any] | None) -> float | None:
    return entry[1] * 1000.0 / entry[0] if entry and entry[0] else None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def diff_versions(
    target: Target, a: int, b: int, start: datetime, end: datetime, level: str = ""
) -> dict[str, Any]:
    """Version ``b`` against version ``a`` over the intervals ending in ``(start, end]``: per bus and per
    user (load) the energy, carbon and energy-weighted intensity of both and the change, and the totals."""
    with connection_of(target, write=False) as connection:
        sources_a, elements_a, totals_a = _as_of(connection, a, start, end, level)
        sources_b, elements_b, totals_b = _as_of(connection, b, start, end, level)
        users = dict(connection.execute(select(Load.id, Load.user_name)).all())
    changed = sum(1 for ts in set(sources_a) | set(sources_b) if sources_a.get(ts) != sources_b.get(ts))
    listed: dict[str, list[dict[str, Any]]] = {}
    for kind, name in (("bus", "buses"), ("load", "users")):
        rows = []
        for element_id in sorted(set(elements_a[kind]) | set(elements_b[kind])):
            ea, eb = elements_a[kind].get(element_id), elements_b[kind].get(element_id)
            ia, ib = _intensity(ea), _intensity(eb)
            row = {
                "id": element_id,
                "bus": (ea or eb)[2],  # type: ignore[index]
                "energy_kwh_a": ea[0] if ea else None,
                "energy_kwh_b": eb[0] if eb else None,
                "carbon_kg_a": ea[1] if ea else None,
                "carbon_kg_b": eb[1] if eb else None,
                "delta_carbon_kg": _delta(ea[1] if ea else None, eb[1] if eb else None),
                "intensity_g_per_kwh_a": ia,
                "intensity_g_per_kwh_b": ib,
                "delta_intensity_g_per_kwh": _delta(ia, ib),
            }
            if kind == "load":
                row["user_name"] = users.get(element_id)
            rows.append(row)
        listed[name] = rows
    return {
        "a": a,
        "b": b,
        "start": start,
        "end": end,
        "level": level,
        "intervals": len(set(sources_a) | set(sources_b)),
        "changed_intervals": changed,
        "totals": {
            name: {"a": totals_a[name], "b": totals_b[name], "delta": totals_b[name] - totals_a[name]}
            for name in HEADER_SUMS
        },
        **listed,
    }

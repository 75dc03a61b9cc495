"""Recompute the interval results of a past range as a new version (issue 17 §3, docs/recompute.md).

The range ``(start, end]`` is cut into chunks of consecutive intervals, the unit of work: a worker
recomputes a chunk from what the store holds — each interval's stored snapshot (the inputs it was
metered from) with the corrections that apply to it (emission factors, the loss convention), or, for
an interval whose window holds a corrected reading, from its readings again through
:meth:`MeteringService.compute_interval` — and writes the chunk's results in one transaction
(:func:`carbonflow.center.store.result_versions.write_chunk`, once per version and chunk).

Chunks run in a local process pool (``workers``; 1 = in this process) or on a Dask distributed
cluster (``dask_address``).  A chunk is a pure function of the store's contents and its job, so
which worker runs it, and how many times, never changes what is written: a killed worker's chunk is
run again (in a new local pool, or by the Dask scheduler on another worker), and the chunk row stops
a second write.

The version's fingerprint is a SHA-256 over the range, the interval length, the level and every input
that can change a result: the corrections touching the range and the state of the readings around it
(count and newest arrival).  A second recompute of the same range and inputs finds that fingerprint
and creates no new version; an interrupted one resumes with the chunks it had not written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, func, select

from carbonflow.center.metering.assemble import Assembled
from carbonflow.center.metering.measurements import StoredReading
from carbonflow.center.metering.recompute_snapshot import (
    SnapshotDecoder,
    corrected_document,
    corrected_text,
    snapshot_record,
)
from carbonflow.center.metering.service import MeteringService, collection_paused
from carbonflow.center.store import IntervalRecord, Store
from carbonflow.center.store.access import chunks as pages
from carbonflow.center.store.corrections import Correction, corrections
from carbonflow.center.store.result_versions import (
    VersionInfo,
    finish_version,
    open_version,
    write_chunk,
    written_chunks,
)
from carbonflow.center.store.schema import Interval, Reading
from carbonflow.center.store.types import utc
from carbonflow.engine import SnapshotError
from carbonflow.engine.document import document_hash_v1, hash_scheme

log = logging.getLogger(__name__)
CHUNK_INTERVALS = 480  # five days of 15-min intervals per unit of work
LOCAL_ATTEMPTS = 3  # pools started when local workers die
DRILL_ENV = "CARBONFLOW_RECOMPUTE_DRILL"  # "<dir>:<seconds>": announce each chunk in dir, hold it (tests)


class RecomputeError(ValueError):
    """A recomputation that cannot start: the message names what is wrong."""


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs to recompute one chunk: picklable, no open connection."""

    database_url: str
    version: int
    chunk: int
    ends: tuple[datetime, ...]
    level: str
    interval_s: int
    corrections: tuple[Correction, ...]
    reason: str
    everything: bool = False  # also the intervals no correction touches (e.g. after an engine fix)


@dataclass(frozen=True)
class ChunkOutcome:
    chunk: int
    written: bool  # False: this version's chunk had been written already
    intervals: int  # recomputed and stored (changed results)
    unchanged: int  # recomputed, same result as the current one: left as it was
    skipped: list[dict[str, Any]] = field(default_factory=list)
    compute_s: float = 0.0  # reading the inputs and computing
    write_s: float = 0.0  # writing the chunk (archive, replace, chain links)


@dataclass
class RecomputeReport:
    version: VersionInfo
    created: bool  # False: the same range and inputs had been recomputed already (no new version)
    intervals: int = 0
    unchanged: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    compute_s: float = 0.0  # summed over the chunks (workers in parallel: more than ``seconds``)
    write_s: float = 0.0


# --- planning (the caller) ------------------------------------------------------------------------------


def interval_ends(start: datetime, end: datetime, interval_s: int) -> list[datetime]:
    """Every interval end in ``(start, end]`` (multiples of ``interval_s``)."""
    start, end = utc(start), utc(end)
    first = (int(start.timestamp()) // interval_s + 1) * interval_s
    step = timedelta(seconds=interval_s)
    moment = datetime.fromtimestamp(first, start.tzinfo)
    out = []
    while moment <= end:
        out.append(moment)
        moment += step
    return out


def stored_interval_s(store: Store, start: datetime, end: datetime, level: str) -> int:
    with store.read() as connection:
        lengths = sorted(
            v
            for (v,) in connection.execute(
                select(Interval.interval_s)
                .where(Interval.ts > start, Interval.ts <= end, Interval.level == level)
                .distinct()
            )
        )
    if not lengths:
        raise RecomputeError(
            f"no metered interval ends in ({start.isoformat()}, {end.isoformat()}]: nothing to recompute"
        )
    if len(lengths) > 1:
        raise RecomputeError(f"intervals of {lengths} s in the range: give --interval-s")
    return lengths[0]


def fingerprint(
    store: Store,
    start: datetime,
    end: datetime,
    level: str,
    interval_s: int,
    applied: Sequence[Correction],
    everything: bool = False,
) -> str:
    """SHA-256 of the range and every input: corrections, and the readings' count and newest arrival."""
    span = timedelta(seconds=interval_s)
    with store.read() as connection:
        count, newest = connection.execute(
            select(func.count(), func.max(Reading.received_at)).where(
                Reading.ts >= start - 2 * span, Reading.ts <= end + span
            )
        ).one()
    document = {
        "start": utc(start).isoformat(),
        "end": utc(end).isoformat(),
        "level": level,
        "interval_s": interval_s,
        "everything": everything,
        "readings": [int(count), utc(newest).isoformat() if newest else None],
        "corrections": [
            [c.id, c.kind, c.element_id, c.start_ts.isoformat(), c.end_ts.isoformat(), c.value]
            for c in applied
        ],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def recompute(
    store: Store,
    database_url: str,
    start: datetime,
    end: datetime,
    *,
    reason: str | None = None,
    actor: str | None = None,
    level: str = "",
    interval_s: int | None = None,
    workers: int = 1,
    dask_address: str | None = None,
    chunk_intervals: int = CHUNK_INTERVALS,
    everything: bool = False,
    progress: Callable[[ChunkOutcome], None] | None = None,
) -> RecomputeReport:
    """Recompute the intervals ending in ``(start, end]`` as a new version (see the module docstring).
    Intervals no correction applies to are left as they are unless ``everything`` (after a change of
    the engine: each is recomputed and stored when its result differs)."""
    start, end = utc(start), utc(end)
    if not start < end:
        raise RecomputeError(f"--from {start.isoformat()} must be before --to {end.isoformat()}")
    if workers < 1 or chunk_intervals < 1:
        raise RecomputeError("--workers and the chunk size must be at least 1")
    interval_s = interval_s or stored_interval_s(store, start, end, level)
    span = timedelta(seconds=interval_s)
    applied = corrections(store, start - 2 * span, end + span)
    ends = interval_ends(start, end, interval_s)
    if not ends:
        raise RecomputeError(
            f"no interval of {interval_s} s ends in ({start.isoformat()}, {end.isoformat()}]"
        )
    planned = [tuple(page) for page in pages(ends, chunk_intervals)]
    runner = (
        f"dask {dask_address}" if dask_address else f"local {workers} process{'es' if workers > 1 else ''}"
    )
    info, created = open_version(
        store, level=level, interval_s=interval_s, start=start, end=end,
        fingerprint=fingerprint(store, start, end, level, interval_s, applied, everything),
        chunks=len(planned),
        reason=reason, actor=actor, corrections=[c.id for c in applied], runner=runner,
    )  # fmt: skip
    report = RecomputeReport(info, created, chunks_total=len(planned))
    if info.status == "done":
        report.skipped = info.skipped
        return report
    done = written_chunks(store, info.version)
    jobs = [
        ChunkJob(
            database_url, info.version, n, page, level, interval_s, tuple(applied), reason or "", everything
        )
        for n, page in enumerate(planned)
        if n not in done
    ]
    began = time.perf_counter()
    run = _run_dask if dask_address else _run_local
    for outcome in run(jobs, workers, dask_address):
        report.chunks_written += outcome.written
        report.intervals += outcome.intervals
        report.unchanged += outcome.unchanged
        report.compute_s += outcome.compute_s
        report.write_s += outcome.write_s
        if progress is not None:
            progress(outcome)
    report.seconds = time.perf_counter() - began
    report.version = finish_version(store, info.version)
    report.skipped = report.version.skipped
    return report


def _run_local(jobs: list[ChunkJob], workers: int, _address: str | None):
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield recompute_chunk(job)
        return
    pending = list(jobs)
    for _attempt in range(LOCAL_ATTEMPTS):
        finished: set[int] = set()
        try:
            # spawn: a worker opens its own connections, never a copy of the caller's
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(recompute_chunk, job): job.chunk for job in pending}
                for future in as_completed(futures):
                    outcome = future.result()
                    finished.add(futures[future])
                    yield outcome
            return
        except BrokenProcessPool:  # a worker died (killed, out of memory): its chunks run again
            pending = [job for job in pending if job.chunk not in finished]
            log.warning("a recompute worker died; %d chunks run again in a new pool", len(pending))
    raise RecomputeError(f"recompute workers kept dying: {len(pending)} chunks not written; run it again")


def _run_dask(jobs: list[ChunkJob], _workers: int, address: str | None):
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:  # pragma: no cover - the dependency is declared
        raise RecomputeError("--dask needs the dask[distributed] package") from None
    try:
        client = Client(address, timeout="10s")
    except OSError as error:
        raise RecomputeError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    with client:
        # pure=False: each job is its own task; a worker lost mid-chunk has the scheduler run it again
        futures = client.map(
            recompute_chunk, jobs, pure=False, key=[f"recompute-{j.version}-{j.chunk}" for j in jobs]
        )
        for future in dask_completed(futures):
            yield future.result()


# --- one chunk (a worker) ---------------------------------------------------------------------------------

_STORES: dict[str, Store] = {}
_SERVICES: dict[tuple[str, str, int], MeteringService] = {}


def _store(url: str) -> Store:
    if url not in _STORES:
        _STORES[url] = Store.open(url, migrate=False)
    return _STORES[url]


def _service(store: Store, url: str, level: str, interval_s: int) -> MeteringService:
    """A metering service for intervals whose readings were corrected (built once per worker)."""
    from carbonflow.center.topology import topology_document

    key = (url, level, interval_s)
    if key not in _SERVICES:
        _SERVICES[key] = MeteringService(store, topology_document(store), interval_s, level=level)
    return _SERVICES[key]


@dataclass(frozen=True)
class StoredInterval:
    """What a chunk reads of a stored interval: its inputs (the snapshot, also as its stored text) and
    the result hash and loss convention it was metered with."""

    snapshot: dict[str, Any] | None
    snapshot_text: str | None
    estimation: dict[str, Any] | None
    losses: str
    hash: str


def _stored_inputs(store: Store, job: ChunkJob) -> dict[datetime, StoredInterval]:
    wanted = [job.ends[0] - timedelta(seconds=job.interval_s), *job.ends]
    rows = {}
    with store.read() as connection:
        for page in pages(wanted, 400):
            for row in connection.execute(
                select(
                    Interval.ts, cast(Interval.snapshot, Text).label("snapshot_text"), Interval.estimation,
                    Interval.losses, Interval.hash,
                ).where(
                    Interval.level == job.level, Interval.interval_s == job.interval_s, Interval.ts.in_(page)
                )
            ):  # fmt: skip
                text = row.snapshot_text
                rows[utc(row.ts)] = StoredInterval(
                    None if text is None else json.loads(text), text, row.estimation, row.losses, row.hash
                )
    return rows


def _latest(applied: Sequence[Correction], kind: str, end: datetime) -> dict[str | None, str]:
    """The value of each element's newest correction of ``kind`` covering ``end`` (newest id wins)."""
    out: dict[str | None, str] = {}
    for correction in applied:  # ordered by id
        if correction.kind == kind and correction.covers(end):
            out[correction.element_id] = correction.value
    return out


def _drill(job: ChunkJob) -> None:
    setting = os.environ.get(DRILL_ENV)
    if not setting:
        return
    directory, _, seconds = setting.rpartition(":")
    Path(directory, f"{job.version}-{job.chunk}-{os.getpid()}").touch()
    time.sleep(float(seconds))


def recompute_chunk(job: ChunkJob) -> ChunkOutcome:
    """Recompute and write one chunk (runs in a worker; see the module docstring).  No cyclic garbage
    collection meanwhile, as when an interval is metered: the chunk allocates millions of small acyclic
    objects (~150,000 result rows read back, as many made new), and the collections they triggered took
    ~0.35 ms of CPU per interval of the reference grid (15 %; docs/performance.md §3, seventh pass)."""
    with collection_paused():
        return _recompute_chunk(job)


def _recompute_chunk(job: ChunkJob) -> ChunkOutcome:
    began = time.perf_counter()
    store = _store(job.database_url)
    if job.chunk in written_chunks(store, job.version):
        return ChunkOutcome(job.chunk, False, 0, 0)
    stored = _stored_inputs(store, job)
    span = timedelta(seconds=job.interval_s)
    fixed_readings = [c for c in job.corrections if c.kind == "reading"]
    records, skipped, unchanged = [], [], 0
    decoder = SnapshotDecoder()  # the chunk's snapshots share their network: decoded on arrays
    for end in job.ends:
        row = stored.get(end)
        if row is None or not row.snapshot:
            why = "not metered: no stored result" if row is None else "no stored inputs (snapshot)"
            skipped.append({"ts": end.isoformat(), "reason": why})
            continue
        factors = {k: float(v) for k, v in _latest(job.corrections, "emission_factor", end).items() if k}
        losses = _latest(job.corrections, "losses", end).get(None, row.losses)
        touched = [c for c in fixed_readings if end - 2 * span <= c.start_ts <= end + span]
        if not (factors or losses != row.losses or touched or job.everything):
            unchanged += 1  # nothing applies: its stored result is what recomputing would give
            continue
        try:
            if touched:
                record = _from_readings(
                    store, job, end, stored.get(end - span), row, touched, factors, losses
                )
            else:
                record = _from_snapshot(job, end, row, factors, losses, decoder)
        except (SnapshotError, ArithmeticError) as error:  # ArithmeticError: a singular origin system
            skipped.append({"ts": end.isoformat(), "reason": f"the engine refused the inputs: {error}"})
            continue
        if same_result(record, row):
            unchanged += 1
            continue
        record.estimation = {**(record.estimation or {}), "corrections": _ids(job.corrections, end, touched)}
        records.append(record)
    _drill(job)
    computed = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    written = write_chunk(store, job.version, job.chunk, records, skipped, worker=worker, reason=job.reason)
    return ChunkOutcome(
        job.chunk, written, len(records) if written else 0, unchanged, skipped,
        computed - began, time.perf_counter() - computed,
    )  # fmt: skip


def same_result(record: IntervalRecord, row: StoredInterval) -> bool:
    """Whether ``record`` computes what ``row`` stores, its hash compared under the scheme the stored one
    was made with (an interval metered before scheme 2 keeps its scheme-1 hash until its result changes)."""
    new = record.hash_v1 if hash_scheme(row.hash) == 1 else record.hash
    return new == row.hash and record.losses == row.losses


def _ids(applied: Sequence[Correction], end: datetime, touched: Sequence[Correction]) -> list[int]:
    return sorted({c.id for c in applied if c.kind != "reading" and c.covers(end)} | {c.id for c in touched})


def _from_snapshot(
    job: ChunkJob,
    end: datetime,
    row: StoredInterval,
    factors: dict[str, float],
    losses: str,
    decoder: SnapshotDecoder,
) -> IntervalRecord:
    """The interval from its stored inputs with the corrections applied (on arrays: recompute_snapshot)."""
    document = corrected_document(row.snapshot, factors)
    estimation = {k: v for k, v in (row.estimation or {}).items() if k not in ("uncertainty",)}
    return snapshot_record(
        end, job.interval_s, job.level, decoder.decode(document), losses, document=document,
        estimation=estimation, snapshot_text=corrected_text(row.snapshot_text, row.snapshot, document),
        scheme1=hash_scheme(row.hash) == 1,
    )  # fmt: skip


def _from_readings(store, job, end, before, row, touched, factors, losses):
    """The interval metered again from its readings, the corrected ones in place of the stored ones."""
    service = _service(store, job.database_url, job.level, job.interval_s)
    fixed = {(c.element_id, c.start_ts): Decimal(c.value) for c in touched}
    readings = [
        StoredReading(r.point_id, r.ts, fixed.pop((r.point_id, utc(r.ts)), r.value), r.quality)
        for r in service.readings_for(end)
    ]
    readings += [StoredReading(point, ts, value) for (point, ts), value in fixed.items()]
    previous = Assembled(before.snapshot, []).values if before is not None and before.snapshot else {}
    discharge = {
        s["id"]: s["intensity_g_per_kwh"]
        for s in row.snapshot.get("storage", [])
        if "intensity_g_per_kwh" in s
    }
    computed = service.compute_interval(
        end, readings, previous=previous, losses=losses, factors=factors, discharge=discharge
    )
    if computed.document is None:
        raise SnapshotError(computed.error or "not metered")
    complete = computed.completeness >= 1.0 and not computed.assembled.estimates
    record = service.record_of(end, computed, complete=complete)
    if hash_scheme(row.hash) == 1:
        record.hash_v1 = document_hash_v1(computed.document)
    return record

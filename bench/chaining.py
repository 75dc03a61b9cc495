"""Benchmark: what the hash chains cost at ingest, and what verification costs, in one run.

    .venv/bin/python bench/chaining.py                       # 100k readings, SQLite
    .venv/bin/python bench/chaining.py --readings 1000000    # and verify a million in bounded memory
    .venv/bin/python bench/chaining.py --backends sqlite,postgresql

What is measured: ``--readings`` readings of ``--points`` points in batches of ``--batch`` (one reading per
point per batch, like a collector's poll) go through ``ingest_batch`` into a fresh database, twice —
with the chains (the shipped code) and without them (the baseline: the same ingest with the chaining
step — head lookup and lock, stored-duplicate lookup, hashing, head update — replaced by the identity).
Both runs alternate (baseline first, then chained, ``--rounds`` times) and the best of each is reported,
with the ratio chained / baseline.  Then ``verify`` runs over the chained database: time, rows per second
and the peak RSS of the process running it (a fresh one), which must not grow with the row count.

PostgreSQL at ``--pg`` (a fresh database is created and dropped).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carbonflow.center.store import (
    Store,
    count_readings,
    ingest_batch,
    register_devices,
    upsert_collector,
    verify,
)
from carbonflow.center.store import readings as readings_module
from carbonflow.center.store.access import chunks
from carbonflow.messages.c4 import Batch, Reading

COLLECTOR = "BENCH"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seed(store: Store, n_points: int) -> None:
    upsert_collector(store, COLLECTOR, "bench-secret")
    points = [
        {"id": f"M1/{k}", "element_kind": "load", "element_id": f"U{k}", "quantity": "p_mw"}
        for k in range(n_points)
    ]
    register_devices(store, [{"id": "M1", "protocol": "dlt645", "points": points}], COLLECTOR)


def batches(n_readings: int, n_points: int, size: int) -> list[Batch]:
    made, step, seq = [], 0, 0
    per_batch = max(1, size // n_points)  # polls per batch
    while step * n_points < n_readings:
        readings = []
        for _poll in range(per_batch):
            ts = T0 + timedelta(seconds=step)
            readings += [
                Reading(point=f"M1/{k}", ts=ts, value=f"{k}.{step % 1000:03d}") for k in range(n_points)
            ]
            step += 1
        seq += 1
        made.append(
            Batch(
                collector_id=COLLECTOR,
                batch_id=f"bench-{seq:08d}",
                seq=seq,
                created_at=T0,
                readings=readings[: n_readings - (step - per_batch) * n_points],
            )
        )
    return made


def _plain_insert(connection, statement, rows: list[dict]) -> int:
    pages = chunks(rows, readings_module.INSERT_PAGE)
    return sum(len(connection.execute(statement, page).all()) for page in pages)


def ingest_all(url: str, work: list[Batch], n_points: int, *, chained: bool) -> float:
    store = Store.open(url)
    seed(store, n_points)
    original = readings_module._insert_chained
    if not chained:  # the baseline: the insert as it was before the chains
        readings_module._insert_chained = _plain_insert
    try:
        started = time.perf_counter()
        for batch in work:
            ingest_batch(store, batch)
        elapsed = time.perf_counter() - started
    finally:
        readings_module._insert_chained = original
    assert count_readings(store) == sum(len(b.readings) for b in work)
    store.close()
    return elapsed


def _peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``, per address space: unlike ``ru_maxrss`` it does
    not count the parent's pages a spawned child had before ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _verify_child(url: str, answers) -> None:
    store = Store.open(url, migrate=False)
    try:
        started = time.perf_counter()
        report = verify(store)
        seconds = time.perf_counter() - started
        answers.put(
            (seconds, report.links["reading"], [str(f) for f in report.findings[:5]], _peak_rss_mib())
        )
    finally:
        store.close()


def measure_verify(url: str) -> tuple[float, int, float]:
    """verify in a fresh process: its time, the links checked and the process's peak RSS (MiB)."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_verify_child, args=(url, answers))
    child.start()
    seconds, links, findings, peak_mib = answers.get()
    child.join()
    assert not findings, findings
    return seconds, links, peak_mib


class Databases:
    """A fresh database per run: SQLite files in a temp folder, PostgreSQL databases created and dropped."""

    def __init__(self, pg_url: str) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="cf-chain-bench-")
        self.pg_url, self.created = pg_url, []

    def new(self, backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{Path(self.folder.name) / uuid.uuid4().hex}.db"
        name = f"cf_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.created.append(name)
        return make_url(self.pg_url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        self.folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--batch", type=int, default=2000, help="readings per batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    work = batches(args.readings, args.points, args.batch)
    databases = Databases(args.pg)
    try:
        for backend in args.backends.split(","):
            best = {False: float("inf"), True: float("inf")}
            last_chained_url = ""
            for _round in range(args.rounds):
                for chained in (False, True):
                    url = databases.new(backend)
                    best[chained] = min(best[chained], ingest_all(url, work, args.points, chained=chained))
                    last_chained_url = url if chained else last_chained_url
            rate = {k: args.readings / v for k, v in best.items()}
            print(
                f"{backend}: {args.readings:,} readings, {args.points} points, batches of {args.batch}, "
                f"best of {args.rounds}"
            )
            print(f"  ingest without chains (baseline): {best[False]:7.2f} s  {rate[False]:9,.0f} readings/s")
            print(f"  ingest with chains:               {best[True]:7.2f} s  {rate[True]:9,.0f} readings/s")
            print(f"  ratio chained / baseline time:    {best[True] / best[False]:7.2f}")
            seconds, links, peak_mib = measure_verify(last_chained_url)
            print(
                f"  verify: {links:,} reading links in {seconds:.2f} s ({links / seconds:,.0f}/s), "
                f"peak RSS of the verifying process {peak_mib:.0f} MiB"
            )
    finally:
        databases.close()


if __name__ == "__main__":
    main()

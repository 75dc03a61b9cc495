"""Recomputation reads and compares the results it replaces before it takes the write lock
(store/result_versions.py, ``_prepare``), and uses what it read only while the replaced headers are
still those read: after two recomputes, the stores are the same row for row — every result table, the
headers and the archive with its packed element rows, so every version reads the same — whether the
comparison was made ahead, under the lock (as before), ahead but stale (another version written in
between: read again), or not in place at all (delete and insert); on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from services import postgres_database, sqlite_url  # noqa: F401
from sqlalchemy import create_engine, make_url, text
from test_recompute import RESULT_TABLES, SPAN, fossil_generator, stored, table_rows, world  # noqa: F401

from carbonflow.center.metering.recompute import recompute
from carbonflow.center.store import Store, add_correction, result_versions
from carbonflow.center.store.result_versions import _Prepared

VARIANTS = ("ahead", "under the lock", "stale", "delete and insert")


def _urls(request, tmp_path, backend: str) -> list[str]:
    if backend == "sqlite":
        return [f"sqlite:///{tmp_path / f'{k}.db'}" for k in range(len(VARIANTS))]
    database = request.getfixturevalue("postgres_database")
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in VARIANTS]
    with engine.connect() as connection:
        for schema in schemas:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.connect() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    request.addfinalizer(drop)
    base = make_url(database)
    return [
        base.update_query_dict({"options": f"-csearch_path={s}"}).render_as_string(hide_password=False)
        for s in schemas
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_recomputes_store_the_same_whether_compared_ahead_under_the_lock_or_stale(
    request,
    tmp_path,
    world,  # noqa: F811
    monkeypatch,
    backend,
):
    generator, _ = fossil_generator(world)
    original_prepare, original_read = result_versions._prepare, result_versions._read_replaced
    outcome, reads = [], []
    for variant, url in zip(VARIANTS, _urls(request, tmp_path, backend)):
        monkeypatch.undo()
        previous: dict[tuple, _Prepared] = {}  # the stale variant: what the earlier version's chunk read
        counted = [0]

        def read(*args, counted=counted):
            counted[0] += 1
            return original_read(*args)

        def prepare(target, records, variant=variant, previous=previous):
            fresh = original_prepare(target, records)
            if variant == "under the lock":
                return None
            key = tuple(r.ts for r in records)
            if variant == "stale":
                stale = previous.get(key, _Prepared({r.ts: ("stale",) for r in records}, {}, {}))
                previous[key] = fresh
                return stale
            return fresh

        monkeypatch.setattr(result_versions, "_read_replaced", read)
        monkeypatch.setattr(result_versions, "_prepare", prepare)
        if variant == "delete and insert":
            monkeypatch.setattr(result_versions, "changed_rows", lambda *args: None)
        target = Store.open(url)
        ends = stored(target, world)
        for k, factor in enumerate(("1100", "1250")):
            add_correction(
                target, "emission_factor", generator, ends[0] - SPAN, ends[-1], factor, reason=f"{k}"
            )
            assert recompute(target, url, ends[0] - SPAN, ends[-1], chunk_intervals=5).intervals == len(ends)
        outcome.append([table_rows(target, model, *order) for model, order in RESULT_TABLES])
        reads.append(counted[0])
        target.close()
    assert all(rows == outcome[0] for rows in outcome[1:])
    assert len(outcome[0][-1]) == 2 * len(outcome[0][0]) > 0  # two archived versions of every interval
    chunks = reads[0]
    assert chunks > 0 and reads == [chunks, 2 * chunks, 2 * chunks, chunks]

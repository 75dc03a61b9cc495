"""Batches stored in groups (``ingest_batches``, ``ingest.grouping.BatchGroups``) store exactly what the
same batches store one by one, and each keeps its own outcome.

A history with every case — replays (also inside one group), overlaps, other values offered for stored
readings, repeats inside a batch, a point in several batches, statuses, and refusals (unknown point,
a reading from the future, a reused ``batch_id``, an unknown collector) — is stored one batch at a time
in one database and in groups of every size in another: the answers (Acks, or the refusal's type and
one-line message) and every stored byte (readings with their chain columns, chain heads, batch rows,
conflicts, collectors, devices) must be equal.  On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError
from test_ingest_copy import (
    HISTORY,
    N_COLLECTORS,
    collector_batches,
    seed_collectors,
    send_in_order_and_reversed,
)
from test_store import T0, batch, seed

from carbonflow.center.ingest.grouping import BatchGroups
from carbonflow.center.store import Store, count_readings, ingest_batch
from carbonflow.center.store.errors import BatchConflictError, InvalidBatchError
from carbonflow.center.store.readings import canonical_digest, ingest_batches
from carbonflow.center.store.sealing import unseal
from carbonflow.center.store.verify import verify
from carbonflow.messages.c4 import Ack, Batch, DeviceStatus


def _history() -> list[Batch]:
    seqs = {bid: k + 1 for k, (bid, _rows) in reversed(list(enumerate(HISTORY)))}  # a replay keeps its seq
    batches = [batch(bid, rows, seq=seqs[bid]) for bid, rows in HISTORY]
    batches += [
        batch("bad-point-1", [("EM-U1/1", 30, "1"), ("NOPE/1", 30, "1")], seq=7),
        batch("batch-0006", [("EM-U1/1", m, "4") for m in range(8, 14)] + [("EM-U1/2", 5, "5")], seq=8),
        batch("batch-0002", [("EM-U1/1", 40, "1")], seq=9),  # a reused batch_id, other content
        batch("future-01", [("EM-U1/2", 60 * 24 * 400, "1")], seq=10),
        batch("batch-0006", [("EM-U1/1", m, "4") for m in range(8, 14)] + [("EM-U1/2", 5, "5")], seq=8),
        batch(
            "with-status-1",
            [("RTU-B1/1", m, str(m)) for m in range(5)],
            seq=11,
            statuses=[DeviceStatus(device="EM-U1", online=False, error="no answer", clock_offset_s=1.5)],
            config_version="v2",
        ),
        batch("stranger-1", [("EM-U1/1", 50, "1")], seq=12, collector_id="NOBODY"),
        batch("batch-0007", [("EM-U1/1", m, "5") for m in range(12, 16)], seq=13),
    ]
    return batches


def _offered(batches: list[Batch]) -> list[tuple[Batch, object, str]]:
    return [
        (b, T0 + timedelta(hours=k, seconds=0.25), canonical_digest(b.canonical()))
        for k, b in enumerate(batches)
    ]


def _answer(outcome: Ack | Exception) -> tuple:
    if isinstance(outcome, Exception):
        return (type(outcome).__name__, str(outcome))
    return ("ack", outcome.model_dump())


# every column as the driver gives it, compared by repr: a Decimal's own digits, hashes, times as stored
_TABLES = (
    "readings",
    "chain_heads",
    "batches",
    "reading_conflicts",
    "collectors",
    "devices",
    "clock_offsets",
)
_WALL_CLOCK = {"chain_heads": {"updated_at"}}  # when the head moved: the time of the call
# sealed with a fresh IV each time the seeding writes them (when a secrets key is configured, as under
# CI): compared as the clear secret
_SEALED = {"collectors": {"secret", "previous_secret"}}


def _comparable(table: str, column: str, value: object) -> str:
    if column in _SEALED.get(table, ()) and isinstance(value, str):
        return repr(unseal(value, f"{table}.{column}"))
    return repr(value)


def dump(target: Store) -> dict[str, list[tuple]]:
    tables = {}
    with target.read() as connection:
        for table in _TABLES:
            names = list(connection.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys())
            columns = [c for c in names if c not in _WALL_CLOCK.get(table, ())]
            rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            tables[table] = sorted(
                tuple(_comparable(table, c, value) for c, value in zip(columns, row, strict=True))
                for row in rows
            )
    return tables


@pytest.fixture(params=["sqlite", "postgresql"])
def twin_urls(request, tmp_path) -> Iterator[tuple[str, str]]:
    """Two empty databases of the same backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
        return
    database = request.getfixturevalue("postgres_database")
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with engine.connect() as connection:
        for schema in schemas:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield tuple(  # type: ignore[misc]
            make_url(database).update_query_dict({"options": f"-csearch_path={s}"}).render_as_string(False)
            for s in schemas
        )
    finally:
        with engine.connect() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _one_by_one(target: Store, offered) -> list[tuple]:
    answers = []
    for one, received_at, _digest in offered:
        try:
            answers.append(_answer(ingest_batch(target, one, received_at=received_at)))
        except Exception as error:
            answers.append(_answer(error))
    return answers


@pytest.mark.parametrize("size", [2, 3, 5, 14])
def test_groups_store_exactly_what_one_by_one_stores(twin_urls, size):
    offered = _offered(_history())
    alone, grouped = (Store.open(url) for url in twin_urls)
    try:
        for target in (alone, grouped):
            seed(target)
        expected = _one_by_one(alone, offered)
        answers = []
        for start in range(0, len(offered), size):
            answers += [_answer(o) for o in ingest_batches(grouped, offered[start : start + size])]
        assert answers == expected
        assert dump(grouped) == dump(alone)
        assert verify(grouped).findings == []
    finally:
        alone.close()
        grouped.close()
    refused = {a[0] for a in expected if a[0] != "ack"}
    assert refused == {"InvalidBatchError", "BatchConflictError", "UnknownCollectorError"}
    assert any(a[0] == "ack" and a[1]["duplicate_batch"] for a in expected)
    assert any(a[0] == "ack" and a[1]["conflicts"] for a in expected)


def test_a_refused_batch_inside_a_group_is_refused_alone(store):  # noqa: F811
    seed(store)
    good = batch("good-0001", [("EM-U1/1", m, "1") for m in range(4)])
    bad = batch("bad-0001", [("EM-U1/1", 10, "1"), ("NOPE/1", 10, "1")], seq=2)
    other = batch("good-0002", [("EM-U1/1", m, "2") for m in range(2, 6)], seq=3)
    again = batch("good-0001", [("EM-U1/1", m, "3") for m in range(4)])  # reused id, other content
    replay = batch("good-0001", [("EM-U1/1", m, "1") for m in range(4)])  # the first, replayed in the group
    outcomes = ingest_batches(store, _offered([good, bad, other, again, replay]))
    assert isinstance(outcomes[0], Ack) and (outcomes[0].accepted, outcomes[0].duplicates) == (4, 0)
    assert isinstance(outcomes[1], InvalidBatchError)
    assert str(outcomes[1]) == "reading 1: unknown point 'NOPE/1' (batch refused, nothing stored)"
    assert isinstance(outcomes[2], Ack) and (outcomes[2].accepted, outcomes[2].duplicates) == (2, 2)
    assert outcomes[2].conflicts == 2
    assert isinstance(outcomes[3], BatchConflictError)
    assert isinstance(outcomes[4], Ack) and outcomes[4].duplicate_batch and outcomes[4].duplicates == 4
    assert count_readings(store) == 6
    with store.read() as connection:
        ids = connection.execute(text("SELECT batch_id FROM batches ORDER BY batch_id")).scalars().all()
    assert ids == ["good-0001", "good-0002"]  # the refused batch left no row
    assert verify(store).findings == []


def test_a_database_error_in_a_group_stores_the_others_one_by_one(postgres_url):  # noqa: F811
    """NUMERIC cannot hold 1E+200000: the group's COPY fails, the batches are stored alone, and only
    that batch gets the database error."""
    opened = Store.open(postgres_url)
    try:
        seed(opened)
        batches = [
            batch("batch-a01", [("EM-U1/1", 0, "1")]),
            batch("batch-b01", [("EM-U1/1", 1, "1E+200000")], seq=2),
            batch("batch-c01", [("EM-U1/1", 2, "3")], seq=3),
        ]
        outcomes = ingest_batches(opened, _offered(batches))
        assert isinstance(outcomes[0], Ack) and outcomes[0].accepted == 1
        assert isinstance(outcomes[1], DataError)
        assert isinstance(outcomes[2], Ack) and outcomes[2].accepted == 1
        assert count_readings(opened) == 2
        assert verify(opened).findings == []
    finally:
        opened.close()


def test_one_caller_is_stored_at_once_and_gets_its_own_refusal(store):  # noqa: F811
    seed(store)
    groups = BatchGroups(store)
    ack = groups.store_batch(batch("alone-001", [("EM-U1/1", 0, "1")]))
    assert (ack.accepted, ack.duplicates) == (1, 0)
    with pytest.raises(InvalidBatchError, match="unknown point 'NOPE/1'"):
        groups.store_batch(batch("bad-0001", [("NOPE/1", 0, "1")], seq=2))
    assert (groups.groups, groups.batches) == (2, 2)


def test_concurrent_collectors_through_groups_store_every_reading_once(store):  # noqa: F811
    """Four collectors, each with a sender of its batches in order and one in reverse (a replay while
    the first delivery is in flight): every reading stored once, chains whole, groups formed."""
    seed_collectors(store)
    groups = BatchGroups(store, max_batches=4)
    work = {k: collector_batches(k) for k in range(N_COLLECTORS)}
    acks = send_in_order_and_reversed(work, groups.store_batch)
    n_batches = sum(len(b) for b in work.values())
    distinct = N_COLLECTORS * 300 * (len(work[0]) + 1)
    assert len(acks) == 2 * n_batches
    assert sum(a.accepted for a in acks) == distinct == count_readings(store)
    assert sum(1 for a in acks if a.duplicate_batch) == n_batches
    assert sum(a.conflicts for a in acks) == 0
    assert groups.batches == 2 * n_batches and groups.groups < groups.batches  # some were grouped
    assert verify(store).findings == []

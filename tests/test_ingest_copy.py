"""Readings stored through PostgreSQL COPY (``store/staging.py``) keep the ingest semantics exactly.

The same histories run on SQLite (multi-row INSERT pages) and PostgreSQL (COPY into a staging table,
one INSERT … SELECT) must give the same acknowledgements, the same stored rows and the same recorded
conflicts.  On PostgreSQL the COPY path is also checked against the multi-row INSERT it replaces (the
stored NUMERIC text must be identical), and collectors ingesting at once must store every reading
exactly once.  PostgreSQL tests skip without the service (fail under ``CI=true``): see ``services``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError
from test_store import T0, batch, seed

from carbonflow.center.store import (
    Store,
    count_readings,
    ingest_batch,
    list_conflicts,
    readings_for_point,
    register_devices,
    upsert_collector,
)
from carbonflow.center.store.errors import InvalidBatchError
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Reading as ReadingRow
from carbonflow.center.store.staging import STAGING_TABLE
from carbonflow.messages.c4 import Ack, Batch, Reading

HOUR = timedelta(hours=1)

# every way a meter value can be written that the C4 schema accepts, and the edge cases of NUMERIC
EXACT_VALUES = [
    "1206.42",
    "1206.420",  # trailing zeros are the meter's scaler: kept
    "0.000",
    "-0",
    "-0.0010",
    "1E+3",
    "1.5e-7",
    "123456789012345678901234567890.123456789",
    "0.000000000000000000000000000001",
    "+7",
    None,
]

# one history of batches with every kind of repetition: a whole replay, an overlapping resend with the
# same values, an offer of other values for stored readings, and repeats inside one batch
HISTORY = [
    ("batch-0001", [("EM-U1/1", m, "1.00") for m in range(6)]),
    ("batch-0001", [("EM-U1/1", m, "1.00") for m in range(6)]),  # the same batch again (same seq)
    ("batch-0002", [("EM-U1/1", m, "1.0") for m in range(3, 9)]),  # overlap, same values
    ("batch-0003", [("EM-U1/1", 1, "7.5"), ("EM-U1/1", 2, "1"), ("EM-U1/1", 9, "2"), ("EM-U1/1", 9, "9")]),
    ("batch-0004", [("EM-U1/2", 0, "5"), ("EM-U1/2", 0, "5"), ("EM-U1/2", 0, "6"), ("RTU-B1/1", 0, None)]),
    ("batch-0005", [("RTU-B1/1", 0, "3"), ("EM-U1/2", 0, None), ("EM-U1/1", 0, "1.000")]),
]


def play(target: Store) -> tuple[list[Ack], list[tuple], list[tuple]]:
    """Run HISTORY; return the acks, the stored readings and the recorded conflicts (comparable)."""
    seqs = {bid: k + 1 for k, (bid, _rows) in reversed(list(enumerate(HISTORY)))}  # a replay keeps its seq
    acks = [ingest_batch(target, batch(bid, rows, seq=seqs[bid])) for bid, rows in HISTORY]
    with target.read() as connection:
        stored = connection.execute(
            select(ReadingRow.point_id, ReadingRow.ts, ReadingRow.value, ReadingRow.batch_id).order_by(
                ReadingRow.point_id, ReadingRow.ts
            )
        ).all()
    conflicts = sorted(
        (
            (c.point_id, c.ts, c.stored_value, c.offered_value, c.batch_id, c.collector_id)
            for c in list_conflicts(target)
        ),
        key=lambda c: (c[0], c[1], c[4]),  # values may be None: not orderable
    )
    return acks, [tuple(row) for row in stored], conflicts


def test_replays_and_overlapping_batches_store_and_count_each_reading_once(store):  # noqa: F811
    seed(store)
    acks, stored, conflicts = play(store)
    counts = [(a.accepted, a.duplicates, a.duplicate_batch, a.conflicts) for a in acks]
    assert counts == [
        (6, 0, False, 0),
        (0, 6, True, 0),
        (3, 3, False, 0),  # "1.0" equals the stored "1.00": a duplicate, not a conflict
        (1, 3, False, 2),  # minute 1 (7.5 ≠ 1.00) and minute 9 (9 ≠ the 2 stored first in this batch)
        (2, 2, False, 1),  # EM-U1/2 "6" after "5" in the same batch; the second "5" is a plain duplicate
        (0, 3, False, 2),  # RTU-B1/1 "3" after None, EM-U1/2 None after "5"; "1.000" equals "1.00"
    ]
    assert len(stored) == count_readings(store) == 12
    with store.read() as connection:
        assert connection.execute(select(func.count()).select_from(BatchRow)).scalar_one() == 5
    # the first write of a (point, ts) stays, even inside one batch
    assert ("EM-U1/1", T0 + timedelta(minutes=9), Decimal("2"), "batch-0003") in stored
    assert ("EM-U1/2", T0, Decimal("5"), "batch-0004") in stored
    assert [c[2:5] for c in conflicts] == [
        (Decimal("1.00"), Decimal("7.5"), "batch-0003"),
        (Decimal("2"), Decimal("9"), "batch-0003"),
        (Decimal("5"), Decimal("6"), "batch-0004"),
        (Decimal("5"), None, "batch-0005"),
        (None, Decimal("3"), "batch-0005"),
    ]


def test_conflicts_and_counts_are_identical_on_sqlite_and_postgresql(sqlite_url, postgres_url):  # noqa: F811
    outcomes = []
    for url in (sqlite_url, postgres_url):
        opened = Store.open(url)
        try:
            seed(opened)
            outcomes.append(play(opened))
        finally:
            opened.close()
    (sqlite_acks, sqlite_rows, sqlite_conflicts), (pg_acks, pg_rows, pg_conflicts) = outcomes
    assert pg_acks == sqlite_acks
    assert pg_rows == sqlite_rows
    assert pg_conflicts == sqlite_conflicts


def test_decimal_values_round_trip_exactly(store):  # noqa: F811
    seed(store)
    ack = ingest_batch(store, batch("batch-exact", [("EM-U1/1", m, v) for m, v in enumerate(EXACT_VALUES)]))
    assert ack.accepted == len(EXACT_VALUES)
    stored = readings_for_point(store, "EM-U1/1", T0, T0 + HOUR)
    assert [r.value for r in stored] == [None if v is None else Decimal(v) for v in EXACT_VALUES]
    assert all(isinstance(r.value, Decimal) for r in stored if r.value is not None)
    assert str(stored[1].value) == "1206.420" and str(stored[0].value) == "1206.42"


def test_copy_stores_the_same_numeric_text_as_the_multi_row_insert(postgres_url):  # noqa: F811
    """The VALUES statement the COPY path replaced, run on another point: PostgreSQL must hold the
    very same NUMERIC (compared as text, so even the scale counts) and the same timestamps."""
    opened = Store.open(postgres_url)
    try:
        seed(opened)
        ingest_batch(opened, batch("batch-copy", [("EM-U1/1", m, v) for m, v in enumerate(EXACT_VALUES)]))
        rows = [
            {
                "point_id": "EM-U1/2",
                "ts": T0 + timedelta(minutes=m),
                "value": v,
                "quality": "good",
                "received_at": T0,
                "batch_id": "by-values",
            }
            for m, v in enumerate(EXACT_VALUES)
        ]
        with opened.write() as connection:
            connection.execute(postgresql.insert(ReadingRow.__table__).on_conflict_do_nothing(), rows)
        with opened.read() as connection:
            as_text = connection.execute(
                text("SELECT point_id, ts, value::text FROM readings ORDER BY point_id, ts")
            ).all()
    finally:
        opened.close()
    by_copy = [(ts, value) for point, ts, value in as_text if point == "EM-U1/1"]
    by_values = [(ts, value) for point, ts, value in as_text if point == "EM-U1/2"]
    assert len(by_copy) == len(EXACT_VALUES) and by_copy == by_values


def test_batches_in_one_caller_transaction_do_not_see_each_others_staged_rows(store):  # noqa: F811
    """The staging table is per connection and emptied by each insert: a second batch in the same
    transaction must not re-offer the first one's rows (they would count as its duplicates)."""
    seed(store)
    with store.write() as connection:
        first = ingest_batch(connection, batch("batch-0001", [("EM-U1/1", m, "1") for m in range(4)]))
        second = ingest_batch(connection, batch("batch-0002", [("EM-U1/2", m, "2") for m in range(3)], seq=2))
    assert (first.accepted, first.duplicates) == (4, 0)
    assert (second.accepted, second.duplicates, second.conflicts) == (3, 0, 0)
    assert count_readings(store) == 7


def test_a_refused_batch_leaves_nothing_staged_or_stored(store):  # noqa: F811
    seed(store)
    with pytest.raises(InvalidBatchError, match="unknown point"):
        ingest_batch(store, batch("batch-0001", [("EM-U1/1", 0, "1"), ("NOPE/1", 0, "1")]))
    ack = ingest_batch(store, batch("batch-0002", [("EM-U1/1", m, "1") for m in range(3)], seq=2))
    assert (ack.accepted, ack.duplicates) == (3, 0)
    assert count_readings(store) == 3
    if store.dialect == "postgresql":
        with store.write() as connection:  # the pool's one connection here: the one that staged
            staging = connection.execute(text(f"SELECT to_regclass('pg_temp.{STAGING_TABLE}')")).scalar()
            assert staging is not None
            assert connection.execute(text(f"SELECT count(*) FROM {STAGING_TABLE}")).scalar_one() == 0


def test_a_database_error_in_copy_is_raised_as_sqlalchemy_raises_it(postgres_url):  # noqa: F811
    """A value NUMERIC cannot hold fails inside COPY: the error must be SQLAlchemy's DataError (as the
    VALUES path raised it), so the transports classify it as before, and the batch leaves nothing."""
    opened = Store.open(postgres_url)
    try:
        seed(opened)
        with pytest.raises(DataError, match="numeric"):
            ingest_batch(opened, batch("batch-0001", [("EM-U1/1", 0, "1"), ("EM-U1/1", 1, "1E+200000")]))
        assert count_readings(opened) == 0
        ack = ingest_batch(opened, batch("batch-0001", [("EM-U1/1", 0, "1")]))
        assert (ack.accepted, ack.duplicate_batch) == (1, False)  # the refused batch left no batch row
    finally:
        opened.close()


# --- concurrent collectors on PostgreSQL ----------------------------------------------------------------

N_COLLECTORS = 4
N_POINTS = 300
N_BATCHES = 6  # per collector; every batch overlaps the previous one by half its readings


def seed_collectors(target: Store) -> None:
    for k in range(N_COLLECTORS):
        upsert_collector(target, f"C{k}", f"secret-{k}")
        points = [
            {"id": f"M{k}/{p}", "element_kind": "load", "element_id": f"U{p}", "quantity": "p_mw"}
            for p in range(N_POINTS)
        ]
        register_devices(target, [{"id": f"M{k}", "protocol": "dlt645", "points": points}], f"C{k}")


def collector_batches(k: int) -> list[Batch]:
    """Batches of collector ``k``: batch ``b`` covers minutes ``b .. b+1`` of every point (so each
    minute but the first and last is sent twice, in different batches), in the reverse point order
    for odd ``b`` — two overlapping inserts taking row locks in opposite orders is the deadlock case."""
    batches = []
    for b in range(N_BATCHES):
        points = range(N_POINTS) if b % 2 == 0 else reversed(range(N_POINTS))
        readings = [
            Reading(point=f"M{k}/{p}", ts=T0 + timedelta(minutes=b + d), value=f"{p}.{b + d:03d}")
            for p in points
            for d in (0, 1)
        ]
        batches.append(
            Batch(
                collector_id=f"C{k}",
                batch_id=f"C{k}-{b:04d}-{uuid.uuid4().hex[:8]}",
                seq=b + 1,
                created_at=T0,
                readings=readings,
            )
        )
    return batches


def send_in_order_and_reversed(work: dict[int, list[Batch]], store_one: Callable[[Batch], Ack]) -> list[Ack]:
    """Two senders per collector at once: its batches in order, and the same batches in reverse order
    (a collector replaying its outbox while the first delivery is still in flight); every Ack.  A
    sender's failure fails the caller."""
    acks: list[Ack] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * len(work))

    def send(batches: list[Batch]) -> None:
        try:
            start.wait()
            for one in batches:
                ack = store_one(one)
                with lock:
                    acks.append(ack)
        except BaseException as error:  # reported below: a thread's failure must fail the test
            errors.append(error)

    threads = [threading.Thread(target=send, args=(work[k],)) for k in work]
    threads += [threading.Thread(target=send, args=(work[k][::-1],)) for k in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return acks


def test_concurrent_collectors_and_replays_store_every_reading_exactly_once(postgres_url):  # noqa: F811
    opened = Store.open(postgres_url)
    try:
        seed_collectors(opened)
        work = {k: collector_batches(k) for k in range(N_COLLECTORS)}
        acks = send_in_order_and_reversed(
            work, lambda one: ingest_batch(opened, one, received_at=datetime.now(UTC))
        )
        distinct = N_COLLECTORS * N_POINTS * (N_BATCHES + 1)
        sent = sum(len(b.readings) for batches in work.values() for b in batches)
        assert len(acks) == 2 * N_COLLECTORS * N_BATCHES
        assert sum(a.accepted for a in acks) == distinct == count_readings(opened)
        assert sum(a.accepted for a in acks if a.duplicate_batch) == 0
        assert sum(1 for a in acks if a.duplicate_batch) == N_COLLECTORS * N_BATCHES  # each batch once
        assert sum(a.duplicates for a in acks if not a.duplicate_batch) == sent - distinct
        assert sum(a.conflicts for a in acks) == 0 and list_conflicts(opened) == []
        with opened.read() as connection:
            rows = connection.execute(select(BatchRow.accepted, BatchRow.duplicates)).all()
        assert len(rows) == N_COLLECTORS * N_BATCHES and sum(r.accepted for r in rows) == distinct
    finally:
        opened.close()

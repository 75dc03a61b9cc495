"""Chain heads of awkward keys locked and moved in one batch (store/chain.py): on PostgreSQL the keys go
to the server as one JSON parameter (``access.driver_rows``) and the moved heads as JSON rows, so a key's
quotes, backslashes, tabs or non-ASCII letters must come back as the very same string."""

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from carbonflow.center.store import Store
from carbonflow.center.store.access import driver_rows
from carbonflow.center.store.chain import GENESIS, READING, ChainHead, lock_heads, move_heads

KEYS = ["dev-1/p", 'dev"1/q', "dev\\1/r", "dev\t1/s", "dév-ü/ t", "dev-1/{[,]}", "dev-1/'x'", "d" * 200]


def test_awkward_keys_are_locked_and_moved_exactly(store):  # noqa: F811
    with store.write() as connection:
        heads = lock_heads(connection, READING, [*KEYS, "other"])
        assert heads == dict.fromkeys([*KEYS, "other"], (0, GENESIS))
        moved = {key: (index + 1, f"{index:02x}" * 32) for index, key in enumerate(KEYS)}
        move_heads(connection, READING, moved)
    with store.write() as connection:
        assert lock_heads(connection, READING, KEYS) == moved
        stored = connection.execute(select(ChainHead.key, ChainHead.seq, ChainHead.hash)).all()
    assert {key: (seq, digest) for key, seq, digest in stored} == {**moved, "other": (0, GENESIS)}


def test_driver_rows_run_in_the_callers_transaction_and_fail_as_sqlalchemy_does(postgres_url):  # noqa: F811
    """``access.driver_rows`` (the ingest's look-ups as plain tuples) sees what its transaction wrote
    before committing, and a bad statement is a SQLAlchemy ``DBAPIError`` like any other statement's."""
    opened = Store.open(postgres_url)
    try:
        with opened.write() as connection:
            lock_heads(connection, READING, ["p/1", "p/2"])
            rows = driver_rows(
                connection, "SELECT key, seq FROM chain_heads WHERE kind = %s ORDER BY key", (READING,)
            )
            assert rows == [("p/1", 0), ("p/2", 0)]
            with pytest.raises(DBAPIError, match="no_such_table"):
                driver_rows(connection, "SELECT * FROM no_such_table WHERE x = %s", (1,))
        with opened.read() as connection:
            assert connection.execute(select(ChainHead.key)).all() == []  # the failure rolled it all back
    finally:
        opened.close()


def test_chain_heads_are_updated_in_place_on_postgresql(postgres_url):  # noqa: F811
    """Migration 0017: no index on ``updated_at`` and half-free pages, so a moved head is a HOT update."""
    opened = Store.open(postgres_url)
    try:
        with opened.read() as connection:
            indexes = (
                connection.execute(
                    text(
                        "SELECT indexname FROM pg_indexes "
                        "WHERE tablename = 'chain_heads' AND schemaname = current_schema()"
                    )
                )
                .scalars()
                .all()
            )
            options = connection.execute(
                text("SELECT reloptions FROM pg_class WHERE oid = 'chain_heads'::regclass")
            ).scalar_one()
        assert sorted(indexes) == ["chain_heads_pkey"]
        assert options == ["fillfactor=50"]
    finally:
        opened.close()

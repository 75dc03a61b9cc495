"""Chain heads of awkward keys locked and moved in one batch (store/chain.py): on PostgreSQL the keys go
to the server as one JSON parameter (``access.driver_rows``) and the moved heads as JSON rows, so a key's
quotes, backslashes, tabs or non-ASCII letters must come back as the very same string."""

from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import select

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

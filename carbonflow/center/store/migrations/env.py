"""Alembic environment: runs on the connection ``carbonflow.center.store.upgrade`` hands over (or on
``sqlalchemy.url`` when invoked from the ``alembic`` command line with ``-x url=...``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from carbonflow.center.store.engine import make_engine
from carbonflow.center.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as own_connection:
        _run(own_connection)
    engine.dispose()

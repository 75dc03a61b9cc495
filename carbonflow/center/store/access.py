"""One way for repository functions to get a connection from a Store, a Session or a Connection.

Given a ``Store`` the function runs in its own transaction and commits before returning (what ingest
needs: acknowledge only after commit).  Given a ``Session`` or ``Connection`` it runs inside the
caller's transaction and the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from carbonflow.center.store.engine import Store

Target = "Store | Session | Connection"


@contextmanager
def connection_of(target: Store | Session | Connection, *, write: bool) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
    elif isinstance(target, Session):
        yield target.connection()
    elif write:
        with target.write() as connection:
            yield connection
    else:
        with target.read() as connection:
            yield connection


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


STREAM_ROWS = 10_000  # rows fetched per round trip when a whole table is read (verify, retention)


def stream(connection: Connection, query) -> Iterator[Any]:
    """The rows of ``query`` fetched ``STREAM_ROWS`` at a time (a server-side cursor on PostgreSQL).
    Set per statement: ``Connection.execution_options`` would switch the whole connection to streaming."""
    yield from connection.execute(query.execution_options(yield_per=STREAM_ROWS))


def driver_rows(connection: Connection, statement: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` (psycopg placeholders) run on the driver connection under
    ``connection`` — same transaction — as plain tuples.  For the ingest's look-ups of ~2,000 rows per
    batch, where SQLAlchemy's statement and row layers cost ~5 ms of CPU a query against ~1 ms here.

    Such a look-up takes its ~2,000 keys as one JSON text parameter (``json.dumps`` in C; psycopg dumps a
    list element by element, ~1 ms a list) unpacked by the server in ``key IN (SELECT
    jsonb_array_elements_text(%s::jsonb))`` — a hash semi-join.  Not ``key = ANY(array(SELECT …))``: an
    array from a sub-select is tested element by element against every row scanned — 2,000 keys against
    a 2,000-row table was 76 ms of server time per batch, the semi-join 1.4 ms (issue 17 §2).
    Errors are raised as SQLAlchemy raises its own (an OperationalError stays one: 503 on HTTP)."""
    driver = connection.connection.driver_connection
    driver_error = connection.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor:
            cursor.execute(statement, parameters)
            return cursor.fetchall()
    except driver_error as error:
        raise DBAPIError.instance(statement, parameters, error, driver_error) from error

"""One way for repository functions to get a connection from a Store, a Session or a Connection.

Given a ``Store`` the function runs in its own transaction and commits before returning (what ingest
needs: acknowledge only after commit).  Given a ``Session`` or ``Connection`` it runs inside the
caller's transaction and the caller commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
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


def json_members(name: str, values: list[str]) -> Any:
    """PostgreSQL: ``values`` as a subquery for ``column.in_(...)``, sent as one JSON text parameter.
    psycopg dumps a list of 2,000 strings element by element (~1 ms a list, several lists per batch,
    issue 17 §2); ``json.dumps`` does it in C, and the server's JSON parser gives back the very strings.

    ``IN (SELECT …)``, not ``= ANY(array(SELECT …))``: the planner turns the subquery into a hash
    semi-join, while an array from a sub-select is tested element by element for every row it scans —
    2,000 keys against a 2,000-row table was 76 ms of server time per batch, the semi-join 1.4 ms."""
    document = bindparam(name, json.dumps(values, ensure_ascii=False), type_=String)
    return select(func.jsonb_array_elements_text(cast(document, JSONB)))

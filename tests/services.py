"""Real services for the center's tests: PostgreSQL and Mosquitto on localhost, never mocks.

Import the fixtures into a test module (``from services import store, ...  # noqa: F401``).
Without the service a test is skipped with the reason; under CI (``CI=true``) a missing service is a
failure, because CI promises the services.  Override the locations with ``CARBONFLOW_TEST_PG``
(``postgresql+psycopg://user@host:port/db`` of a database we may create databases from) and
``CARBONFLOW_TEST_MQTT`` (``mqtt://host:port``).

PostgreSQL: one fresh database per test session (dropped after); each test gets its own schema in it
(``search_path``), migrated from empty, dropped after the test.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carbonflow.center.store import Store

PG_ADMIN_URL = os.environ.get("CARBONFLOW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MQTT_URL = os.environ.get("CARBONFLOW_TEST_MQTT", "mqtt://127.0.0.1:1883")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the service is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session; dropped at the end."""
    name = f"cf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # any failure to reach the server means "no service"
        admin.dispose()
        _unavailable(f"PostgreSQL not available at {PG_ADMIN_URL}: {str(error).splitlines()[0]}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the session database."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_database).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'center.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """The same test on both backends: a tmp SQLite file, and a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    opened = Store.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    parts = urlsplit(MQTT_URL)
    try:
        socket.create_connection((parts.hostname, parts.port or 1883), timeout=2).close()
    except OSError as error:
        _unavailable(f"MQTT broker not available at {MQTT_URL}: {error}")
    return MQTT_URL

"""History says which buckets hold intervals metered from incomplete data (estimated inputs), so charts
can draw them differently; on SQLite and PostgreSQL (the flag lives in the interval's JSON)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from services import postgres_database  # noqa: F401
from sqlalchemy import update
from test_reports import _pg_schema_url
from webdata import PASSWORD, START, USER, populate

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import incomplete_by_bucket
from carbonflow.center.store.schema import Interval


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_buckets_count_their_incomplete_intervals_and_the_api_passes_the_count_on(request, tmp_path, dialect):
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'center.db'}"
    else:
        url = _pg_schema_url(request.getfixturevalue("postgres_database"))
    store, last = populate(url, hours=2)
    try:
        # two intervals of the first hour (15-min intervals, ts = end) metered from incomplete data
        with store.write() as connection:
            for minutes in (15, 45):
                ts = START + timedelta(minutes=minutes)
                connection.execute(
                    update(Interval)
                    .where(Interval.ts == ts)
                    .values(estimation={"complete": False, "estimates": ["x"]})
                )
        end = last + timedelta(seconds=1)
        hourly = incomplete_by_bucket(store, "hour", START, end, utc_offset_minutes=480)
        assert sorted(hourly.values()) == [2]  # both in the first local hour (intervals end at :15 and :45)
        quarters = incomplete_by_bucket(store, "15min", START, end)
        assert sorted(quarters) == [START, START + timedelta(minutes=30)]  # buckets by interval start
        app = create_app(CenterSettings(database_url=url), store=store)
        with TestClient(app) as client:
            token = client.post("/api/v1/login", json={"name": USER, "password": PASSWORD}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            total = client.get("/api/v1/history?kind=total&bucket=hour", headers=headers).json()["items"]
            assert [row["incomplete_intervals"] for row in total] == [2, 0]
            buses = client.get("/api/v1/history?kind=bus&element=S003&bucket=hour", headers=headers).json()
            assert [row["incomplete_intervals"] for row in buses["items"]] == [2, 0]
    finally:
        store.close()

"""Device clock offsets over time (issue 18 §2), on SQLite and PostgreSQL: every status with a measured
offset (batch or status report) adds a sample at its time, thinned to one per 15 minutes of steady drift
but kept at once when the clock steps; the samples go with retention; the API gives a device's series."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from test_store import T0, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import create_user, ingest_batch, purge_older_than, record_status
from carbonflow.center.store.clock_offsets import SAMPLE_SPACING_S, offset_series
from carbonflow.messages.c4 import Batch, DeviceStatus

MINUTE = timedelta(minutes=1)


def _status(device: str, at: datetime, offset: float) -> DeviceStatus:
    return DeviceStatus(device=device, online=True, last_seen=at, clock_offset_s=offset)


def _series(store, device="EM-U1"):  # noqa: F811
    return [
        (s["ts"], s["offset_s"])
        for s in offset_series(store, device, T0 - MINUTE, T0 + 10 * 24 * 60 * MINUTE)
    ]


def test_offsets_are_kept_with_their_time_thinned_but_a_step_shows_at_once(store):  # noqa: F811
    seed(store)
    spacing = timedelta(seconds=SAMPLE_SPACING_S)
    record_status(store, "C1", [_status("EM-U1", T0, 0.10), _status("RTU-B1", T0, -2.0)], received_at=T0)
    record_status(
        store, "C1", [_status("EM-U1", T0 + MINUTE, 0.11)], received_at=T0 + MINUTE
    )  # drift: thinned
    record_status(
        store, "C1", [_status("EM-U1", T0 + 2 * MINUTE, 3.5)], received_at=T0 + 2 * MINUTE
    )  # a step
    batch = Batch(  # an offset in a batch counts the same, at the status's time
        collector_id="C1", batch_id="batch-offsets-1", seq=1, created_at=T0 + spacing,
        statuses=[_status("EM-U1", T0 + 2 * MINUTE + spacing, 3.6)],
    )  # fmt: skip
    ingest_batch(store, batch, received_at=T0 + spacing)
    record_status(
        store, "C1", [_status("EM-U1", T0 + 2 * MINUTE, 9.9)], received_at=T0
    )  # replayed: not older
    assert _series(store) == [(T0, 0.10), (T0 + 2 * MINUTE, 3.5), (T0 + 2 * MINUTE + spacing, 3.6)]
    assert _series(store, "RTU-B1") == [(T0, -2.0)]

    purge_older_than(store, days=1, now=T0 + 3 * MINUTE + timedelta(days=1))  # cutoff after the first two
    assert _series(store) == [(T0 + 2 * MINUTE + spacing, 3.6)]
    assert _series(store, "RTU-B1") == []


def test_the_api_gives_a_devices_offsets_with_the_worst(database_url):  # noqa: F811
    from carbonflow.center.store import Store

    opened = Store.open(database_url)
    seed(opened)
    create_user(opened, "op", "op-password-1", "operator")
    for k, offset in enumerate((0.2, -4.0, 1.5)):
        at = T0 + k * timedelta(hours=1)
        record_status(opened, "C1", [_status("EM-U1", at, offset)], received_at=at)
    app = create_app(CenterSettings(database_url=database_url, maintenance_period_s=0), store=opened)
    try:
        with TestClient(app) as client:
            assert client.get("/api/v1/devices/EM-U1/clock-offsets").status_code == 401
            token = client.post("/api/v1/login", json={"name": "op", "password": "op-password-1"}).json()[
                "token"
            ]
            headers = {"Authorization": f"Bearer {token}"}
            body = client.get("/api/v1/devices/EM-U1/clock-offsets", headers=headers).json()
            assert [i["offset_s"] for i in body["items"]] == [0.2, -4.0, 1.5]
            assert body["items"][0]["ts"] == "2025-03-01T00:00:00Z" and body["worst_offset_s"] == -4.0
            ranged = client.get(
                "/api/v1/devices/EM-U1/clock-offsets",
                params={"start": "2025-03-01T00:30:00Z", "end": "2025-03-01T01:30:00Z"},
                headers=headers,
            ).json()
            assert [i["offset_s"] for i in ranged["items"]] == [-4.0]
            unknown = client.get("/api/v1/devices/NOPE/clock-offsets", headers=headers)
            assert unknown.status_code == 404 and "NOPE" in unknown.json()["error"]
            naive = client.get(
                "/api/v1/devices/EM-U1/clock-offsets",
                params={"start": "2025-03-01T00:00:00"},
                headers=headers,
            )
            assert naive.status_code == 400
            empty = client.get("/api/v1/devices/RTU-B1/clock-offsets", headers=headers).json()
            assert empty["items"] == [] and empty["worst_offset_s"] is None
    finally:
        opened.close()

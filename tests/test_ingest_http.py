"""HTTP ingest (C4) and the collector command endpoints, on SQLite and PostgreSQL.

Most tests go through httpx's ASGI transport; ``test_ingest_over_a_real_socket`` runs uvicorn on a free
port of 127.0.0.1.  Every refused batch must come back as a JSON error naming the problem, with nothing
stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from test_store import T0, batch, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import count_readings, list_commands, queue_command
from carbonflow.messages.c4 import CommandResult
from carbonflow.messages.signing import request_headers

SECRET = b"secret-1"


def post(app, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
            return await client.post(path, content=body, headers=headers or {})

    return asyncio.run(go())


def get(app, path: str, headers: dict | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(go())


def signed_body(batch_id: str, readings, seq: int = 1) -> bytes:
    return batch(batch_id, readings, seq=seq).signed(SECRET).model_dump_json().encode()


@pytest.fixture
def app(store):  # noqa: F811
    seed(store)
    return create_app(CenterSettings(database_url="sqlite://"), store=store)


def test_a_batch_is_stored_acknowledged_and_a_resend_is_a_duplicate(app, store):  # noqa: F811
    unsigned = batch("batch-0001", [("EM-U1/1", m, "1206.42") for m in range(5)])
    body = unsigned.signed(SECRET).model_dump_json().encode()
    response = post(app, "/api/v1/ingest", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "batch_id": "batch-0001",
        "accepted": 5,
        "duplicates": 0,
        "duplicate_batch": False,
        "conflicts": 0,
    }
    assert post(app, "/api/v1/ingest", body).status_code == 401  # the same bytes again: a replay
    replay = post(app, "/api/v1/ingest", unsigned.signed(SECRET).model_dump_json().encode())  # a resend
    assert replay.status_code == 200
    assert replay.json() == {
        "batch_id": "batch-0001",
        "accepted": 0,
        "duplicates": 5,
        "duplicate_batch": True,
        "conflicts": 0,
    }
    assert count_readings(store) == 5


def _raw(readings: list[dict], **fields) -> dict:
    document = {
        "collector_id": "C1",
        "batch_id": "batch-bad-1",
        "seq": 1,
        "created_at": T0.isoformat(),
        "readings": readings,
    }
    document.update(fields)
    return document


def _signed_raw(document: dict) -> bytes:
    from carbonflow.messages.c4 import Batch

    return Batch.model_validate(document).signed(SECRET).model_dump_json().encode()


GOOD = {"point": "EM-U1/1", "ts": "2025-03-01T00:00:00Z", "value": "1"}
BAD_BATCHES = {
    "bad JSON": (b'{"collector_id": "C1", "readings": [', 400, "not valid JSON"),
    "bad signature": (
        batch("batch-bad-1", [("EM-U1/1", 0, "1")]).signed(b"wrong").model_dump_json().encode(),
        401,
        "batch 'batch-bad-1' refused: collector authentication failed",
    ),
    "unsigned": (
        batch("batch-bad-1", [("EM-U1/1", 0, "1")]).model_dump_json().encode(),
        401,
        "collector authentication failed",
    ),
    "unknown collector": (
        batch("batch-bad-1", [("EM-U1/1", 0, "1")], collector_id="C9")
        .signed(SECRET)
        .model_dump_json()
        .encode(),
        401,
        "batch 'batch-bad-1' refused: collector authentication failed",  # same as a bad signature
    ),
    "invalid decimal": (
        json.dumps(_raw([GOOD, {**GOOD, "ts": "2025-03-01T00:01:00Z", "value": "12,5"}])).encode(),
        422,
        "reading 1 (point 'EM-U1/1') value: value '12,5' is not a decimal number",
    ),
    "naive timestamp": (
        json.dumps(_raw([GOOD, GOOD, {**GOOD, "ts": "2025-03-01T00:02:00"}])).encode(),
        422,
        "reading 2 (point 'EM-U1/1') ts: timestamp must carry a time zone",
    ),
    "unknown point": (  # signed when the test runs: a stamp made at import is stale in a long run
        lambda: _signed_raw(_raw([GOOD, {**GOOD, "point": "EM-U9/1"}])),
        422,
        "reading 1: unknown point 'EM-U9/1'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batches_are_refused_with_a_json_error_and_nothing_stored(app, store, case):  # noqa: F811
    body, status, message = BAD_BATCHES[case]
    response = post(app, "/api/v1/ingest", body() if callable(body) else body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "detail"}
    assert message in payload["error"]
    assert "Traceback" not in response.text
    assert count_readings(store) == 0
    # a good batch still goes through afterwards: nothing half-stored is in the way
    assert post(app, "/api/v1/ingest", _signed_raw(_raw([GOOD]))).status_code == 200


def test_collector_commands_need_the_collector_signature(app, store):  # noqa: F811
    command = queue_command(store, "C1", "time_sync", device_id="EM-U1")
    path = "/api/v1/collectors/C1/commands"
    assert get(app, path).status_code == 401
    assert (
        get(app, path, request_headers(b"wrong", "GET", path))
        .json()["error"]
        .endswith("collector authentication failed")
    )
    response = get(app, path, request_headers(SECRET, "GET", path))
    assert response.status_code == 200
    assert [c["command_id"] for c in response.json()] == [command.command_id]
    assert get(app, path, request_headers(SECRET, "GET", path)).json() == []  # now sent

    result = (
        CommandResult(
            command_id=command.command_id,
            status="acknowledged",
            detail="offset -0.4 s",
            finished_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )
    results_path = "/api/v1/collectors/C1/command-results"
    tampered = request_headers(SECRET, "POST", results_path, b"tampered")
    assert post(app, results_path, result, tampered).status_code == 401
    response = post(app, results_path, result, request_headers(SECRET, "POST", results_path, result))
    assert response.status_code == 200, response.text
    [row] = list_commands(store, collector_id="C1")
    assert (row["status"], row["detail"]) == ("acknowledged", "offset -0.4 s")
    unknown = b'{"command_id": "nope", "status": "failed", "finished_at": "2025-03-01T00:00:00Z"}'
    response = post(app, results_path, unknown, request_headers(SECRET, "POST", results_path, unknown))
    assert response.status_code == 404 and "unknown command 'nope'" in response.json()["error"]
    garbage = b'{"command_id": "x"}'
    response = post(app, results_path, garbage, request_headers(SECRET, "POST", results_path, garbage))
    assert response.status_code == 422 and "invalid command result" in response.json()["error"]


class RunningServer:
    """uvicorn on 127.0.0.1 with a free port, in a thread."""

    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_ingest_over_a_real_socket(app, store):  # noqa: F811
    with RunningServer(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok", "database": store.dialect}
        unsigned = batch("batch-0001", [("EM-U1/1", m, "7.5") for m in range(100)])
        body = unsigned.signed(SECRET).model_dump_json().encode()
        response = client.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json()["accepted"] == 100
        again = client.post("/api/v1/ingest", content=unsigned.signed(SECRET).model_dump_json().encode())
        assert again.json()["duplicate_batch"] is True
        refused = client.post("/api/v1/ingest", content=b"[]")
        assert refused.status_code == 400 and refused.json()["error"] == "batch must be a JSON object"
        assert client.get("/api/v1/nowhere").json()["error"] == "Not Found"
    assert count_readings(store) == 100


def test_the_app_opens_and_migrates_its_own_store(tmp_path):
    app = create_app(CenterSettings(database_url=f"sqlite:///{tmp_path / 'own.db'}"))
    with RunningServer(app) as base_url:
        assert httpx.get(f"{base_url}/healthz").json()["database"] == "sqlite"
    assert (tmp_path / "own.db").exists()

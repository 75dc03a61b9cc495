"""Collector secrets sealed at rest under a key from the environment, and rotated without downtime
(issue 15 §3, docs/security.md#collector-secrets): on SQLite and PostgreSQL, through the real API and CLI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import text
from test_store import batch, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import (
    SecretsKeyError,
    Store,
    collector_secret,
    collector_secrets,
    collector_signing_secret,
    create_user,
    new_secrets_key,
    queue_command,
    rewrap_collector_secrets,
    rotate_collector_secret,
    upsert_collector,
)
from carbonflow.center.store.sealing import SECRETS_KEY_ENV, SECRETS_KEY_FILE_ENV
from carbonflow.cli import main
from carbonflow.messages.signing import document_signature_ok, request_headers

OLD = b"secret-1"  # test_store.seed gives collector C1 this secret


def stored_secret(target: Store, collector_id: str = "C1") -> tuple[str, str | None]:
    with target.read() as connection:
        row = connection.execute(
            text("SELECT secret, previous_secret FROM collectors WHERE id = :id"), {"id": collector_id}
        ).one()
    return row.secret, row.previous_secret


@pytest.fixture
def key(monkeypatch) -> str:
    value = new_secrets_key()
    monkeypatch.setenv(SECRETS_KEY_ENV, value)
    monkeypatch.delenv(SECRETS_KEY_FILE_ENV, raising=False)
    return value


def test_secrets_are_sealed_at_rest_and_read_back_under_the_key(store, key, monkeypatch):  # noqa: F811
    seed(store)
    raw, _ = stored_secret(store)
    assert raw.startswith("fernet:") and "secret-1" not in raw
    assert collector_secret(store, "C1") == OLD
    monkeypatch.delenv(SECRETS_KEY_ENV)  # the database alone does not give the secret away
    with pytest.raises(SecretsKeyError, match="collector 'C1': sealed at rest but neither"):
        collector_secret(store, "C1")
    monkeypatch.setenv(SECRETS_KEY_ENV, new_secrets_key())
    with pytest.raises(SecretsKeyError, match="not among the configured secrets keys"):
        collector_secret(store, "C1")


def test_the_secrets_key_rotates_by_rewrap(store, monkeypatch):  # noqa: F811
    monkeypatch.delenv(SECRETS_KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)
    seed(store)  # a center that ran without a key: clear secrets
    upsert_collector(store, "C2", "secret-two-0123456")
    assert stored_secret(store)[0] == "secret-1"
    with pytest.raises(SecretsKeyError, match="no secrets key"):
        rewrap_collector_secrets(store)
    first = new_secrets_key()
    monkeypatch.setenv(SECRETS_KEY_ENV, first)
    assert rewrap_collector_secrets(store) == 2
    sealed_first = stored_secret(store)[0]
    assert sealed_first.startswith("fernet:")
    second = new_secrets_key()
    monkeypatch.setenv(SECRETS_KEY_ENV, f"{second},{first}")  # new key first, the old one still opens
    assert collector_secret(store, "C1") == OLD
    assert rewrap_collector_secrets(store) == 2
    monkeypatch.setenv(SECRETS_KEY_ENV, second)  # the old key dropped: everything still opens
    assert collector_secret(store, "C1") == OLD
    assert collector_secret(store, "C2") == b"secret-two-0123456"
    assert stored_secret(store)[0] != sealed_first


def test_rotation_accepts_both_until_the_collector_uses_the_new_secret(store, key):  # noqa: F811
    seed(store)
    rotated = rotate_collector_secret(store, "C1", overlap=timedelta(hours=2))
    new = rotated.secret.encode()
    assert rotated.previous_until is not None
    assert collector_secrets(store, "C1") == [new, OLD]
    assert collector_signing_secret(store, "C1") == OLD  # what goes down is signed with what it holds
    assert all(value.startswith("fernet:") for value in stored_secret(store))
    with pytest.raises(Exception, match="a rotation waits for the collector"):
        rotate_collector_secret(store, "C1")  # a second rotation would strand the collector
    later = datetime.now(UTC) + timedelta(hours=3)
    assert collector_secrets(store, "C1", now=later) == [new]  # the overlap ended
    cut = rotate_collector_secret(store, "C1", overlap=timedelta(0))  # a stolen secret: cut off now
    assert cut.previous_until is None
    assert collector_secrets(store, "C1") == [cut.secret.encode()]


def test_rotation_without_downtime_through_the_api(tmp_path, key):
    center = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    seed(center)
    create_user(center, "root", "long-pass", "admin")
    create_user(center, "op", "long-pass", "operator")
    settings = CenterSettings(database_url="sqlite://", image_dir=str(tmp_path / "images"))
    with TestClient(create_app(settings, store=center), headers={"Origin": "http://testserver"}) as client:
        client.post("/api/v1/login", json={"name": "op", "password": "long-pass"})
        refused = client.post("/api/v1/collectors/C1/secret/rotate", json={"overlap_hours": 1})
        assert refused.status_code == 403 and "admin" in refused.json()["error"], refused.text
        client.post("/api/v1/login", json={"name": "root", "password": "long-pass"})
        answer = client.post("/api/v1/collectors/C1/secret/rotate", json={"overlap_hours": 1})
        assert answer.status_code == 201, answer.text
        new = answer.json()["secret"].encode()
        bad = client.post("/api/v1/collectors/C1/secret/rotate", json={"overlap_hours": -1})
        assert bad.status_code == 422 and "overlap_hours" in bad.json()["error"]
        unknown = client.post("/api/v1/collectors/NOPE/secret/rotate", json={"overlap_hours": 1})
        assert unknown.status_code in (403, 404) and "error" in unknown.json()

        # the collector has not installed the new secret yet: its batches and polls still pass, and the
        # commands it fetches are signed with the secret it holds
        old_batch = batch("rot-0001", [("EM-U1/1", 0, "1206.42")]).signed(OLD).model_dump_json()
        assert client.post("/api/v1/ingest", content=old_batch).status_code == 200
        queue_command(center, "C1", "time_sync", device_id="EM-U1")
        path = "/api/v1/collectors/C1/commands"
        commands = client.get(path, headers=request_headers(OLD, "GET", path)).json()
        assert document_signature_ok(commands[0], OLD, "command")

        # it installs the new one: its first message under it retires the old one
        new_batch = batch("rot-0002", [("EM-U1/1", 15, "1206.50")]).signed(new).model_dump_json()
        assert client.post("/api/v1/ingest", content=new_batch).status_code == 200
        assert collector_secrets(center, "C1") == [new]
        stale_old = batch("rot-0003", [("EM-U1/1", 30, "1206.61")]).signed(OLD).model_dump_json()
        assert client.post("/api/v1/ingest", content=stale_old).status_code == 401
        queue_command(center, "C1", "read_now", device_id="EM-U1")
        commands = client.get(path, headers=request_headers(new, "GET", path)).json()
        assert document_signature_ok(commands[0], new, "command")
        with center.read() as connection:
            actions = connection.execute(text("SELECT action FROM audit ORDER BY id")).scalars().all()
        assert "collector.rotate_secret" in actions
    center.close()


def test_cli_keygen_rotate_and_rewrap(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)
    key_file = tmp_path / "secrets.key"
    assert main(["center", "secrets", "keygen"]) == 0
    key_file.write_text(capsys.readouterr().out)
    monkeypatch.setenv(SECRETS_KEY_FILE_ENV, str(key_file))
    url = f"sqlite:///{tmp_path / 'center.db'}"
    center = Store.open(url)
    seed(center)
    with center.write() as connection:  # as a center before sealing left it
        connection.execute(text("UPDATE collectors SET secret = 'secret-1'"))
    assert main(["center", "secrets", "rewrap", "--database", url]) == 0
    assert "1 collector secret(s) sealed" in capsys.readouterr().out
    assert stored_secret(center)[0].startswith("fernet:")
    secret_file = tmp_path / "C1.secret"
    args = ["center", "rotate-secret", "C1", "--database", url, "--overlap-hours", "24"]
    assert main([*args, "--secret-file", str(secret_file)]) == 0
    out = capsys.readouterr().out
    new = secret_file.read_text().strip()
    assert new not in out and "valid until" in out and (secret_file.stat().st_mode & 0o777) == 0o600
    assert collector_secrets(center, "C1") == [new.encode(), OLD]
    assert main(["center", "rotate-secret", "NOPE", "--database", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "collector 'NOPE' not found" in err[0]
    assert main([*args]) == 2  # a rotation is pending
    assert "a rotation waits" in capsys.readouterr().err
    key_file.write_text("not-a-key\n")
    assert main(["center", "secrets", "rewrap", "--database", url]) == 2
    assert "not a Fernet key" in capsys.readouterr().err
    center.close()

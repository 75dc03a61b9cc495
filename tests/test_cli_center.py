"""`carbonflow center load|user|serve` through the CLI, on a temporary SQLite store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from carbonflow.cli import main
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("center")
    net = reference_grid()
    (folder / "grid.cf.json").write_text(json.dumps(grid_document(net)))
    (folder / "map.json").write_text(json.dumps(build_device_map(net)))
    (folder / "secret").write_text("s3cret-key\n")
    return folder


def test_load_then_add_a_user_then_serve_and_log_in(files, tmp_path, capsys, monkeypatch):
    database = f"sqlite:///{tmp_path / 'center.db'}"
    grid, device_map, secret = (str(files / name) for name in ("grid.cf.json", "map.json", "secret"))
    code = main(["center", "load", "--database", database, "--grid", grid, "--device-map", device_map,
                 "--collector", "c1", "--secret-file", secret])  # fmt: skip
    assert code == 0 and "104 buses" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("a-long-password\n"))
    assert main(["center", "user", "alice", "--role", "admin", "--database", database]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carbonflow.cli",
            "center",
            "serve",
            "--port",
            str(port),
            "--database",
            database,
        ],
        env={**os.environ, "CARBONFLOW_METERING_INTERVAL_S": "900"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        login = httpx.post(f"{url}/api/v1/login", json={"name": "alice", "password": "a-long-password"})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        buses = httpx.get(f"{url}/api/v1/buses", headers={"Authorization": f"Bearer {token}"})
        assert buses.status_code == 200 and len(buses.json()["items"]) == 104
    finally:
        server.terminate()
        out, _err = server.communicate(timeout=20)
    assert "metering every 900 s" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["load", "--grid", "missing.json"], "missing.json: no such file"),
        (["load", "--grid", "{grid}", "--device-map", "{map}"], "--device-map needs --collector"),
        (["load", "--grid", "{grid}", "--collector", "c1"], "--collector needs --secret-file"),
    ],
)
def test_bad_load_requests_give_one_line(files, tmp_path, capsys, argv, message):
    argv = [a.format(grid=files / "grid.cf.json", map=files / "map.json") for a in argv]
    code = main(["center", *argv, "--database", f"sqlite:///{tmp_path / 'c.db'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_users_get_a_role_and_region_then_are_changed_disabled_and_refused(tmp_path, capsys, monkeypatch):
    from carbonflow.center.store import Store, authenticate, get_user

    database = f"sqlite:///{tmp_path / 'users.db'}"

    def run(*args: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(stdin))
        return main(["center", "user", *args, "--database", database])

    assert run("carol", "--role", "analyst", "--region", "AH/HF/", stdin="first-password\n") == 0
    assert "carol (analyst, region AH/HF, enabled) saved" in capsys.readouterr().out
    assert run("carol", "--role", "auditor", "--region", "AH") == 0  # no password asked for a change
    assert run("carol", "--password", stdin="second-password\n") == 0
    assert run("carol", "--disable") == 0
    assert "disabled" in capsys.readouterr().out.splitlines()[-1]
    store = Store.open(database)
    try:
        user = get_user(store, "carol")
        assert (user.role, user.region, user.disabled) == ("auditor", "AH", True)
        assert authenticate(store, "carol", "second-password") is None  # disabled
    finally:
        store.close()
    assert run("carol", "--enable") == 0
    assert run("carol", "--region", "AH/../x") == 2
    assert "user 'carol': region" in capsys.readouterr().err
    assert run("nobody", "--disable") == 2
    assert run("dave", stdin="short\n") == 2

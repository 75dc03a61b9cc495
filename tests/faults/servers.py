"""Throwaway servers for the fault tests, so that restarting one never touches the shared services other
tests use: a Mosquitto broker and a PostgreSQL cluster of our own, each on a free port in a temporary
directory.  Missing binaries skip the test (fail under CI=true, which promises them)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess  # nosec B404: fixed argument lists, no shell
import tempfile
from pathlib import Path

import pytest
from faultfield import free_port, wait_for


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: it is required)")
    pytest.skip(reason)


def port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Mosquitto:
    """``mosquitto -c conf``: anonymous, localhost only, no persistence (a restart forgets everything
    the broker held — the harshest case for QoS 1)."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            unavailable("mosquitto is not installed")
        self.binary = str(binary)
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = tmp / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=out)  # nosec B603
        await wait_for(lambda: port_open(self.port), "mosquitto to listen", 20)

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(10)


class Postgres:
    """A PostgreSQL cluster of our own (initdb in a temporary directory, trust auth, fsync off), run as
    the ``postgres`` OS user when we are root.  ``restart`` stops it the hard way (``-m immediate``: no
    shutdown checkpoint, crash recovery at the next start)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        binary = found[-1] if found else shutil.which("pg_ctl")
        if binary is None:
            unavailable("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
        self.bin = Path(str(binary)).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cf-fault-pg-"))
        self.data = self.dir / "data"
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # nosec B603
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        await asyncio.to_thread(
            self._run,
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    async def stop(self, mode: str = "immediate") -> None:
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

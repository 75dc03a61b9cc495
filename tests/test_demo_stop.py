"""One Ctrl-C (SIGINT) or SIGTERM stops the whole demo — metering, simulation, collector, center, devices —
within 10 s, with its outbox kept (issue 15 §6: before, one Ctrl-C stopped only the center's server)."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_the_whole_demo_within_ten_seconds_and_keeps_its_outbox(tmp_path, sig):
    directory = tmp_path / "demo"
    cli = Path(sys.executable).with_name("carbonflow")  # the console script the README's command runs
    command = [str(cli), "demo", "--dir", str(directory), "--port", str(free_port())]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 180
        while not any(" generation " in line for line in lines):  # the first interval is metered
            assert time.monotonic() < deadline and process.poll() is None, lines
            if selector.select(timeout=1.0):
                lines.append(process.stdout.readline())
        os.killpg(process.pid, sig)  # as a terminal's Ctrl-C does: the whole process group
        sent = time.monotonic()
        rest, _ = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, rest
    assert took < 10.0, f"stopping took {took:.1f} s"
    assert "stopped:" in rest
    assert (directory / "outbox.sqlite").exists() and (directory / "center.db").exists()

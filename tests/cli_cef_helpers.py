"""Shared by the C1 ``carbonflow cef`` tests: run the command in-process or in a real interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path

from carbonflow.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IEEE14 = EXAMPLES / "ieee14_dc.json"
FOUR_BUS_LOSSY = EXAMPLES / "four_bus_lossy.json"


def cef(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``carbonflow cef ARGS`` in-process; returns (exit code, stdout, stderr)."""
    crash = ""
    try:
        code = main(["cef", *map(str, args)])
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    except Exception:  # what the interpreter would print for an uncaught exception (exit 1)
        code, crash = 1, traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err + crash


def subprocess_cef(*args: str, stdin: str | None = None, command: list[str] | None = None):
    command = command or [sys.executable, "-m", "carbonflow.cli"]
    return subprocess.run(
        [*command, "cef", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def by_id(records):
    return {record["id"]: record for record in records}


def write(tmp_path: Path, content, name: str = "snapshot.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path

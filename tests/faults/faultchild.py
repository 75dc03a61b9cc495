"""What a forked fault-injection process runs (kept apart from the field so that the child imports
nothing but the CLI: the forkserver has carbonflow's center and collector loaded already)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys


def run_cli(args: list[str], log: str, env: dict[str, str]) -> None:
    """The child: output to the log, the environment set, then the CLI as ``carbonflow ARGS``."""
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung process tells where (Process.stop)
    os.environ.update(env)
    os.environ.pop("CI", None)
    from carbonflow.cli import main

    sys.exit(main(args))

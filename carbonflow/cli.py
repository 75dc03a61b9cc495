"""The ``carbonflow`` command.  Each sub-command lives in ``carbonflow/commands/``.

Errors a user can cause are turned into one line on stderr and exit code 2, here and only here.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from carbonflow import __version__
from carbonflow.commands import COMMANDS, UserError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbonflow",
        description="Power-flow-based carbon emission metering (基于电力流的碳排放计量).",
    )
    parser.add_argument("--version", action="version", version=f"carbonflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        if isinstance(error, OSError) and error.filename:
            error = f"{error.filename}: {error.strerror.lower()}"
        message = " ".join(str(error).split())  # one line, whatever the cause
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"carbonflow {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0


def run() -> None:
    """The console script: ``main``, then exit without the interpreter's final garbage collections —
    everything is stopped and flushed by then, and for a demo of eleven centers those passes alone took
    3 s of a Ctrl-C's 10 s (the objects are freed with the process either way)."""
    code = main()
    sys.stdout.flush()
    gc.disable()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()

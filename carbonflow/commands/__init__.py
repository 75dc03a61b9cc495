"""Sub-commands of the ``carbonflow`` CLI.  Each module offers ``register(subparsers)``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from carbonflow.engine.errors import SnapshotError
from carbonflow.messages.collector_config import ConfigError
from carbonflow.protocols.errors import ProtocolError
from carbonflow.sim.errors import GridImportError, SimulationError


class CommandInputError(ValueError):
    """A problem with a command's input that is not about a snapshot (file missing, bad JSON, ...)."""


def output_file(out_arg: str, format_arg: str | None, formats: tuple[str, ...]) -> tuple[Path, str]:
    """``--out`` and its ``--format`` (default: the file's suffix), checked: a known format and an
    existing directory, else a :class:`CommandInputError` naming the option."""
    out = Path(out_arg)
    format = format_arg or out.suffix.lstrip(".").lower()
    if format not in formats:
        raise CommandInputError(f"--format: give one of {', '.join(formats)} (or an --out ending in one)")
    if not out.parent.exists():
        raise CommandInputError(f"--out {out_arg}: the directory {out.parent} does not exist")
    return out, format


def write_atomically(out: Path, data: bytes) -> None:
    """The whole file or none: written beside ``out``, then moved over it (never a partial result)."""
    with tempfile.NamedTemporaryFile(dir=out.parent, delete=False) as handle:
        handle.write(data)
    Path(handle.name).replace(out)


# Every error type a user can cause by bad input; the CLI prints these as one line and exits 2.
UserError = (
    SnapshotError,
    GridImportError,
    SimulationError,
    CommandInputError,
    ConfigError,
    ProtocolError,
    FileNotFoundError,
    IsADirectoryError,
    PermissionError,
)


def _registered():
    from carbonflow.commands import (
        audit,
        cef,
        center,
        certs,
        collector,
        demo,
        export,
        frame,
        import_grid,
        report,
        sim,
    )

    return [
        demo.register,
        cef.register,
        import_grid.register,
        frame.register,
        sim.register,
        collector.register,
        center.register,
        report.register,
        export.register,
        audit.register,
        certs.register,
    ]


COMMANDS = _registered()

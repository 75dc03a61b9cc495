"""Sub-commands of the ``carbonflow`` CLI.  Each module offers ``register(subparsers)``."""

from __future__ import annotations

from carbonflow.engine.errors import SnapshotError
from carbonflow.messages.collector_config import ConfigError
from carbonflow.protocols.errors import ProtocolError
from carbonflow.sim.errors import GridImportError, SimulationError


class CommandInputError(ValueError):
    """A problem with a command's input that is not about a snapshot (file missing, bad JSON, ...)."""


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
    ]


COMMANDS = _registered()

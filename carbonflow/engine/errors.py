"""Error types of the engine. They are caught once at the edge (CLI, API)."""


class SnapshotError(ValueError):
    """A snapshot cannot be metered; the message names the offending record."""

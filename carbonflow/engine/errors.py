"""Error types of the engine. They are caught once at the edge (CLI, API)."""


class SnapshotError(ValueError):
    """A snapshot cannot be metered; the message names the offending record.  ``snapshot``: the position
    of the offending snapshot when a series was solved (:func:`~carbonflow.engine.batch.solve_batch`)."""

    def __init__(self, message: str, snapshot: int | None = None) -> None:
        super().__init__(message)
        self.snapshot = snapshot

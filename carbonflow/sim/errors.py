"""Error type of the grid importers, kept apart so that parsing a case file does not import pandapower."""


class GridImportError(ValueError):
    """A grid model cannot be turned into a snapshot; the one-line message names the record or line."""


class SimulationError(ValueError):
    """A simulation cannot go on (a power flow diverged, a bad setting); the message names the interval."""

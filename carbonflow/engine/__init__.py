"""Carbon-emission-flow engine: pure maths, no I/O (DESIGN.md §4).

``Snapshot`` in, ``CefResult`` out (compiled: kernel.py, the origin sweep and the origin's sparse rows,
loaded by ``warm_up``);
``solve_batch`` for many snapshots of one network;
``origin_shares`` for the generator → bus / load origin matrix; ``integrate`` for energy amounts.
"""

from carbonflow.engine.cef import DEFAULT_TOL_MW, CefResult, solve
from carbonflow.engine.document import warm_up
from carbonflow.engine.errors import SnapshotError
from carbonflow.engine.snapshot import Snapshot, snapshot_from_dict, snapshot_to_dict

__all__ = [
    "DEFAULT_TOL_MW",
    "CefResult",
    "Snapshot",
    "SnapshotError",
    "snapshot_from_dict",
    "snapshot_to_dict",
    "solve",
    "warm_up",
]

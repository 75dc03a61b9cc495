"""A metering center's intervals into the cascade: each metered interval (first version and every
re-metering) hands the center's own part of the assembled snapshot to its :class:`CascadeNode`.

The part is the snapshot restricted to the buses this center meters itself: its region's buses minus
those of its lower centers (they send their own parts); the branches to a lower region become ties,
which the merge joins with the lower center's end of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from carbonflow.center.cascade.config import CascadeConfig
from carbonflow.center.cascade.node import CascadeNode
from carbonflow.center.cascade.split import CascadeError, bus_regions, in_region, region_part
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store
from carbonflow.center.store.cascade import metered_snapshot, result_hash_at, verifications

log = logging.getLogger(__name__)
LOWER = "\x00lower"  # region given to the buses a lower center meters: outside this center's part


def own_regions(topology: Mapping[str, Any], node: CascadeNode) -> dict[str, str]:
    """bus -> region, the buses of the lower centers' regions moved outside this center's region."""
    lowers = [p.region for p in node.config.lowers]
    return {
        bus: (LOWER if any(in_region(path, lower) for lower in lowers) else path)
        for bus, path in bus_regions(topology).items()
    }


def own_part(snapshot: Mapping[str, Any], regions: Mapping[str, str], node: CascadeNode) -> dict[str, Any]:
    return region_part(snapshot, regions, node.config.region)


def metering_feed(
    store: Store, topology: Mapping[str, Any], node: CascadeNode, level: str = ""
) -> Callable[[IntervalOutcome], None]:
    """The observer a :class:`MeteringLoop` calls with each outcome (in a worker thread)."""
    regions = own_regions(topology, node)

    def feed(outcome: IntervalOutcome) -> None:
        if not outcome.stored:
            return
        snapshot = metered_snapshot(store, outcome.end, node.config.interval_s, level)
        if snapshot is None:
            log.warning("cascade %s: no metered snapshot for %s", node.id, outcome.end.isoformat())
            return
        try:
            node.submit_part(outcome.end, own_part(snapshot, regions, node))
        except CascadeError as error:
            log.warning("cascade %s, interval %s: %s", node.id, outcome.end.isoformat(), error)

    return feed


def exchanged(store: Store, node_config: CascadeConfig, ts: datetime) -> bool:
    """The interval ending at ``ts`` is done at this center: its result is stored, its upper's verdicts
    on it received, and every lower center's report judged."""
    if result_hash_at(store, ts, node_config.region) is None:
        return False
    judges = {(v["peer"], v["judge"]) for v in verifications(store, ts) if v["ts"] == ts.isoformat()}
    upper = node_config.upper
    if upper is not None and (upper.id, upper.id) not in judges:
        return False
    return all((p.id, node_config.center_id) in judges for p in node_config.lowers)


def interval_status(store: Store, ts: datetime) -> str:
    """ok / mismatch / pending: the verdicts this center stored for the interval ending at ``ts``."""
    rows = [v for v in verifications(store, ts) if v["ts"] == ts.isoformat()]
    if not rows:
        return "pending"
    return "mismatch" if any(v["status"] == "mismatch" for v in rows) else "ok"

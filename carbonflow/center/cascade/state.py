"""What a :class:`~carbonflow.center.cascade.node.CascadeNode` keeps in memory of one interval, so
that a step reads the store once per interval and hashes or solves nothing twice."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from carbonflow.center.cascade.compute import PartResult
from carbonflow.center.store import cascade as cstore


def digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


UNKNOWN = object()


class IntervalState:
    """What a node knows of one interval, in memory: loaded from the store once, then kept exact by the
    node's own writes (it is its store's only writer of cascade messages, results and verdicts)."""

    def __init__(self, messages: list[cstore.StoredMessage]) -> None:
        self.latest: dict[tuple[str, str, str], cstore.StoredMessage] = {}  # newest per (dir, peer, kind)
        self.ids: set[str] = set()  # every message_id of the interval
        self.digests: dict[tuple[str, str, str], set[str]] = {}  # every version's payload digest
        # an interval the store has no message of has no result and no verdict of a peer yet either
        # (a refused future interval's own verdict is simply written again): nothing to look up
        self.fresh = not messages
        self.result_hash: Any = None if self.fresh else UNKNOWN  # this center's stored result hash
        self.judged: dict[tuple[str, str], str | None] = {}  # (peer, judge) -> report hash judged
        self.merged: tuple[tuple[str, ...], dict[str, Any]] | None = None  # (input ids, merged part)
        self.solved: tuple[tuple, PartResult] | None = None  # (input ids, result)
        # lower peer -> (its part's message id, the intensities handed down, its part solved with them):
        # what the lower's report must reproduce, computed while the lower computes it
        self.expected: dict[str, tuple[str, dict[str, float | None], PartResult]] = {}
        for message in messages:
            self.add(message)

    def add(self, message: cstore.StoredMessage) -> None:
        key = (message.direction, message.peer, message.kind)
        self.latest[key] = message
        self.ids.add(message.message_id)
        self.digests.setdefault(key, set()).add(message.digest)

"""One center in the cascade: what it accepts, what it computes and sends, what it verifies.

Every step is driven by :meth:`CascadeNode.advance` for one interval, which looks only at what is
stored (messages accepted, sent, metered here), so messages may arrive in any order, twice, or days
late after an outage: each interval moves on as soon as what it needs is there, and nothing is counted
twice.  Per interval:

1. a center has its own metered part (:meth:`submit_part`; a center without buses of its own has an
   empty one) and, from each lower center, its ``RegionData``;
2. it merges them and sends the merged part up (``RegionData``), then waits for the import
   intensities of its ties (``BoundaryIntensities``) — the top center waits for nothing;
3. it solves its region, stores the result, hands each lower center the import intensities of its ties
   and reports its totals, ties and result hash up (``IntervalReport``);
4. it judges each lower center's report (:func:`verify.judge_report`), stores the verdicts and sends
   them down (``Verification``); a lower center stores the verdicts it receives.  Every mismatch, at
   either end, is stored and passed to the :meth:`on_mismatch` listeners (alarms).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonflow.center.cascade.compute import PartResult, child_imports, far_bus, solve_part
from carbonflow.center.cascade.config import CascadeConfig, PeerConfig
from carbonflow.center.cascade.outbox import CascadeOutbox, QueuedMessage
from carbonflow.center.cascade.split import CascadeError, is_import, merge_parts
from carbonflow.center.cascade.state import UNKNOWN, IntervalState, digest
from carbonflow.center.cascade.steps import Steps
from carbonflow.center.cascade.verify import Tolerances, balance, judge_report
from carbonflow.center.store import Store
from carbonflow.center.store import cascade as cstore
from carbonflow.center.store.maintenance import record_audit
from carbonflow.delivery import SendResult
from carbonflow.messages.base import ContractError
from carbonflow.messages.c5 import (
    BoundaryIntensities,
    BoundaryIntensity,
    Envelope,
    IntervalReport,
    RegionData,
    Verdict,
    Verification,
)

log = logging.getLogger(__name__)
FROM_LOWER = ("region_data", "interval_report")
FROM_UPPER = ("boundary_intensities", "verification")
DEFAULT_TOLERANCES = Tolerances()
INDEX_INTERVALS = 64  # intervals whose messages and solution a node keeps in memory
RESUME_WINDOW = timedelta(days=7)  # a restarted center looks this far back for unfinished intervals


class Refused(Exception):
    """A message this center will not take: HTTP status, error, detail."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True)
class Mismatch:
    """One failed check of one interval, for an alarm: which pair, who judged, which quantities."""

    ts: datetime
    center: str  # where it is raised
    peer: str
    judge: str
    verdict: dict[str, Any]

    def message(self) -> str:
        v = self.verdict
        return (
            f"cascade {v['check']} mismatch {self.ts.isoformat()} between {self.center} and {self.peer}"
            f" ({v.get('subject') or '-'}): expected {v.get('expected')}, found {v.get('found')}"
            f" (judged by {self.judge}) {v.get('detail') or ''}".rstrip()
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CascadeNode:
    def __init__(
        self,
        store: Store,
        config: CascadeConfig,
        outbox: CascadeOutbox,
        *,
        now: Callable[[], datetime] = _utc_now,
        tolerances: Tolerances = DEFAULT_TOLERANCES,
        before_send: Callable[[Envelope], Envelope] | None = None,  # tests: a tampering center
    ) -> None:
        self.store, self.config, self.outbox, self.now = store, config, outbox, now
        self.tol = tolerances
        self.before_send = before_send
        self.key = config.signing_key()
        self.trust = {p.id: p.verifying_keys() for p in config.peers}
        self.listeners: list[Callable[[Mismatch], None]] = []
        self.wake: Callable[[str], None] = lambda _peer: None  # set by the service: a peer has mail
        # one step (a message received, a part submitted, an interval resumed) stores what it writes in
        # one store transaction and queues what it sends in one outbox transaction, outbox first;
        # steps that end at the same moment are committed together (steps.Steps)
        self.steps = Steps(
            store,
            outbox,
            lambda peer: self.wake(peer),
            self._forget,
            commit=lambda writes: cstore.commit_group(store, writes),  # records: driver-level batches
        )
        self.step_listeners = self.steps.listeners  # intervals a committed step changed
        self._lock = self.steps.lock
        # what the node knows of recent intervals (messages, result hash, judged hashes, merged part,
        # solution): the store is read once per interval, the node's writes keep it exact
        self._index: OrderedDict[datetime, IntervalState] = OrderedDict()

    @property
    def id(self) -> str:
        return self.config.center_id

    def on_mismatch(self, listener: Callable[[Mismatch], None]) -> None:
        self.listeners.append(listener)

    # -- input ------------------------------------------------------------------------------------
    def submit_part(self, ts: datetime, part: dict[str, Any]) -> None:
        """This center's own metered part of the interval ending at ``ts``."""
        payload = RegionData(region=self.config.region, part=part).model_dump(mode="json")
        with self._step():
            earlier = self._find("own", self.id, "region_data", ts)
            payload_digest = digest(payload)
            if earlier is None or earlier.digest != payload_digest:  # metered again: a new version
                now = self.now()
                message = cstore.StoredMessage(
                    uuid.uuid4().hex, "own", self.id, "region_data", ts, payload, payload_digest, now
                )
                self._save(message, self.config.interval_s, now)
            self.advance(ts)

    def receive(self, body: bytes) -> dict[str, Any]:
        """Take one signed envelope from a peer; :class:`Refused` (audited) when it cannot be taken."""
        try:
            envelope = Envelope.parse(json.loads(body))
        except (ValueError, ContractError) as error:
            self._refuse("malformed", None, str(error).splitlines()[0], 422)
        peer = self.config.peer(envelope.sender)
        if peer is None:
            self._refuse("unknown peer", envelope, f"{envelope.sender} is not a configured peer", 403)
        if not any(envelope.verify(key) for key in self.trust[peer.id]):
            self._refuse("bad signature", envelope, f"signature of {envelope.sender} does not verify", 403)
        if envelope.recipient != self.id:
            self._refuse(
                "wrong recipient", envelope, f"addressed to {envelope.recipient}, not {self.id}", 422
            )
        if envelope.interval_s != self.config.interval_s:
            self._refuse(
                "wrong interval length",
                envelope,
                f"interval_s {envelope.interval_s}, this cascade meters {self.config.interval_s}",
                422,
            )
        kind = envelope.payload.kind
        allowed = FROM_LOWER if peer.direction == "lower" else FROM_UPPER
        if kind not in allowed:
            self._refuse(
                "unexpected message", envelope, f"a {peer.direction} center does not send {kind}", 422
            )
        now = self.now()
        ahead = (envelope.ts - now).total_seconds()
        if ahead > self.config.max_clock_skew_s:
            detail = f"interval {envelope.ts.isoformat()} ends {ahead:.0f} s after this center's clock"
            with self._step():
                self._verdicts(
                    envelope.ts,
                    peer.id,
                    self.id,
                    None,
                    [
                        Verdict(
                            check="clock",
                            status="mismatch",
                            subject="ts",
                            expected=now.timestamp(),
                            found=envelope.ts.timestamp(),
                            tolerance=self.config.max_clock_skew_s,
                            detail=detail,
                        )
                    ],
                )
            self._refuse("interval from the future", envelope, detail, 422)
        payload = envelope.payload.model_dump(mode="json")
        with self._step():
            interval = self._messages(envelope.ts)
            known = envelope.message_id in interval.ids  # else: the id under another interval?
            if known or cstore.message_seen(self.store, envelope.message_id):
                self._audit("duplicate", envelope, "message_id seen before")
                return {"status": "duplicate", "message_id": envelope.message_id}
            # a different message for an interval already received is a new version of it (the peer
            # metered or computed it again: late readings); the same payload again, of any earlier
            # version, is a replay: stored once, never counted twice
            latest = self._find("in", peer.id, kind, envelope.ts)
            payload_digest = digest(payload)
            versions = 0
            if latest is not None:
                known = interval.digests.get(("in", peer.id, kind), set())
                if payload_digest in known:
                    self._audit("duplicate", envelope, f"same {kind} as an earlier message")
                    return {"status": "duplicate", "message_id": envelope.message_id}
                versions = len(known)
                self._audit("new version", envelope, f"{kind} version {versions + 1}")
            message = cstore.StoredMessage(
                envelope.message_id, "in", peer.id, kind, envelope.ts, payload, payload_digest, now
            )
            self._save(message, envelope.interval_s, envelope.created_at)
            self.advance(envelope.ts)
        return {"status": "accepted", "message_id": envelope.message_id, "version": versions + 1}

    def refused_by_peer(self, item: QueuedMessage, result: SendResult) -> None:
        """A peer refused one of our messages for good: a verdict here too (clock skew, bad data)."""
        ts = datetime.fromisoformat(item.ts)
        check = "clock" if "future" in result.error else "data"
        with self._step():
            self._verdicts(
                ts,
                item.peer,
                item.peer,
                None,
                [
                    Verdict(
                        check=check, status="mismatch", subject=item.kind, detail=f"refused: {result.error}"
                    )
                ],
            )

    # -- the interval's state machine ----------------------------------------------------------------
    def resume(self) -> int:
        """After a restart: move on every interval that has messages but no result yet."""
        pending = cstore.pending_intervals(self.store, self.now() - RESUME_WINDOW)
        for ts in pending:
            with self._step():
                self.advance(ts)
        return len(pending)

    # -- steps ----------------------------------------------------------------------------------------
    def _step(self):
        return self.steps.step()

    def _forget(self, intervals: set[datetime] | None) -> None:
        if intervals is None:
            self._index.clear()
        for ts in intervals or ():
            self._index.pop(ts, None)

    def _write(self, ts: datetime, write: Callable[[Any], None]) -> None:
        self.steps.write(ts, write)

    def _messages(self, ts: datetime) -> IntervalState:
        found = self._index.get(ts)
        if found is None:
            found = IntervalState(cstore.messages_at(self.store, ts))
            self._index[ts] = found
            while len(self._index) > INDEX_INTERVALS:
                self._index.popitem(last=False)
        self._index.move_to_end(ts)
        return found

    def _find(self, direction: str, peer: str, kind: str, ts: datetime) -> cstore.StoredMessage | None:
        return self._messages(ts).latest.get((direction, peer, kind))

    def _save(self, message: cstore.StoredMessage, interval_s: int, created_at: datetime) -> None:
        self._write(message.ts, cstore.MessageWrite(message, interval_s, created_at))
        self._messages(message.ts).add(message)

    def _result_hash(self, ts: datetime) -> str | None:
        interval = self._messages(ts)
        if interval.result_hash is UNKNOWN:
            interval.result_hash = cstore.result_hash_at(self.store, ts, self.config.region)
        return interval.result_hash

    def _judged(self, ts: datetime, peer: str, judge: str) -> str | None:
        interval = self._messages(ts)
        if (peer, judge) not in interval.judged:
            found = None if interval.fresh else cstore.judged_hash(self.store, ts, peer, judge)
            interval.judged[(peer, judge)] = found
        return interval.judged[(peer, judge)]

    def _payload(self, direction: str, peer: str, kind: str, ts: datetime) -> dict[str, Any] | None:
        found = self._find(direction, peer, kind, ts)
        return None if found is None else found.payload

    def _own_part(self, ts: datetime) -> dict[str, Any] | None:
        own = self._payload("own", self.id, "region_data", ts)
        if own is not None:
            return own["part"]
        if self.config.lowers:  # an aggregating center meters no bus of its own
            return {"region": self.config.region, "buses": []}
        return None

    def advance(self, ts: datetime) -> None:
        with self._step():
            self._advance_or_verdict(ts)

    def _advance_or_verdict(self, ts: datetime) -> None:
        try:
            self._advance(ts)
        except CascadeError as error:
            log.warning("cascade %s, interval %s: %s", self.id, ts.isoformat(), error)
            target = self.config.upper.id if self.config.upper else self.id
            self._verdicts(
                ts, target, self.id, None, [Verdict(check="data", status="mismatch", detail=str(error))]
            )

    def _advance(self, ts: datetime) -> None:
        upper = self.config.upper
        if upper is not None:
            self._take_verification(ts, upper)
        own = self._own_part(ts)
        children = {p.id: self._find("in", p.id, "region_data", ts) for p in self.config.lowers}
        if own is None or any(c is None for c in children.values()):
            return
        child_parts = {peer: message.payload["part"] for peer, message in children.items()}
        # the messages a step depends on name its inputs: merged, sent and solved once per set of them
        own_message = self._find("own", self.id, "region_data", ts)
        parts_key = ("" if own_message is None else own_message.message_id,)
        parts_key += tuple(message.message_id for message in children.values())
        interval = self._messages(ts)
        if interval.merged is None or interval.merged[0] != parts_key:
            merged = merge_parts(self.config.region, [own, *child_parts.values()])
            if upper is not None:
                self._send_new(upper, ts, RegionData(region=self.config.region, part=merged))
            interval.merged = (parts_key, merged)
        merged = interval.merged[1]
        imports: dict[str, float | None] = {}
        inputs: tuple = (parts_key, "")
        if upper is not None:
            boundaries = self._find("in", upper.id, "boundary_intensities", ts)
            if boundaries is None:
                return
            imports = {
                str(b["branch_id"]): b["intensity_g_per_kwh"] for b in boundaries.payload["boundaries"]
            }
            inputs = (parts_key, boundaries.message_id)
        result = self._solved_result(ts, inputs, merged, imports)
        for peer in self.config.lowers:
            self._judge(ts, peer, child_parts[peer.id], merged, result)

    def _solved_result(self, ts, inputs: tuple, merged, imports) -> PartResult:
        interval = self._messages(ts)
        if interval.solved is not None and interval.solved[0] == inputs:
            return interval.solved[1]
        result = solve_part(merged, imports, self.config.losses, self.config.interval_s)
        if self._result_hash(ts) != result.result_hash:
            self._publish(ts, merged, imports, result)  # first result, or a new version of it
        interval.solved = (inputs, result)
        return result

    def _publish(self, ts: datetime, merged, imports, result: PartResult) -> None:
        now = self.now()
        row = cstore.ResultWrite(
            ts,
            self.config.region,
            self.config.interval_s,
            self.config.losses,
            result.result_hash,
            result.totals.model_dump(mode="json"),
            result.document,
            now,
        )
        self._write(ts, row)
        self._messages(ts).result_hash = result.result_hash
        missing = [
            str(t["id"]) for t in merged.get("ties", []) if is_import(t) and str(t["id"]) not in imports
        ]
        for peer in self.config.lowers:
            part_message = self._find("in", peer.id, "region_data", ts)
            part = part_message.payload["part"]
            handed = child_imports(part, result, imports)
            # the lower's result, as its report must reproduce it, solved while the lower solves it
            self.steps.later(
                functools.partial(self._expect, ts, peer.id, part_message.message_id, part, handed)
            )
            self._send_new(
                peer,
                ts,
                BoundaryIntensities(
                    boundaries=[
                        BoundaryIntensity(
                            bus=far_bus(part, tie_id), branch_id=tie_id, intensity_g_per_kwh=value
                        )
                        for tie_id, value in sorted(handed.items())
                    ]
                ),
            )
        report = IntervalReport(
            totals=result.totals,
            ties=result.ties,
            meter_sums=result.meter_sums,
            result_hash=result.result_hash,
        )
        own_checks = balance(report, self.tol)
        if missing:
            own_checks.append(
                Verdict(
                    check="data",
                    status="mismatch",
                    subject=",".join(missing),
                    detail="import ties without an intensity from the upper level",
                )
            )
        self._verdicts(
            ts,
            self.config.upper.id if self.config.upper else self.id,
            self.id,
            report.result_hash,
            own_checks,
        )
        if self.config.upper is not None:
            self._send_new(self.config.upper, ts, report)

    def _expect(self, ts: datetime, peer: str, part_id: str, part, handed) -> None:
        try:
            again = solve_part(part, handed, self.config.losses, self.config.interval_s)
        except CascadeError:
            return  # judged (and named) when the report comes
        with self._lock:
            self._messages(ts).expected[peer] = (part_id, handed, again)

    def _judge(self, ts: datetime, peer: PeerConfig, part, merged, result: PartResult) -> None:
        message = self._payload("in", peer.id, "interval_report", ts)
        if message is None:
            return
        report = IntervalReport.model_validate(message)
        if self._judged(ts, peer.id, self.id) == report.result_hash:
            return
        handed_message = self._payload("out", peer.id, "boundary_intensities", ts) or {"boundaries": []}
        handed = {str(b["branch_id"]): b["intensity_g_per_kwh"] for b in handed_message["boundaries"]}
        expected = self._messages(ts).expected.get(peer.id)
        part_id = self._find("in", peer.id, "region_data", ts).message_id
        again = None
        if expected is not None and expected[0] == part_id and expected[1] == handed:
            again = expected[2]
        verdicts = judge_report(report, part, handed, result, merged, self.tol, again=again)
        self._verdicts(ts, peer.id, self.id, report.result_hash, verdicts)
        status = "mismatch" if any(v.status == "mismatch" for v in verdicts) else "ok"
        self._send(peer, ts, Verification(report_hash=report.result_hash, status=status, verdicts=verdicts))

    def _take_verification(self, ts: datetime, upper: PeerConfig) -> None:
        message = self._payload("in", upper.id, "verification", ts)
        if message is None:
            return
        verification = Verification.model_validate(message)
        if self._judged(ts, upper.id, upper.id) == verification.report_hash:
            return
        self._verdicts(ts, upper.id, upper.id, verification.report_hash, verification.verdicts)

    # -- output ---------------------------------------------------------------------------------------
    def _verdicts(
        self, ts: datetime, peer: str, judge: str, report_hash: str | None, verdicts: list[Verdict]
    ):
        rows = [v.model_dump(mode="json") for v in verdicts]
        now = self.now()
        self._write(ts, cstore.VerdictsWrite(ts, peer, judge, report_hash, rows, now))
        self._messages(ts).judged[(peer, judge)] = (report_hash or "") if rows else None
        for row in rows:
            if row["status"] == "mismatch":
                mismatch = Mismatch(ts, self.id, peer, judge, row)
                log.warning("%s", mismatch.message())
                for listener in self.listeners:
                    listener(mismatch)

    def _send_new(self, peer: PeerConfig, ts: datetime, payload) -> None:
        """Send ``payload`` unless the last message of its kind to ``peer`` for ``ts`` says the same."""
        sent = self._find("out", peer.id, payload.kind, ts)
        data = payload.model_dump(mode="json")
        data_digest = digest(data)
        if sent is None or sent.digest != data_digest:
            self._send(peer, ts, payload, (data, data_digest))

    def _send(self, peer: PeerConfig, ts: datetime, payload, dumped=None) -> None:
        envelope = Envelope(
            message_id=uuid.uuid4().hex,
            sender=self.id,
            recipient=peer.id,
            ts=ts,
            interval_s=self.config.interval_s,
            created_at=self.now(),
            payload=payload,
        )
        if self.before_send is not None:
            envelope = self.before_send(envelope)
        envelope = envelope.signed(self.key)
        body = envelope.model_dump_json().encode("utf-8")
        kind = envelope.payload.kind
        self.steps.send((peer.id, envelope.message_id, kind, ts.isoformat(), body))
        if dumped is None or self.before_send is not None:
            data = envelope.payload.model_dump(mode="json")
            dumped = (data, digest(data))
        now = self.now()
        self._save(
            cstore.StoredMessage(envelope.message_id, "out", peer.id, kind, ts, *dumped, now),
            self.config.interval_s,
            now,
        )

    def _audit(self, action: str, envelope: Envelope | None, detail: str) -> None:
        record_audit(
            self.store,
            "cascade",
            f"cascade message {action}",
            None if envelope is None else envelope.sender,
            {
                "detail": detail,
                **(
                    {}
                    if envelope is None
                    else {
                        "message_id": envelope.message_id,
                        "kind": envelope.payload.kind,
                        "ts": envelope.ts.isoformat(),
                    }
                ),
            },
        )

    def _refuse(self, action: str, envelope: Envelope | None, detail: str, status: int):
        self._audit(action, envelope, detail)
        raise Refused(status, action, detail)

    # -- views ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        peers = []
        for peer in self.config.peers:
            last = cstore.last_exchange(self.store, peer.id)
            peers.append(
                {
                    "id": peer.id,
                    "region": peer.region,
                    "level": peer.level,
                    "direction": peer.direction,
                    "url": peer.url,
                    "last_exchange_ts": None if last is None else last.isoformat(),
                    "backlog": self.outbox.backlog(peer.id),
                    "refused": len(self.outbox.refused(peer.id)),
                    "verification": cstore.verification_summary(self.store, peer.id),
                }
            )
        return {
            "center": {"id": self.id, "region": self.config.region, "level": self.config.level},
            "peers": peers,
            "self_check": cstore.verification_summary(self.store, self.id),
        }

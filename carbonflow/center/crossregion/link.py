"""One center's tie lines with its neighbouring regions: what it accepts, what it uses, what it publishes.

* **Receiving** (:meth:`TieLink.receive`): a neighbour's signed :class:`TieIntensities` document is
  checked (signature of a configured neighbour, addressed here, same interval length, only known ties,
  not from the future), stored (``cascade_messages``, kind ``tie_intensities``, the whole signed
  document) and, when an interval already metered used an estimate or another value for one of its
  ties, :attr:`TieLink.on_arrival` asks for that interval to be metered again.  A refused document is
  one JSON line (403 / 422), an audit entry ``tie document <why>`` and a report to the listeners (alarm).
* **Using** (:meth:`TieLink.apply`, called by the metering right after the snapshot is assembled and
  before the engine solves): each tie is a branch of the topology between a local bus and the
  neighbour's bus.  Its far end takes the power the neighbour metered there and moves onto a bus of its
  own (``tie:<id>``), where the power entering the tie becomes a source at the neighbour's published
  intensity (a sink when we export): two ties meeting at one neighbour bus never mix.  When the
  neighbour's document for the interval is missing, a *named estimate* is used — ``last known value``
  (the newest published within ``last_known_max_age_s``) or ``default import intensity`` — with the far
  end lossless, and the interval carries the estimate (it counts as estimated, it is metered again when
  the document arrives).
* **Publishing** (:meth:`TieLink.publish`, a metering observer): after each metered interval (and each
  new version) the nodal intensity of every local tie bus and the power metered into the tie there go to
  each neighbour, signed, through a durable outbox (pushed to the neighbour's ``POST``) and kept here
  for ``GET /api/v1/ties/intensities``.  A new version is published only when a value moved by more than
  the re-metering thresholds, so two regions importing from each other converge instead of ping-ponging.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from carbonflow.center.cascade.node import Refused, digest
from carbonflow.center.cascade.outbox import CascadeOutbox
from carbonflow.center.crossregion.config import TieConfig, TiesConfig
from carbonflow.center.metering.assemble import LOSSLESS_RELATIVE_U, Assembled, Estimate
from carbonflow.center.store import Store
from carbonflow.center.store import cascade as cstore
from carbonflow.center.store.cascade import CascadeMessage
from carbonflow.center.store.maintenance import record_audit
from carbonflow.center.store.schema import Interval
from carbonflow.center.store.types import utc
from carbonflow.messages.base import ContractError
from carbonflow.messages.ties import TieIntensities, TiePoint

log = logging.getLogger(__name__)
KIND = "tie_intensities"
TIE_PREFIX = "tie:"  # id of the source / sink that stands for a neighbour at its bus
FLOW_TOL_MW = 1e-9
KEEP_INTERVALS = 512  # intervals whose tie use / arrival this link remembers
LAST_KNOWN = "neighbour late: last known value"
DEFAULT = "neighbour late: default import intensity"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TieRefusal:
    """A neighbour's document refused: for the log, the audit trail and an alarm."""

    neighbour: str | None
    error: str
    detail: str
    ts: datetime | None

    def message(self) -> str:
        return f"tie document from {self.neighbour or '?'} refused ({self.error}): {self.detail}"


@dataclass(frozen=True)
class Used:
    """What an interval's metering used for one tie."""

    intensity_g_per_kwh: float | None
    p_far_mw: float
    method: str  # "published" or the name of the estimate


class TieLink:
    def __init__(
        self,
        store: Store,
        config: TiesConfig,
        topology: Mapping[str, Any],
        outbox: CascadeOutbox | None = None,
        *,
        now: Callable[[], datetime] = _utc_now,
        level: str = "",
    ) -> None:
        config.check_topology(topology)
        self.store, self.config, self.outbox, self.now, self.level = store, config, outbox, now, level
        self.key = config.signing_key()
        self.trust = {n.id: n.verifying_key() for n in config.neighbours}
        self.branches = {str(b["id"]): b for b in topology.get("branches", [])}
        self.on_arrival: Callable[[datetime, str], None] = lambda _ts, _why: None  # set by the wiring
        self.wake: Callable[[str], None] = lambda _neighbour: None  # set by the service: mail to send
        self.listeners: list[Callable[[TieRefusal], None]] = []
        self.latencies_s: deque[float] = deque(maxlen=10_000)  # a document's arrival -> its use
        self._arrived: dict[tuple[datetime, str], float] = {}
        self._used: dict[tuple[datetime, str], Used] = {}
        self._earlier: dict[str, list] = {}
        self._lock = threading.RLock()

    @property
    def id(self) -> str:
        return self.config.center_id

    # -- receiving ------------------------------------------------------------------------------------
    def receive(self, body: bytes) -> dict[str, Any]:
        """Take one signed document from a neighbour; :class:`Refused` (audited, reported) otherwise."""
        try:
            document = TieIntensities.parse(json.loads(body))
        except (ValueError, ContractError) as error:
            self._refuse(None, "malformed", str(error).splitlines()[0], 422)
        neighbour = self.config.neighbour(document.sender)
        if neighbour is None:
            self._refuse(
                document, "unknown neighbour", f"{document.sender} is not a configured neighbour", 403
            )
        if not document.verify(self.trust[neighbour.id]):
            self._refuse(document, "bad signature", f"signature of {document.sender} does not verify", 403)
        if document.recipient != self.id:
            self._refuse(
                document, "wrong recipient", f"addressed to {document.recipient}, not {self.id}", 422
            )
        if document.interval_s != self.config.interval_s:
            detail = f"interval_s {document.interval_s}, this center meters {self.config.interval_s}"
            self._refuse(document, "wrong interval length", detail, 422)
        if document.losses != self.config.losses:  # intensities under two conventions do not combine
            detail = f"losses {document.losses}, this center meters under {self.config.losses}"
            self._refuse(document, "wrong loss convention", detail, 422)
        known = {t.id: t for t in self.config.ties_of(neighbour.id)}
        for point in document.ties:
            tie = known.get(point.tie_id)
            if tie is None:
                self._refuse(
                    document,
                    "unknown tie",
                    f"tie {point.tie_id!r} is not configured with {neighbour.id}",
                    422,
                )
            if (point.bus, point.neighbour_bus) != (tie.neighbour_bus, tie.local_bus):
                detail = (
                    f"tie {point.tie_id!r} joins {point.bus} -> {point.neighbour_bus} in the document, "
                    f"configured {tie.neighbour_bus} -> {tie.local_bus}"
                )
                self._refuse(document, "unknown tie", detail, 422)
        ahead = (document.ts - self.now()).total_seconds()
        if ahead > self.config.max_clock_skew_s:
            detail = f"interval {document.ts.isoformat()} ends {ahead:.0f} s after this center's clock"
            self._refuse(document, "interval from the future", detail, 422)
        payload = document.model_dump(mode="json")
        content = _content(payload)
        arrived = time.perf_counter()
        with self._lock:
            if cstore.message_seen(self.store, document.document_id):
                self._audit("duplicate", document, "document_id seen before")
                return {"status": "duplicate", "document_id": document.document_id}
            known_digests = cstore.message_digests(self.store, "in", neighbour.id, KIND, document.ts)
            if digest(content) in known_digests:
                self._audit("duplicate", document, "same tie intensities as an earlier document")
                return {"status": "duplicate", "document_id": document.document_id}
            now = self.now()
            message = cstore.StoredMessage(
                document.document_id, "in", neighbour.id, KIND, document.ts, payload, digest(content), now
            )
            cstore.save_message(self.store, message, document.interval_s, document.created_at)
            self._audit("accepted", document, f"version {document.version}")
            self._arrived[(document.ts, neighbour.id)] = arrived
            while len(self._arrived) > KEEP_INTERVALS:  # arrivals never used (nothing to meter again)
                self._arrived.pop(next(iter(self._arrived)))
            newest = self.latest(neighbour.id, document.ts)  # a late older version changes nothing
            remeter = newest["document_id"] == document.document_id and self._needs_remeter(document)
        if remeter:
            self.on_arrival(
                document.ts, f"tie intensities of {neighbour.id} arrived (version {document.version})"
            )
        return {
            "status": "accepted",
            "document_id": document.document_id,
            "version": document.version,
            "remeter": remeter,
        }

    def _needs_remeter(self, document: TieIntensities) -> bool:
        """The interval was metered already with something else for one of the document's ties."""
        used_any = False
        for point in document.ties:
            used = self._used.get((document.ts, point.tie_id))
            if used is None:
                continue
            used_any = True
            if used.method != "published" or _moved(used, point.model_dump(), self.config):
                return True
        if used_any:
            return False
        return self._stored_differs(document)

    def _stored_differs(self, document: TieIntensities) -> bool:
        """After a restart (nothing in memory): the stored interval priced one of the document's ties by
        estimate, or with values the document changes.  Not metered yet: False (used when it is)."""
        snapshot = cstore.metered_snapshot(self.store, document.ts, self.config.interval_s, self.level)
        if snapshot is None:
            return False
        with self.store.read() as connection:
            estimation = connection.execute(
                select(Interval.estimation).where(
                    Interval.ts == document.ts,
                    Interval.level == self.level,
                    Interval.interval_s == self.config.interval_s,
                )
            ).scalar_one_or_none()
        ties = {p.tie_id for p in document.ties}
        estimates = (estimation or {}).get("estimates", [])
        if any(e.get("element_kind") == "tie" and e.get("element_id") in ties for e in estimates):
            return True
        sources = {str(g["id"]): g for g in snapshot.get("generators", [])}
        branches = {str(b["id"]): b for b in snapshot.get("branches", [])}
        for point in document.ties:
            branch = branches.get(point.tie_id)
            if branch is None:
                continue
            far = "to" if str(branch["to_bus"]) == TIE_PREFIX + point.tie_id else "from"
            source = sources.get(TIE_PREFIX + point.tie_id)  # an export has none: its power is compared
            used_intensity = point.intensity_g_per_kwh if source is None else source["intensity_g_per_kwh"]
            used = Used(used_intensity, float(branch[f"p_{far}_mw"]), "published")
            if _moved(used, point.model_dump(), self.config):
                return True
        return False

    # -- using ----------------------------------------------------------------------------------------
    def apply(self, end: datetime, assembled: Assembled) -> None:
        """Put the neighbours' published intensities (or named estimates) into an assembled snapshot."""
        with self._lock:
            documents = {n.id: self.latest(n.id, end) for n in self.config.neighbours}
            for neighbour, found in documents.items():
                started = self._arrived.pop((end, neighbour), None)
                if found is not None and started is not None:
                    self.latencies_s.append(time.perf_counter() - started)
            branches = {str(b["id"]): b for b in assembled.snapshot.get("branches", [])}
            self._earlier: dict[str, list] = {}  # the neighbours' earlier documents, read once per metering
            for tie in self.config.ties:
                branch = branches.get(tie.id)
                if branch is None:
                    continue
                document = documents[tie.neighbour]
                point = None if document is None else _point(document, tie.id)
                self._used[(end, tie.id)] = self._apply_tie(end, tie, branch, point, assembled)
            _drop_unconnected(assembled.snapshot, {t.neighbour_bus for t in self.config.ties})
            for old in sorted({ts for ts, _ in self._used})[:-KEEP_INTERVALS]:
                self._used = {k: v for k, v in self._used.items() if k[0] != old}

    def _apply_tie(
        self, end: datetime, tie: TieConfig, branch: dict[str, Any], point: dict[str, Any] | None, assembled
    ) -> Used:
        far = "to" if str(branch["to_bus"]) == tie.neighbour_bus else "from"
        near = "from" if far == "to" else "to"
        p_near = float(branch[f"p_{near}_mw"])
        lossless = -p_near
        _forget(assembled, tie.id, f"p_{far}_mw")
        if point is not None:
            intensity = point.get("intensity_g_per_kwh")
            p_far = point.get("p_into_tie_mw")
            u_far = point.get("u_p_into_tie_mw") or 0.0
            method = "published"
            if p_far is None or float(p_far) + p_near < -FLOW_TOL_MW:  # not metered, or a negative loss
                p_far, u_far = lossless, LOSSLESS_RELATIVE_U * abs(lossless)
                assembled.estimates.append(Estimate("branch", tie.id, f"p_{far}_mw", "other end"))
            p_far = float(p_far)
            assembled.derived.append(
                Estimate("tie", tie.id, "intensity_g_per_kwh", f"published by {tie.neighbour}", "derived")
            )
        else:
            intensity, method = self._estimate(end, tie)
            p_far, u_far = lossless, LOSSLESS_RELATIVE_U * abs(lossless)
            assembled.estimates.append(Estimate("tie", tie.id, "intensity_g_per_kwh", method))
        branch[f"p_{far}_mw"] = p_far
        branch[f"u_p_{far}_mw"] = round(float(u_far), 6)
        assembled.uncertainty.setdefault(f"branches_{far}", {})[tie.id] = float(u_far)
        # the far end on a bus of its own: two ties meeting at one neighbour bus, one importing and one
        # exporting, must not mix our exported power into the import (the neighbour's bus balance does)
        element = TIE_PREFIX + tie.id
        branch[f"{far}_bus"] = element
        assembled.snapshot["buses"].append({"id": element})
        if p_far > FLOW_TOL_MW:  # power enters the tie at the neighbour's bus: an import
            assembled.snapshot["generators"].append(
                {
                    "id": element,
                    "bus": element,
                    "p_mw": p_far,
                    "u_p_mw": round(float(u_far), 6),
                    "intensity_g_per_kwh": 0.0 if intensity is None else float(intensity),
                }
            )
        elif p_far < -FLOW_TOL_MW:  # an export: delivered to the neighbour's bus
            assembled.snapshot["loads"].append(
                {"id": element, "bus": element, "p_mw": -p_far, "u_p_mw": round(float(u_far), 6)}
            )
        return Used(intensity, p_far, method)

    def _estimate(self, end: datetime, tie: TieConfig) -> tuple[float, str]:
        """The named estimate of a tie whose neighbour has not published the interval yet."""
        if tie.neighbour not in self._earlier:
            oldest = end - timedelta(seconds=self.config.last_known_max_age_s)
            with self.store.read() as connection:
                self._earlier[tie.neighbour] = connection.execute(
                    select(CascadeMessage.ts, CascadeMessage.payload)
                    .where(
                        CascadeMessage.direction == "in",
                        CascadeMessage.peer == tie.neighbour,
                        CascadeMessage.kind == KIND,
                        CascadeMessage.ts < end,
                        CascadeMessage.ts >= oldest,
                    )
                    .order_by(CascadeMessage.ts.desc(), CascadeMessage.id.desc())
                    .limit(50)
                ).all()
        for ts, payload in self._earlier[tie.neighbour]:
            point = _point(payload, tie.id)
            if point is not None and point.get("intensity_g_per_kwh") is not None:
                return float(point["intensity_g_per_kwh"]), f"{LAST_KNOWN} of {utc(ts).isoformat()}"
        return self.config.default_import_intensity_g_per_kwh, DEFAULT

    def latest(self, neighbour: str, ts: datetime) -> dict[str, Any] | None:
        """The newest version a neighbour published for the interval ending at ``ts``."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(CascadeMessage.payload).where(
                    CascadeMessage.direction == "in",
                    CascadeMessage.peer == neighbour,
                    CascadeMessage.kind == KIND,
                    CascadeMessage.ts == ts,
                )
                .order_by(CascadeMessage.id)
            ).scalars().all()  # fmt: skip
        # the highest version; of equal versions the last received
        order = max(range(len(rows)), key=lambda i: (int(rows[i].get("version", 1)), i), default=None)
        return None if order is None else rows[order]

    # -- publishing -----------------------------------------------------------------------------------
    def publish(self, end: datetime, intensities: Mapping[str, float | None], estimated: bool, version: int):
        """Each neighbour gets the interval's intensities at our tie buses (when they changed)."""
        snapshot = cstore.metered_snapshot(self.store, end, self.config.interval_s, self.level)
        if snapshot is None:
            log.warning("ties %s: no metered snapshot for %s", self.id, end.isoformat())
            return []
        branches = {str(b["id"]): b for b in snapshot.get("branches", [])}
        sent = []
        for neighbour in self.config.neighbours:
            points = []
            for tie in self.config.ties_of(neighbour.id):
                branch = branches.get(tie.id)
                if branch is None:
                    continue
                near = "from" if str(branch["from_bus"]) == tie.local_bus else "to"
                points.append(
                    TiePoint(
                        tie_id=tie.id,
                        bus=tie.local_bus,
                        neighbour_bus=tie.neighbour_bus,
                        intensity_g_per_kwh=intensities.get(tie.local_bus),
                        p_into_tie_mw=branch.get(f"p_{near}_mw"),
                        u_p_into_tie_mw=branch.get(f"u_p_{near}_mw"),
                        estimated=estimated,
                    )
                )
            if points and self._changed(neighbour.id, end, points, estimated):
                sent.append(self._send(neighbour.id, end, points, version))
        return sent

    def _changed(self, neighbour: str, end: datetime, points: list[TiePoint], estimated: bool) -> bool:
        last = cstore.find_message(self.store, "out", neighbour, KIND, end)
        if last is None:
            return True
        before = {p["tie_id"]: p for p in last.payload["ties"]}
        for point in points:
            old = before.get(point.tie_id)
            if old is None or bool(old.get("estimated")) != estimated:
                return True
            used = Used(old.get("intensity_g_per_kwh"), float(old.get("p_into_tie_mw") or 0.0), "published")
            if _moved(used, point.model_dump(), self.config, p_key="p_into_tie_mw"):
                return True
        return False

    def _send(self, neighbour: str, end: datetime, points: list[TiePoint], version: int) -> TieIntensities:
        document = TieIntensities(
            document_id=uuid.uuid4().hex,
            sender=self.id,
            recipient=neighbour,
            ts=end,
            interval_s=self.config.interval_s,
            version=max(version, 1),
            losses=self.config.losses,
            created_at=self.now(),
            ties=points,
        ).signed(self.key)
        payload = document.model_dump(mode="json")
        body = document.model_dump_json().encode("utf-8")
        if self.outbox is not None and self.config.neighbour(neighbour).url:
            self.outbox.append(neighbour, document.document_id, KIND, end.isoformat(), body)
        now = self.now()
        cstore.save_message(
            self.store,
            cstore.StoredMessage(
                document.document_id, "out", neighbour, KIND, end, payload, digest(_content(payload)), now
            ),
            self.config.interval_s,
            now,
        )
        self.wake(neighbour)
        return document

    # -- views ----------------------------------------------------------------------------------------
    def documents(self, direction: str, neighbour: str | None, since: datetime | None, limit: int = 1000):
        query = select(CascadeMessage.payload, CascadeMessage.received_at).where(
            CascadeMessage.kind == KIND, CascadeMessage.direction == direction
        )
        if neighbour is not None:
            query = query.where(CascadeMessage.peer == neighbour)
        if since is not None:
            query = query.where(CascadeMessage.ts >= since)
        with self.store.read() as connection:
            rows = connection.execute(query.order_by(CascadeMessage.ts, CascadeMessage.id).limit(limit)).all()
        return [payload for payload, _received in rows]

    def status(self) -> dict[str, Any]:
        neighbours = []
        for n in self.config.neighbours:
            with self.store.read() as connection:
                last = connection.execute(
                    select(func.max(CascadeMessage.ts)).where(
                        CascadeMessage.kind == KIND,
                        CascadeMessage.direction == "in",
                        CascadeMessage.peer == n.id,
                    )
                ).scalar_one_or_none()
            neighbours.append(
                {
                    "id": n.id,
                    "region": n.region,
                    "url": n.url,
                    "ties": [t.model_dump() for t in self.config.ties_of(n.id)],
                    "last_received_ts": None if last is None else utc(last).isoformat(),
                    "backlog": 0 if self.outbox is None else self.outbox.backlog(n.id),
                }
            )
        return {"center": self.id, "interval_s": self.config.interval_s, "neighbours": neighbours}

    # -- refusals -------------------------------------------------------------------------------------
    def _audit(self, action: str, document: TieIntensities | None, detail: str) -> None:
        record_audit(
            self.store,
            "ties",
            f"tie document {action}",
            None if document is None else document.sender,
            {
                "detail": detail,
                **(
                    {}
                    if document is None
                    else {"document_id": document.document_id, "ts": document.ts.isoformat()}
                ),
            },
        )

    def _refuse(self, document: TieIntensities | None, error: str, detail: str, status: int):
        self._audit(error, document, detail)
        refusal = TieRefusal(
            None if document is None else document.sender,
            error,
            detail,
            None if document is None else document.ts,
        )
        log.warning("%s", refusal.message())
        for listener in self.listeners:
            try:
                listener(refusal)
            except Exception:  # a listener's failure never hides the refusal
                log.exception("tie refusal listener failed")
        raise Refused(status, f"tie document {error}", detail)


def _content(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two documents the same: the interval, the version and the values, not id or signature."""
    return {k: payload[k] for k in ("sender", "recipient", "ts", "interval_s", "version", "losses", "ties")}


def _point(document: Mapping[str, Any], tie_id: str) -> dict[str, Any] | None:
    return next((p for p in document.get("ties", []) if p.get("tie_id") == tie_id), None)


def _moved(used: Used, point: Mapping[str, Any], config: TiesConfig, p_key: str = "p_into_tie_mw") -> bool:
    new_intensity = point.get("intensity_g_per_kwh")
    if (used.intensity_g_per_kwh is None) != (new_intensity is None):
        return True
    if new_intensity is not None and abs(float(new_intensity) - float(used.intensity_g_per_kwh)) > (
        config.remeter_threshold_g_per_kwh
    ):
        return True
    p_new = point.get(p_key)
    return p_new is not None and abs(float(p_new) - used.p_far_mw) > config.remeter_threshold_mw


def _forget(assembled: Assembled, branch_id: str, quantity: str) -> None:
    """Drop what the assembly said of the tie's far end (the neighbour meters it, not we)."""
    keep = lambda e: not (e.element_kind == "branch" and e.element_id == branch_id and e.quantity == quantity)  # noqa: E731
    assembled.estimates[:] = [e for e in assembled.estimates if keep(e)]
    assembled.derived[:] = [e for e in assembled.derived if keep(e)]


def _drop_unconnected(snapshot: dict[str, Any], buses: set[str]) -> None:
    """The neighbour's tie buses left without a branch or an element (their ties moved to own buses)."""
    used = {str(b[end]) for b in snapshot.get("branches", []) for end in ("from_bus", "to_bus")}
    used |= {str(e["bus"]) for k in ("generators", "loads", "storage") for e in snapshot.get(k, [])}
    snapshot["buses"] = [b for b in snapshot["buses"] if str(b["id"]) not in buses or str(b["id"]) in used]

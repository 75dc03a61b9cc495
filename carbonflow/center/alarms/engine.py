"""The alarm engine: rules evaluated as intervals are metered and as device status changes.

Three entry points, none of which looks at history beyond the interval just metered:

* :meth:`AlarmEngine.on_interval` — the metering loop's ``on_outcome``: every rule, over the interval's
  outcome, the last reading of each point inside that interval, the current device and collector state,
  the electric-carbon meter checks and reading conflicts that arrived since the last evaluation;
* :meth:`AlarmEngine.on_status` — ingest stored a collector message: the rows it changed are read back
  into the engine's field state, and when it held device statuses the device-state rules are evaluated
  over the current state (communication loss, clock offset, camera offline);
* :meth:`AlarmEngine.tick` — the scheduler's tick for time-based rules (a device silent for N seconds),
  over the current state only;
* :meth:`AlarmEngine.cascade_verdict` — the hook the cascade's verification calls.

The device, collector and camera state is kept in memory (:class:`~carbonflow.center.alarms.state.FieldState`:
loaded at start, updated by ``on_status``, ``on_image``); new meter checks and reading conflicts are read
only after ``on_meter_checks`` / ``on_status`` said some were stored — an interval reads no state.

Lifecycle per ``(rule, subject)``: the condition held in ``count`` of the last ``window`` evaluations →
one alarm is raised (never two active for the same key: more sightings count occurrences); ``clear_after``
clean evaluations in a row → cleared.  A key raised ``flap_raises`` times within ``flap_window_s`` is
*flapping*: its alarm is marked so, its notifications are suppressed and clearing needs three times the
clean evaluations.  An alarm at a site with a camera carries the site image nearest its raise time.
Raising and clearing queue notifications (``notify``); sending them is the notifier's job, in its own
thread — metering never waits on a mail server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonflow.center.alarms.checks import CAMERA_KINDS, Finding, Observed
from carbonflow.center.alarms.kinds import CHECKS, POINT_KINDS, STATE_KINDS
from carbonflow.center.alarms.rules import AlarmRule, default_rules, parse_rules, rules_document
from carbonflow.center.alarms.state import FieldState
from carbonflow.center.store import Store
from carbonflow.center.store import alarms as alarm_store

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # rule id, subject kind, subject id
NOBODY: frozenset[tuple[str, str]] = frozenset()
FLAP_HOLD = 3  # a flapping alarm needs this many times ``clear_after`` clean evaluations to clear


@dataclass
class Evaluation:
    """What one evaluation did, with its cost (``gather_ms``: what the checks are given — the interval's
    point values, state from memory or the store; ``rules_ms``: the checks)."""

    at: datetime
    trigger: str
    rules: int = 0
    findings: int = 0
    raised: list[int] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)
    gather_ms: float = 0.0
    rules_ms: float = 0.0
    rules_cpu_ms: float = 0.0  # the checks' CPU time (this thread): what they cost on a loaded machine
    apply_ms: float = 0.0
    error: str | None = None


class AlarmEngine:
    # clean findings are made for watched subjects only (an active alarm or a history: the only ones a
    # clean finding changes) and a history of clean sightings only is forgotten; False: every subject
    # and every history, as before (tests/test_alarm_findings.py: the very same alarms)
    only_watched = True
    # the device, collector and camera state in memory, kept by the hooks (on_status, on_image, and
    # on_meter_checks / on_status for meter checks and conflicts); False: read from the store at every
    # evaluation, as before (tests/test_alarm_state.py: the very same alarms)
    state_in_memory = True

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        rules: Iterable[AlarmRule] | None = None,
        channels: Iterable[str] = (),
        interval_s: int = 900,
        flap_raises: int = 3,
        flap_window_s: float = 1800.0,
    ) -> None:
        self.store = store
        self.interval_s = interval_s  # the metering interval: an outcome's readings are (end - it, end]
        self.clock = clock or (lambda: datetime.now(UTC))  # the field's time (simulated in the demo)
        self.wall_clock = wall_clock or (lambda: datetime.now(UTC))  # the center's own (receive times)
        self.channels = set(channels)  # configured notification channels; others are not queued
        self.flap_raises = flap_raises
        self.flap_window = timedelta(seconds=flap_window_s)
        self._lock = threading.RLock()
        self.rules: list[AlarmRule] = []
        self._memory: dict[str, dict] = {}
        self._history: dict[Key, deque[bool]] = {}
        self._clean: dict[Key, int] = {}
        self._raises: dict[Key, deque[datetime]] = {}
        self._flapping: set[Key] = set()
        self._active: dict[Key, int] = alarm_store.active_alarm_keys(store)
        # per rule, the subjects with an active alarm or a history: the only ones whose clean findings
        # change anything (the checks make clean findings for these only)
        self._watched: dict[str, set[tuple[str, str]]] = {}
        for key in self._active:
            self._watch(key)
        self._points: dict[str, dict[str, Any]] | None = None
        self._divisors: dict[str, float] = {}  # point id -> its scale as a float (1.0 without one)
        self._bus_region: dict[str, str] | None = None  # read again when a bus appears (topology change)
        self._topology_version = 0
        self._meter_check_id = alarm_store.last_meter_check_id(store)
        self._conflicts_after = alarm_store.latest_conflict_received(store)
        self._new_meter_checks = self._new_conflicts = False  # stored since they were last read
        self.field = FieldState(store) if self.state_in_memory else None
        self._verdicts: list[dict[str, Any]] = []
        self.last: Evaluation | None = None
        self.evaluations = 0
        stored = alarm_store.stored_rules(store)
        self.rules_source = "given" if rules is not None else "stored" if stored else "default"
        self._use(list(rules) if rules is not None else parse_rules(stored) if stored else default_rules())

    # -- rules --------------------------------------------------------------------------------------
    def _use(self, rules: list[AlarmRule]) -> None:
        with self._lock:
            old = {rule.id: rule for rule in self.rules}
            self.rules = rules
            for rule in rules:  # a changed rule starts afresh; an unchanged one keeps its state
                if old.get(rule.id) != rule:
                    self._memory[rule.id] = {}
                    for key in [k for k in self._history if k[0] == rule.id]:
                        del self._history[key]
                        self._unwatch(key)

    def set_rules(self, data: Any, actor: str | None = None) -> list[AlarmRule]:
        """Validate (a bad rule raises ``RuleError`` naming the field), store and use a rule set.
        Active alarms of rules that are gone or disabled are cleared."""
        rules = parse_rules(data)
        alarm_store.replace_rules(self.store, rules_document(rules), actor)
        self._use(rules)
        self.rules_source = "stored"
        wanted = {rule.id for rule in rules if rule.enabled}
        now = self.clock()
        with self._lock:
            for key, alarm_id in list(self._active.items()):
                if key[0] not in wanted:
                    alarm_store.clear_alarm(
                        self.store, alarm_id, now, note=f"rule {key[0]} removed or disabled"
                    )
                    del self._active[key]
                    self._unwatch(key)
        return rules

    def clear_by_hand(self, alarm_id: int, user: str, note: str | None = None) -> bool:
        """An operator clears an alarm (its condition must be seen again to raise a new one)."""
        alarm = alarm_store.get_alarm(self.store, alarm_id)  # NotFoundError for an unknown id
        text = f"cleared by {user}" + (f": {note}" if note else "")
        with self._lock:
            done = alarm_store.clear_alarm(self.store, alarm_id, self.clock(), note=text)
            for key, active_id in list(self._active.items()):
                if active_id == alarm_id:
                    del self._active[key]
                    self._history.pop(key, None)
                    self._unwatch(key)
        if done:
            rule = next((r for r in self.rules if r.id == alarm["rule"]), None)
            if rule is not None:
                key = (rule.id, alarm["subject"]["kind"], alarm["subject"]["id"])
                self._notify(rule, key, alarm_id, "cleared")
        return done

    def refresh_points(self) -> None:
        self._points = None
        self._bus_region = None

    # -- entry points -------------------------------------------------------------------------------
    def on_interval(self, outcome: Any) -> Evaluation:
        """Evaluate every rule for the interval just metered (the metering loop's ``on_outcome``)."""
        return self._guarded("interval", outcome.end, lambda e: self._interval(e, outcome))

    def on_status(
        self,
        *,
        collector_id: str | None = None,
        devices: Iterable[str] | None = None,
        statuses: bool = True,
        conflicts: int = 0,
    ) -> Evaluation | None:
        """Ingest stored a collector message (``carbonflow.center.ingest.receive``, after the commit): the
        rows of ``devices`` and of ``collector_id`` are read back (neither given: every row); reading
        conflicts among it are read at the next interval; device ``statuses`` among it: the
        device-state rules over the current state."""
        try:
            if self.field is not None:
                if collector_id is None and devices is None:
                    self.field.reload()
                else:
                    self.field.changed(devices or (), [collector_id] if collector_id else ())
        except Exception:  # the next message or a restart brings the state back; ingest goes on
            log.exception("alarm state: reading back the changed rows failed")
        if conflicts:
            self._new_conflicts = True
        return self.tick(trigger="status") if statuses else None

    def on_image(self, camera_id: str | None, ts: datetime | None) -> None:
        """A site image was stored (``ImageStore.listeners``): the camera's latest image time; images
        were purged (``None``): the state is read again."""
        if self.field is None:
            return
        try:
            if camera_id is None or ts is None:
                self.field.reload()
            else:
                self.field.image_stored(camera_id, ts)
        except Exception:  # never fails an image upload
            log.exception("alarm state: a stored image")

    def on_meter_checks(self, results: Iterable[Any] = ()) -> None:
        """Electric-carbon meter checks were stored (the maintenance scheduler): read at the next interval."""
        self._new_meter_checks = True

    def tick(self, now: datetime | None = None, *, trigger: str = "tick") -> Evaluation:
        """The scheduler's tick: time-based rules over the current device and collector state."""
        at = now or self.clock()
        return self._guarded(trigger, at, lambda e: self._state(e, at))

    def cascade_verdict(
        self, peer: str, status: str, detail: str | None = None, *, at: datetime | None = None,
        region: str | None = None,
    ) -> Evaluation:  # fmt: skip
        """A cascade verification verdict (``ok`` | ``mismatch`` | ``pending``) for a peer center."""
        verdict = {"peer": peer, "status": status, "detail": detail, "region": region}
        moment = at or self.clock()
        return self._guarded(
            "cascade",
            moment,
            lambda e: self._run(e, Observed(moment, cascade=[verdict]), ("cascade_mismatch",)),
        )

    # -- evaluation ---------------------------------------------------------------------------------
    def _guarded(self, trigger: str, at: datetime, body: Callable[[Evaluation], None]) -> Evaluation:
        evaluation = Evaluation(at, trigger)
        try:
            with self._lock:
                body(evaluation)
        except Exception as error:  # an alarm problem must never stop metering or ingest
            log.exception("alarm evaluation (%s) failed", trigger)
            evaluation.error = f"{type(error).__name__}: {error}"
        self.last = evaluation
        self.evaluations += 1
        return evaluation

    def _enabled(self, kinds: Iterable[str]) -> list[AlarmRule]:
        wanted = set(kinds)
        return [rule for rule in self.rules if rule.enabled and rule.kind in wanted]

    def _interval(self, evaluation: Evaluation, outcome: Any) -> None:
        started = time.perf_counter()
        rules = self._enabled(CHECKS)
        kinds = {rule.kind for rule in rules}
        observed = Observed(outcome.end, self.wall_clock(), outcome=outcome)
        self._gather_state(observed, kinds)
        needs_points = kinds & set(POINT_KINDS) or any(
            (rule.quantity or "").startswith("point.") for rule in rules
        )
        if needs_points:
            if self._points is None:
                self._read_points()
            start = outcome.end - timedelta(seconds=self.interval_s)
            raw = _last_per_point(getattr(outcome, "source_readings", None), start, outcome.end)
            if raw is None:  # an outcome without them (metered elsewhere): the store has them
                raw = alarm_store.interval_point_values(self.store, start, outcome.end)
            if not self._divisors.keys() >= raw.keys():  # a point registered since the catalogue was read
                self._read_points()
            observed.points = self._points or {}
            divisors, values, times = self._divisors, observed.point_values, observed.point_times
            shown = observed.point_shown
            for point_id, (ts, value) in raw.items():
                divisor = divisors.get(point_id)
                if divisor is not None:  # x / 1.0 == x exactly: the same value as without a scale
                    values[point_id] = float(value) / divisor
                    times[point_id] = ts
                    shown[point_id] = value
        if any((rule.quantity or "").startswith("bus.") for rule in rules):
            self._bus_regions(observed, outcome)
        if "meter_mismatch" in kinds and (self._new_meter_checks or self.field is None):
            self._new_meter_checks = False  # before the read: checks stored meanwhile set it again
            observed.meter_checks = alarm_store.meter_checks_after(self.store, self._meter_check_id)
            if observed.meter_checks:
                self._meter_check_id = observed.meter_checks[-1]["id"]
        if "tamper" in kinds and (self._new_conflicts or self.field is None):
            self._new_conflicts = False
            observed.conflicts = alarm_store.conflicts_after(self.store, self._conflicts_after)
            if observed.conflicts:
                self._conflicts_after = observed.conflicts[-1]["received_at"]
        evaluation.gather_ms = (time.perf_counter() - started) * 1000
        self._run(
            evaluation, observed, [k for k in CHECKS if k not in STATE_KINDS and k != "cascade_mismatch"]
        )
        # the device-state rules look at the state now (the interval's end is already past)
        now = Observed(max(self.clock(), outcome.end), observed.wall_at, devices=observed.devices)
        now.collectors, now.camera_images = observed.collectors, observed.camera_images
        self._run(evaluation, now, STATE_KINDS, add=True)

    def _read_points(self) -> None:
        self._points = alarm_store.point_catalogue(self.store)
        self._divisors = {
            point_id: float(point["scale"]) if point.get("scale") else 1.0
            for point_id, point in self._points.items()
        }

    def _bus_regions(self, observed: Observed, outcome: Any) -> None:
        buses = getattr(outcome, "intensities", None) or {}
        if self._bus_region is None or not self._bus_region.keys() >= buses.keys():
            self._bus_region = alarm_store.bus_regions(self.store)
            self._topology_version += 1  # region scopes of bus rules are worked out again
        observed.bus_region, observed.topology_version = self._bus_region, self._topology_version

    def _gather_state(self, observed: Observed, kinds: set[str]) -> None:
        if self.field is not None:  # in memory: nothing to read
            observed.devices, observed.device_region = self.field.devices(), self.field.device_region()
            if "camera_offline" in kinds:
                observed.camera_images = self.field.camera_images()
            if "collector_loss" in kinds:
                observed.collectors = self.field.collectors()
            return
        if kinds & {"comm_loss", "clock_offset", "camera_offline", "meter_mismatch"} or kinds & set(
            POINT_KINDS
        ):
            observed.devices = alarm_store.device_states(self.store)
            observed.device_region = {d["id"]: d.get("region") for d in observed.devices}
        if "camera_offline" in kinds and observed.devices:
            cameras = [d["id"] for d in observed.devices if d.get("kind") in CAMERA_KINDS]
            observed.camera_images = alarm_store.latest_images(self.store, cameras)
        if "collector_loss" in kinds:
            observed.collectors = alarm_store.collector_states(self.store)

    def _state(self, evaluation: Evaluation, at: datetime) -> None:
        started = time.perf_counter()
        observed = Observed(at, self.wall_clock())
        self._gather_state(observed, {rule.kind for rule in self._enabled(STATE_KINDS)})
        evaluation.gather_ms = (time.perf_counter() - started) * 1000
        self._run(evaluation, observed, STATE_KINDS)

    def evaluate(self, observed: Observed, kinds: Iterable[str] = tuple(CHECKS)) -> Evaluation:
        """Evaluate the rules of ``kinds`` over given observations (tests, the benchmark)."""
        return self._guarded("given", observed.at, lambda e: self._run(e, observed, kinds))

    def _run(
        self, evaluation: Evaluation, observed: Observed, kinds: Iterable[str], *, add: bool = False
    ) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        rules = self._enabled(kinds)
        found: list[tuple[AlarmRule, Finding]] = []
        for rule in rules:
            memory = self._memory.setdefault(rule.id, {})
            watched = self._watched.get(rule.id, NOBODY) if self.only_watched else None
            found.extend((rule, finding) for finding in CHECKS[rule.kind](rule, observed, memory, watched))
        checked, cpu = time.perf_counter(), time.thread_time() - cpu
        for rule, finding in found:
            self._apply(rule, finding, observed, evaluation)
        applied = time.perf_counter()
        if not add:
            evaluation.rules = evaluation.findings = 0
            evaluation.rules_ms = evaluation.apply_ms = evaluation.rules_cpu_ms = 0.0
        evaluation.rules += len(rules)
        evaluation.findings += len(found)
        evaluation.rules_ms += (checked - started) * 1000
        evaluation.rules_cpu_ms += cpu * 1000
        evaluation.apply_ms += (applied - checked) * 1000

    # -- lifecycle ----------------------------------------------------------------------------------
    def _apply(self, rule: AlarmRule, finding: Finding, observed: Observed, evaluation: Evaluation) -> None:
        key = (rule.id, finding.subject_kind, finding.subject_id)
        history = self._history.get(key)
        if not finding.bad and history is None and key not in self._active:
            return  # the common case: nothing wrong, nothing remembered
        if history is None or history.maxlen != rule.window:
            history = self._history[key] = deque(history or (), maxlen=rule.window)
            self._watch(key)
        history.append(finding.bad)
        alarm_id = self._active.get(key)
        if alarm_id is None:
            if finding.bad and sum(history) >= rule.count:
                evaluation.raised.append(self._raise(rule, key, finding, observed))
            elif self.only_watched and not any(history):  # only clean sightings: the same as none
                del self._history[key]
                self._unwatch(key)
            return
        if finding.bad:
            self._clean[key] = 0
            alarm_store.touch_alarm(self.store, alarm_id, observed.at, finding.message, finding.value)
            return
        self._clean[key] = self._clean.get(key, 0) + 1
        needed = rule.clear_after * (FLAP_HOLD if key in self._flapping else 1)
        if self._clean[key] >= needed:
            alarm_store.clear_alarm(self.store, alarm_id, observed.at)
            del self._active[key]
            self._clean.pop(key, None)
            del self._history[key]  # nothing remembered: as if never seen
            self._unwatch(key)
            evaluation.cleared.append(alarm_id)
            self._notify(rule, key, alarm_id, "cleared")

    def _watch(self, key: Key) -> None:
        self._watched.setdefault(key[0], set()).add((key[1], key[2]))

    def _unwatch(self, key: Key) -> None:
        """Stop watching a key that has neither an active alarm nor a history."""
        if key not in self._active and key not in self._history:
            self._watched.get(key[0], set()).discard((key[1], key[2]))

    def _raise(self, rule: AlarmRule, key: Key, finding: Finding, observed: Observed) -> int:
        raises = self._raises.setdefault(key, deque(maxlen=self.flap_raises))
        raises.append(observed.at)
        flapping = len(raises) >= self.flap_raises and observed.at - raises[0] <= self.flap_window
        if flapping:
            self._flapping.add(key)
        else:
            self._flapping.discard(key)
        values: dict[str, Any] = {
            "rule_id": rule.id,
            "kind": rule.kind,
            "severity": rule.severity,
            "subject_kind": finding.subject_kind,
            "subject_id": finding.subject_id,
            "region": finding.region,
            "raised_at": observed.at,
            "message": finding.message,
            "value": finding.value,
            "flapping": flapping,
            "detail": {"description": rule.description} if rule.description else None,
        }
        image = self._image_for(finding, observed)
        if image is not None:
            values.update(image_camera=image["camera"], image_ts=image["ts"], image_key=image["key"])
        alarm_id = alarm_store.insert_alarm(self.store, values)
        self._active[key] = alarm_id
        self._watch(key)
        self._clean[key] = 0
        if not flapping:
            self._notify(rule, key, alarm_id, "raised")
        return alarm_id

    def _image_for(self, finding: Finding, observed: Observed) -> dict[str, Any] | None:
        if finding.subject_kind == "camera":
            cameras = [finding.subject_id]
        elif finding.bus:
            devices = observed.devices
            if devices is None:
                devices = observed.devices = (
                    self.field.devices() if self.field is not None else alarm_store.device_states(self.store)
                )
            cameras = [
                d["id"] for d in devices if d.get("kind") == "camera" and d.get("bus_id") == finding.bus
            ]
        else:
            return None
        return alarm_store.nearest_image(self.store, cameras, observed.at) if cameras else None

    def _notify(self, rule: AlarmRule, key: Key, alarm_id: int, event: str) -> None:
        channels = [name for name in rule.notify if name in self.channels]
        if not channels or key in self._flapping:
            return
        alarm = alarm_store.get_alarm(self.store, alarm_id)
        alarm_store.queue_notifications(self.store, alarm_id, event, channels, _jsonable(alarm))

    # -- views --------------------------------------------------------------------------------------
    def rules_document(self) -> list[dict[str, Any]]:
        return rules_document(self.rules)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _last_per_point(readings: list | None, start: datetime, end: datetime) -> dict[str, tuple] | None:
    """The last reading of every point with ``start < ts <= end`` among what the interval was metered
    from (``store.alarms.interval_point_values`` without reading the store again)."""
    if readings is None:
        return None
    by_columns = getattr(readings, "last_per_point", None)  # metering's columns find them by their times
    if by_columns is not None:
        return by_columns(start, end)
    latest: dict[str, tuple] = {}
    for reading in readings:
        ts = reading.ts
        if start < ts <= end and reading.value is not None:
            held = latest.get(reading.point_id)
            if held is None or ts > held[0]:
                latest[reading.point_id] = (ts, reading.value)
    return latest

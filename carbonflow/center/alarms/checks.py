"""The checks behind each rule kind: plain functions over one evaluation's observations.

Each ``check_<kind>(rule, observed, memory)`` returns :class:`Finding` s — one per subject it looked at,
``bad`` or not (a subject it could not look at this time, e.g. a point without a reading, gives none and
keeps its state).  ``memory`` is the rule's own small state between evaluations (previous values for a
rate of change, the last values of a point for a stuck value, a register's increments for a jump);
nothing here reads the store, so tests and the cascade reuse the checks as they are.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from carbonflow.center.alarms.rules import AlarmRule

CAMERA_KINDS = ("camera",)


@dataclass(slots=True)
class Finding:
    subject_kind: str  # device | collector | bus | center | camera | meter
    subject_id: str
    bad: bool
    message: str = ""
    value: float | None = None
    region: str | None = None
    bus: str | None = None  # where the subject is: a site camera there gives the alarm its image


@dataclass
class Observed:
    """What one evaluation sees: the interval just metered (if any) and the current state."""

    at: datetime
    wall_at: datetime | None = None  # wall clock: collectors' last_seen is the center's receive time
    outcome: Any | None = None  # carbonflow.center.metering.service.IntervalOutcome
    devices: list[dict[str, Any]] | None = None  # current device rows (store.alarms.device_states)
    collectors: list[dict[str, Any]] | None = None
    points: dict[str, dict[str, Any]] = field(default_factory=dict)  # point id -> device, element, ...
    point_values: dict[str, float] = field(default_factory=dict)  # point id -> last value, §3 unit
    point_times: dict[str, datetime] = field(default_factory=dict)  # point id -> ts of that value
    point_resolution: dict[str, float] = field(default_factory=dict)  # one step of the shown digits
    point_shown: dict[str, Decimal] = field(default_factory=dict)  # point id -> the value as shown
    camera_images: dict[str, datetime] = field(default_factory=dict)  # camera -> latest image ts
    bus_region: dict[str, str] = field(default_factory=dict)
    device_region: dict[str, str | None] = field(default_factory=dict)
    meter_checks: list[dict[str, Any]] = field(default_factory=list)  # new electric-carbon meter checks
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # new reading conflicts
    cascade: list[dict[str, Any]] = field(default_factory=list)  # verdicts {peer, status, detail}
    _by_quantity: dict[str, list[tuple[str, dict[str, Any], float]]] | None = None

    def resolution(self, point_id: str) -> float:
        """One step of the digits the point's value was shown with, in §3 units (worked out on demand:
        few rules need it, and every point has a value)."""
        step = self.point_resolution.get(point_id)
        if step is None:
            shown = self.point_shown.get(point_id)
            step = 0.0
            if shown is not None and shown.is_finite():
                scale = (self.points.get(point_id) or {}).get("scale")
                exact = Decimal(1).scaleb(shown.as_tuple().exponent)
                step = float(exact / scale if scale else exact)
            self.point_resolution[point_id] = step
        return step

    def values_of(self, quantities: Iterable[str] | None) -> list[tuple[str, dict[str, Any], float]]:
        """``(point id, point, value)`` of this evaluation's readings of the given quantities (all: None)."""
        if self._by_quantity is None:
            self._by_quantity = {}
            for point_id, value in self.point_values.items():
                point = self.points.get(point_id)
                if point is not None:
                    self._by_quantity.setdefault(point["quantity"], []).append((point_id, point, value))
        if quantities is None:
            return [item for items in self._by_quantity.values() for item in items]
        return [item for quantity in quantities for item in self._by_quantity.get(quantity, ())]


# --- scope ---------------------------------------------------------------------------------------------


def _in_region(region: str | None, prefix: str | None) -> bool:
    if not prefix:
        return True
    prefix = prefix.rstrip("/")
    return region is not None and (region == prefix or region.startswith(prefix + "/"))


def device_in_scope(rule: AlarmRule, device: dict[str, Any]) -> bool:
    scope = rule.scope
    if scope.device_kind and not fnmatch.fnmatchcase(str(device.get("kind") or ""), scope.device_kind):
        return False
    if scope.devices and not any(fnmatch.fnmatchcase(str(device["id"]), p) for p in scope.devices):
        return False
    return _in_region(device.get("region"), scope.region)


def point_in_scope(
    rule: AlarmRule, point: dict[str, Any], observed: Observed, memory: dict | None = None
) -> bool:
    """Whether a point is in the rule's scope; remembered per point in ``memory`` (scopes are static)."""
    if memory is not None:
        known = memory.setdefault("in_scope", {})
        if point["id"] not in known:
            known[point["id"]] = point_in_scope(rule, point, observed)
        return known[point["id"]]
    scope = rule.scope
    if scope.element_kinds and point["element_kind"] not in scope.element_kinds:
        return False
    device = {"id": point["device_id"], "kind": point.get("device_kind"), "region": point.get("region")}
    return device_in_scope(rule, device)


def _device_finding(
    device: dict[str, Any], bad: bool, message: str, value: float | None = None, kind="device"
):
    return Finding(kind, str(device["id"]), bad, message, value, device.get("region"), device.get("bus_id"))


def _age_s(observed: Observed, moment: datetime | None) -> float | None:
    return None if moment is None else (observed.at - moment).total_seconds()


# --- device and collector state -----------------------------------------------------------------------


def check_comm_loss(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    for device in observed.devices or []:
        if device.get("kind") in CAMERA_KINDS or not device_in_scope(rule, device):
            continue
        age = _age_s(observed, device.get("last_seen"))
        if age is None and not device.get("error"):
            continue  # registered, never polled yet: nothing was lost
        offline = device.get("online") is False
        silent = age is not None and age > (rule.after_s or 0)
        reason = (
            f"reported offline ({device.get('error') or 'no answer'})"
            if offline
            else f"silent for {age:.0f} s"
            if silent
            else ""
        )
        yield _device_finding(device, offline or silent, f"device {device['id']}: {reason}", age)


def check_camera_offline(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    for device in observed.devices or []:
        if device.get("kind") not in CAMERA_KINDS or not device_in_scope(rule, device):
            continue
        seen = [t for t in (device.get("last_seen"), observed.camera_images.get(device["id"])) if t]
        age = _age_s(observed, max(seen)) if seen else None
        if age is None and not device.get("error"):
            continue
        offline = device.get("online") is False or (age is not None and age > (rule.after_s or 0))
        text = f"camera {device['id']}: offline" + (
            f", last image {age:.0f} s ago" if age is not None else ""
        )
        yield _device_finding(device, offline, text, age, kind="camera")


def check_clock_offset(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    for device in observed.devices or []:
        offset = device.get("clock_offset_s")
        if offset is None or not device_in_scope(rule, device):
            continue
        bad = abs(offset) > (rule.tolerance or 0)
        yield _device_finding(device, bad, f"device {device['id']}: clock {offset:+.1f} s off", float(offset))


def check_collector_loss(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    for collector in observed.collectors or []:
        if not _in_region(collector.get("region"), rule.scope.region):
            continue
        last = collector.get("last_seen")
        if last is None:
            continue
        age = ((observed.wall_at or observed.at) - last).total_seconds()
        bad = age > (rule.after_s or 0)
        text = f"collector {collector['id']}: silent for {age:.0f} s"
        yield Finding("collector", str(collector["id"]), bad, text, age, collector.get("region"))


# --- the metered interval -----------------------------------------------------------------------------


def _center(observed: Observed, bad: bool, message: str, value: float | None = None) -> Finding:
    return Finding("center", "metering", bad, message, value)


def check_data_gap(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    outcome = observed.outcome
    if outcome is None:
        return
    end = outcome.end.isoformat()
    if not outcome.stored:
        yield _center(
            observed, True, f"interval ending {end} not metered: {outcome.error}", outcome.completeness
        )
        return
    low = rule.min_completeness is not None and outcome.completeness < rule.min_completeness
    many = rule.max_estimates is not None and outcome.estimates > rule.max_estimates
    text = (
        f"interval ending {end}: {outcome.completeness:.1%} of inputs measured, {outcome.estimates} estimated"
    )
    yield _center(observed, low or many, text, outcome.completeness)


def check_balance_residual(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    outcome = observed.outcome
    if outcome is None or not outcome.stored:
        return
    generation = abs(outcome.totals.get("generation_carbon_t_per_h") or 0.0)
    residual = abs(outcome.totals.get("residual_t_per_h") or 0.0)
    share = residual / generation if generation else 0.0
    text = f"carbon balance residual {residual:.4f} t/h = {share:.3%} of generation"
    yield _center(observed, share > (rule.tolerance or 0), text, share)


# a subject of a quantity: (kind, id, region, bus, label); label is text, or (point id, quantity, point)
Subject = tuple[str, str, str | None, str | None, Any]


def _label(label: Any) -> str:
    if isinstance(label, str):
        return label
    point_id, name, point = label
    end = f" ({point['end']} end)" if point.get("end") not in (None, "-") else ""
    return f"{point_id} {name} of {point['element_kind']} {point['element_id']}{end}"


def quantity_values(
    rule: AlarmRule, observed: Observed, memory: dict | None = None
) -> dict[tuple[str, ...], tuple[float, Subject]]:
    """``(subject kind, id[, point]) -> (value, subject)`` of a rule's ``quantity`` this evaluation."""
    quantity = rule.quantity or ""
    outcome = observed.outcome
    found: dict[tuple[str, ...], tuple[float, Subject]] = {}
    name = quantity.split(".", 1)[1]
    if quantity.startswith("point."):
        known = {} if memory is None else memory.setdefault("in_scope", {})
        for point_id, point, value in observed.values_of((name,)):
            inside = known.get(point_id)
            if inside is None:
                inside = known[point_id] = point_in_scope(rule, point, observed)
            if inside:
                device = point["device_id"]
                subject = (
                    "device",
                    device,
                    point.get("region"),
                    point.get("bus_id"),
                    (point_id, name, point),
                )
                found[("device", device, point_id)] = (value, subject)
        return found
    if outcome is None or not outcome.stored:
        return found
    if quantity.startswith("bus."):
        values = outcome.intensities if name == "intensity_g_per_kwh" else outcome.bands
        buses = set(rule.scope.buses)
        for bus, value in values.items():
            if value is None or (buses and bus not in buses):
                continue
            region = observed.bus_region.get(bus)
            if rule.scope.region and not _in_region(region, rule.scope.region):
                continue
            found[("bus", bus)] = (float(value), ("bus", bus, region, bus, f"bus {bus} {name}"))
    else:
        value = {
            "interval.completeness": outcome.completeness,
            "interval.estimates": outcome.estimates,
        }.get(quantity, outcome.totals.get(name) if quantity.startswith("totals.") else None)
        if value is not None:
            label = f"total {name}" if quantity.startswith("totals.") else name
            found[("center", "metering")] = (float(value), ("center", "metering", None, None, label))
    return found


def _finding(subject: Subject, bad: bool, message: str = "", value: float | None = None) -> Finding:
    kind, ident, region, bus, _ = subject
    return Finding(kind, ident, bad, message, value, region, bus)


def _worst_per_subject(findings: Iterator[Finding]) -> Iterator[Finding]:
    """One finding per subject (a device with several points): a bad one if any."""
    chosen: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        key = (finding.subject_kind, finding.subject_id)
        if key not in chosen or (finding.bad and not chosen[key].bad):
            chosen[key] = finding
    yield from chosen.values()


def check_threshold(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    above_limit, below_limit = rule.above, rule.below

    def each() -> Iterator[Finding]:
        for value, subject in quantity_values(rule, observed, memory).values():
            shown = abs(value) if rule.absolute else value
            above = above_limit is not None and shown > above_limit
            below = below_limit is not None and shown < below_limit
            if not (above or below):
                yield _finding(subject, False, value=value)
                continue
            limit = f"above {above_limit:g}" if above else f"below {below_limit:g}"
            yield _finding(subject, True, f"{_label(subject[4])} = {value:g}: {limit}", value)

    return _worst_per_subject(each())


def check_rate_of_change(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    previous: dict = memory.setdefault("previous", {})

    def each() -> Iterator[Finding]:
        for key, (value, subject) in quantity_values(rule, observed, memory).items():
            before = previous.get(key)
            previous[key] = value
            if before is None:
                continue
            change = value - before
            percent = abs(change) / abs(before) * 100 if before else (0.0 if change == 0 else float("inf"))
            bad = (rule.max_change is not None and abs(change) > rule.max_change) or (
                rule.max_change_percent is not None and percent > rule.max_change_percent
            )
            if not bad:
                yield _finding(subject, False, value=change)
                continue
            text = f"{_label(subject[4])} changed {before:g} → {value:g} ({change:+g}, {percent:.0f} %)"
            yield _finding(subject, True, text, change)

    return _worst_per_subject(each())


def _point_series(
    rule: AlarmRule, observed: Observed, memory: dict
) -> Iterator[tuple[str, dict[str, Any], float]]:
    known = memory.setdefault("in_scope", {})
    for point_id, point, value in observed.values_of(rule.quantities or None):
        inside = known.get(point_id)
        if inside is None:
            inside = known[point_id] = point_in_scope(rule, point, observed)
        if inside:
            yield point_id, point, value


def _point_finding(point: dict[str, Any], bad: bool, message: str, value: float | None) -> Finding:
    return Finding(
        "device", point["device_id"], bad, message, value, point.get("region"), point.get("bus_id")
    )


def check_stuck_value(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    """A value that keeps exactly the same non-zero reading for ``intervals`` intervals in a row (a live
    measurement always moves a little; a frozen transducer or a hung device does not).

    ``same_value`` (the default): only intervals that brought a reading of the point count; one without
    (data still on its way, a device offline: other rules' business) neither counts nor breaks the run,
    so late delivery never looks stuck.  Devices that report on change only need ``same_value = false``:
    then a point of an online device that brought no new reading counts as repeating its last value."""
    history: dict[str, deque] = memory.setdefault("history", {})
    points: dict[str, dict[str, Any]] = memory.setdefault("points", {})
    current = {point_id: (point, value) for point_id, point, value in _point_series(rule, observed, memory)}
    quiet: dict[str, int] = memory.setdefault("quiet", {})  # intervals in a row without a new reading
    for point_id in current:
        quiet[point_id] = 0
    if not rule.same_value:
        online = {d["id"] for d in observed.devices or [] if d.get("online")}
        for point_id in history.keys() - current.keys():
            if points[point_id]["device_id"] in online and history[point_id]:
                current[point_id] = (points[point_id], history[point_id][-1])
                quiet[point_id] = quiet.get(point_id, 0) + 1
    by_device: dict[str, tuple[bool, str, float, dict]] = {}
    needed = rule.intervals
    for point_id, (point, value) in current.items():
        if rule.same_value and not _shown_finely(rule, observed, point_id, value):
            continue
        seen = history.get(point_id)
        if seen is None:
            points[point_id] = point
            seen = history[point_id] = deque(maxlen=needed)
        seen.append(value)
        if len(seen) < needed:
            continue
        if rule.same_value:
            stuck = value != 0 and seen.count(value) == needed
        else:  # only points that brought no new reading (time tags stopped) while the device is online
            stuck = value != 0 and quiet.get(point_id, 0) >= needed
        text = f"{point_id} {point['quantity']} stuck at {value:g} for {rule.intervals} intervals" + (
            "" if rule.same_value else " (no new reading)"
        )
        device = point["device_id"]
        if device not in by_device or (stuck and not by_device[device][0]):
            by_device[device] = (stuck, text if stuck else f"{device}: values move", value, point)
    for stuck, text, value, point in by_device.values():
        yield _point_finding(point, stuck, text, value)


def _shown_finely(rule: AlarmRule, observed: Observed, point_id: str, value: float) -> bool:
    """Whether the point's display is fine enough for a live value to move between intervals."""
    if rule.max_step_share is None or value == 0:
        return True
    step = observed.resolution(point_id)
    return step <= rule.max_step_share * abs(value)


def check_tamper(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    """Register jumps: an increase of more than ``ratio`` × what the register's own average rate
    (since it was first seen, or since its last jump) gives for the time between the readings, plus
    ``min_jump`` and two steps of its resolution (a meter showing secondary values behind a CT moves in
    coarse steps); or a register running backwards by more than two steps.  A device back after an
    outage catches up at its rate: no jump.  The alarm holds while the jump is outstanding and clears
    when the register comes back by it (the tampering ended); a reading offered again with another
    value is a tamper signal of its own."""
    base: dict[str, tuple[float, datetime]] = memory.setdefault("base", {})
    last: dict[str, tuple[float, datetime]] = memory.setdefault("last", {})
    outstanding: dict[str, float] = memory.setdefault("outstanding", {})
    by_device: dict[str, Finding] = {}
    for point_id, point, value in _point_series(rule, observed, memory):
        ts = observed.point_times.get(point_id, observed.at)
        before, before_ts = last.get(point_id, (None, None))
        if before is None:
            base[point_id] = last[point_id] = (value, ts)
            continue
        if ts <= before_ts:
            continue
        last[point_id] = (value, ts)
        step = value - before
        first, first_ts = base[point_id]
        span_h = (before_ts - first_ts).total_seconds() / 3600
        rate = (before - first) / span_h if span_h > 0 else None  # per hour
        recent = memory.setdefault("recent", {}).get(point_id)  # the previous step's rate: ramps
        if rate is not None and recent is not None:
            rate = max(rate, recent)
        hours = (ts - before_ts).total_seconds() / 3600
        memory["recent"][point_id] = step / hours
        expected = None if rate is None else max(rate, 0.0) * hours
        quantum = 2 * observed.resolution(point_id)
        text = ""
        if step < -quantum:
            if outstanding.get(point_id, 0.0) > 0 and abs(step) >= 0.5 * outstanding[point_id]:
                outstanding[point_id] = 0.0  # came back: the tampering ended
                base[point_id] = (value, ts)
            else:
                text = f"{point_id} {point['quantity']} ran backwards by {-step:g}"
        elif expected is not None and step > rule.ratio * expected + rule.min_jump + quantum:
            outstanding[point_id] = step - expected
            base[point_id] = (value, ts)  # the rate goes on from after the jump
            text = f"{point_id} {point['quantity']} jumped by {step:g} (about {expected:g} expected)"
        if not text and outstanding.get(point_id, 0.0) > 0:
            text = f"{point_id} {point['quantity']} still {outstanding[point_id]:g} above its usual course"
        finding = _point_finding(
            point, bool(text), text or f"{point['device_id']}: registers plausible", step
        )
        if point["device_id"] not in by_device or finding.bad:
            by_device[point["device_id"]] = finding
    for conflict in observed.conflicts:
        point = observed.points.get(conflict["point_id"])
        if point is None or not point_in_scope(rule, point, observed, memory):
            continue
        text = (
            f"{conflict['point_id']} at {conflict['ts'].isoformat()}: offered {conflict['offered_value']} "
            f"again, {conflict['stored_value']} stored"
        )
        by_device[point["device_id"]] = _point_finding(point, True, text, None)
    yield from by_device.values()


def check_meter_mismatch(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    latest: dict[str, dict[str, Any]] = {}
    for check in observed.meter_checks:
        if check["status"] in ("ok", "mismatch"):
            latest[check["device_id"]] = check  # the newest verdict per meter counts
    for device_id, check in latest.items():
        region = observed.device_region.get(device_id)
        if not _in_region(region, rule.scope.region):
            continue
        deviation = None if check.get("deviation_kg") is None else float(Decimal(check["deviation_kg"]))
        text = f"meter {device_id}: {check['status']}" + (
            f", shows {deviation:+g} kg against the platform" if deviation is not None else ""
        )
        yield Finding("meter", device_id, check["status"] == "mismatch", text, deviation, region)


def check_cascade_mismatch(rule: AlarmRule, observed: Observed, memory: dict) -> Iterator[Finding]:
    for verdict in observed.cascade:
        bad = verdict.get("status") == "mismatch"
        text = f"cascade peer {verdict['peer']}: {verdict.get('status')}" + (
            f" ({verdict['detail']})" if verdict.get("detail") else ""
        )
        yield Finding("center", str(verdict["peer"]), bad, text, None, verdict.get("region"))


CHECKS: dict[str, Callable[[AlarmRule, Observed, dict], Iterator[Finding]]] = {
    "threshold": check_threshold,
    "rate_of_change": check_rate_of_change,
    "comm_loss": check_comm_loss,
    "collector_loss": check_collector_loss,
    "data_gap": check_data_gap,
    "stuck_value": check_stuck_value,
    "balance_residual": check_balance_residual,
    "meter_mismatch": check_meter_mismatch,
    "clock_offset": check_clock_offset,
    "camera_offline": check_camera_offline,
    "tamper": check_tamper,
    "cascade_mismatch": check_cascade_mismatch,
}
STATE_KINDS = ("comm_loss", "collector_loss", "clock_offset", "camera_offline")  # current state only
POINT_KINDS = ("stuck_value", "tamper")

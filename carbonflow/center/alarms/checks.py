"""The checks behind each rule kind: plain functions over one evaluation's observations.

Each ``check_<kind>(rule, observed, memory, watched)`` returns :class:`Finding` s: one per subject it
found ``bad``, and one per subject of ``watched`` it looked at and found clean (a subject it could not look
at this time, e.g. a point without a reading, gives none and keeps its state).  ``watched`` holds the
``(subject kind, id)`` the engine remembers for the rule (an active alarm, or bad sightings counting
towards one): a clean finding of any other subject would change nothing, so it is not made — on the
104-node grid that is some 1,500 findings per interval.  ``watched=None``: a finding for every subject.
``memory`` is the rule's own small state between evaluations (previous values for a rate of change, the
last values of a point for a stuck value, a register's increments for a jump);
nothing here reads the store, so tests and the cascade reuse the checks as they are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from carbonflow.center.alarms.rules import AlarmRule

CAMERA_KINDS = ("camera",)
Watched = Container[tuple[str, str]] | None  # (subject kind, id) the engine remembers for a rule


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
    bus_region: dict[str, str] = field(default_factory=dict)  # bus id -> region path
    topology_version: int | None = None  # changes with bus_region (None: scopes are not cached)
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
                step = _step(_exponent(shown), scale)
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
        if len(quantities := tuple(quantities)) == 1:
            return self._by_quantity.get(quantities[0], [])  # not to be changed by the caller
        return [item for quantity in quantities for item in self._by_quantity.get(quantity, ())]


def _exponent(shown: Decimal) -> int:
    """The exponent of a finite Decimal's last digit (``as_tuple().exponent``, from its text: faster)."""
    text = str(shown)
    if "E" in text:
        return int(shown.as_tuple().exponent)
    dot = text.find(".")
    return 0 if dot < 0 else dot + 1 - len(text)


_STEPS: dict[tuple[int, Any], float] = {}


def _step(exponent: int, scale: Any) -> float:
    """One step of the last digit, 10^exponent, divided by the point's scale (kept per pair)."""
    step = _STEPS.get((exponent, scale))
    if step is None:
        exact = Decimal(1).scaleb(exponent)
        step = _STEPS[(exponent, scale)] = float(exact / scale if scale else exact)
    return step


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


def check_comm_loss(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    for device in observed.devices or []:  # the scope is looked at only for what would be reported
        if device.get("kind") in CAMERA_KINDS:
            continue
        age = _age_s(observed, device.get("last_seen"))
        if age is None and not device.get("error"):
            continue  # registered, never polled yet: nothing was lost
        offline = device.get("online") is False
        silent = age is not None and age > (rule.after_s or 0)
        if not wanted(offline or silent, watched, "device", str(device["id"])):
            continue
        if not device_in_scope(rule, device):
            continue
        reason = (
            f"reported offline ({device.get('error') or 'no answer'})"
            if offline
            else f"silent for {age:.0f} s"
            if silent
            else ""
        )
        yield _device_finding(device, offline or silent, f"device {device['id']}: {reason}", age)


def check_camera_offline(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    for device in observed.devices or []:
        if device.get("kind") not in CAMERA_KINDS:
            continue
        seen = [t for t in (device.get("last_seen"), observed.camera_images.get(device["id"])) if t]
        age = _age_s(observed, max(seen)) if seen else None
        if age is None and not device.get("error"):
            continue
        offline = device.get("online") is False or (age is not None and age > (rule.after_s or 0))
        if not wanted(offline, watched, "camera", str(device["id"])) or not device_in_scope(rule, device):
            continue
        text = f"camera {device['id']}: offline" + (
            f", last image {age:.0f} s ago" if age is not None else ""
        )
        yield _device_finding(device, offline, text, age, kind="camera")


def check_clock_offset(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    for device in observed.devices or []:
        offset = device.get("clock_offset_s")
        if offset is None:
            continue
        bad = abs(offset) > (rule.tolerance or 0)
        if wanted(bad, watched, "device", str(device["id"])) and device_in_scope(rule, device):
            yield _device_finding(
                device, bad, f"device {device['id']}: clock {offset:+.1f} s off", float(offset)
            )


def check_collector_loss(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    for collector in observed.collectors or []:
        if not _in_region(collector.get("region"), rule.scope.region):
            continue
        last = collector.get("last_seen")
        if last is None:
            continue
        age = ((observed.wall_at or observed.at) - last).total_seconds()
        bad = age > (rule.after_s or 0)
        if not wanted(bad, watched, "collector", str(collector["id"])):
            continue
        text = f"collector {collector['id']}: silent for {age:.0f} s"
        yield Finding("collector", str(collector["id"]), bad, text, age, collector.get("region"))


# --- the metered interval -----------------------------------------------------------------------------


def _center(bad: bool, message: str, value: float | None = None) -> Finding:
    return Finding("center", "metering", bad, message, value)


def wanted(bad: bool, watched: Watched, kind: str, ident: str) -> bool:
    """Whether a finding is worth making: a bad one always, a clean one only of a watched subject."""
    return bad or watched is None or (bool(watched) and (kind, ident) in watched)


def check_data_gap(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    outcome = observed.outcome
    if outcome is None:
        return
    end = outcome.end.isoformat()
    if not outcome.stored:
        yield _center(True, f"interval ending {end} not metered: {outcome.error}", outcome.completeness)
        return
    low = rule.min_completeness is not None and outcome.completeness < rule.min_completeness
    many = rule.max_estimates is not None and outcome.estimates > rule.max_estimates
    if wanted(low or many, watched, "center", "metering"):
        text = (
            f"interval ending {end}: {outcome.completeness:.1%} of inputs measured, "
            f"{outcome.estimates} estimated"
        )
        yield _center(low or many, text, outcome.completeness)


def check_balance_residual(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    outcome = observed.outcome
    if outcome is None or not outcome.stored:
        return
    generation = abs(outcome.totals.get("generation_carbon_t_per_h") or 0.0)
    residual = abs(outcome.totals.get("residual_t_per_h") or 0.0)
    share = residual / generation if generation else 0.0
    bad = share > (rule.tolerance or 0)
    if wanted(bad, watched, "center", "metering"):
        yield _center(bad, f"carbon balance residual {residual:.4f} t/h = {share:.3%} of generation", share)


# The values of a rule's ``quantity`` this evaluation, as ``(key, point, value)``: a measured point
# (``point.*``: key = point id, the subject its device), a bus (``bus.*``: key = bus id, point None) or
# the center (``totals.*``, ``interval.*``: key "metering", point None).
Item = tuple[str, Any, float]


def subject_kind(rule: AlarmRule) -> str:
    quantity = rule.quantity or ""
    return "device" if quantity.startswith("point.") else "bus" if quantity.startswith("bus.") else "center"


def scoped_points(
    rule: AlarmRule, observed: Observed, memory: dict, quantities: Iterable[str] | None
) -> list[tuple[str, dict[str, Any], float]]:
    """This evaluation's ``(point id, point, value)`` of ``quantities`` inside the rule's scope, in the
    order of the point catalogue.  The points of the scope are worked out once per catalogue (kept in
    ``memory``): a rule scoped to one device kind looks at its own points only, not at every reading."""
    cached = memory.get("scoped")
    if cached is None or cached[0] is not observed.points:
        wanted = None if quantities is None else set(quantities)
        inside = [
            (point_id, point)
            for point_id, point in observed.points.items()
            if (wanted is None or point["quantity"] in wanted) and point_in_scope(rule, point, observed)
        ]
        cached = memory["scoped"] = (observed.points, inside)
    values = observed.point_values
    return [
        (point_id, point, value)
        for point_id, point in cached[1]
        if (value := values.get(point_id)) is not None
    ]


def bus_scope(rule: AlarmRule, observed: Observed, memory: dict) -> set[str] | None:
    """The buses of the rule's scope (None: every bus); worked out once per topology version."""
    scope = rule.scope
    if not scope.region and not scope.buses:
        return None
    cached = memory.get("bus_scope")
    version = observed.topology_version
    if cached is not None and version is not None and cached[0] == version:
        return cached[1]
    buses = set(scope.buses) if scope.buses else set(observed.bus_region)
    if scope.region:
        buses = {bus for bus in buses if _in_region(observed.bus_region.get(bus), scope.region)}
    memory["bus_scope"] = (version, buses)
    return buses


def quantity_items(rule: AlarmRule, observed: Observed, memory: dict | None = None) -> list[Item]:
    """``(key, point, value)`` of the rule's ``quantity`` this evaluation (see :data:`Item`)."""
    memory = {} if memory is None else memory
    quantity = rule.quantity or ""
    name = quantity.split(".", 1)[1]
    if quantity.startswith("point."):
        return scoped_points(rule, observed, memory, (name,))
    outcome = observed.outcome
    if outcome is None or not outcome.stored:
        return []
    if quantity.startswith("bus."):
        values = outcome.intensities if name == "intensity_g_per_kwh" else outcome.bands
        inside = bus_scope(rule, observed, memory)
        return [
            (bus, None, float(value))
            for bus, value in values.items()
            if value is not None and (inside is None or bus in inside)
        ]
    value = {
        "interval.completeness": outcome.completeness,
        "interval.estimates": outcome.estimates,
    }.get(quantity, outcome.totals.get(name) if quantity.startswith("totals.") else None)
    return [] if value is None else [("metering", None, float(value))]


def _item_finding(
    rule: AlarmRule, observed: Observed, item: Item, bad: bool, message: str = "", value: float | None = None
) -> Finding:
    key, point, _ = item
    if point is not None:
        return point_finding(point, bad, message, value)
    if (rule.quantity or "").startswith("bus."):
        return Finding("bus", key, bad, message, value, observed.bus_region.get(key), key)
    return _center(bad, message, value)


def _item_label(rule: AlarmRule, item: Item) -> str:
    quantity = rule.quantity or ""
    name = quantity.split(".", 1)[1]
    key, point, _ = item
    if point is not None:
        end = f" ({point['end']} end)" if point.get("end") not in (None, "-") else ""
        return f"{key} {name} of {point['element_kind']} {point['element_id']}{end}"
    if quantity.startswith("bus."):
        return f"bus {key} {name}"
    return f"total {name}" if quantity.startswith("totals.") else name


def _per_subject(
    rule: AlarmRule, observed: Observed, watched: Watched
) -> tuple[dict[str, tuple[Item, bool, str, float]], Callable[..., None]]:
    """One finding per subject (a device with several points): its first bad one if any, else its first
    clean one — made only for a watched subject.  Returns the choices and the function noting one."""
    kind = subject_kind(rule)
    chosen: dict[str, tuple[Item, bool, str, float]] = {}

    def note(item: Item, bad: bool, message: str, value: float) -> None:
        ident = item[1]["device_id"] if item[1] is not None else item[0]
        held = chosen.get(ident)
        if held is None:
            if wanted(bad, watched, kind, ident):
                chosen[ident] = (item, bad, message, value)
        elif bad and not held[1]:
            chosen[ident] = (item, bad, message, value)

    return chosen, note


def _findings(rule: AlarmRule, observed: Observed, chosen: dict) -> Iterator[Finding]:
    for item, bad, message, value in chosen.values():
        yield _item_finding(rule, observed, item, bad, message, value)


def check_threshold(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    above, below, absolute = rule.above, rule.below, rule.absolute
    chosen, note = _per_subject(rule, observed, watched)
    for item in quantity_items(rule, observed, memory):
        value = item[2]
        shown = abs(value) if absolute else value
        if above is not None and shown > above:
            note(item, True, f"{_item_label(rule, item)} = {value:g}: above {above:g}", value)
        elif below is not None and shown < below:
            note(item, True, f"{_item_label(rule, item)} = {value:g}: below {below:g}", value)
        elif watched is None or watched:
            note(item, False, "", value)
    return _findings(rule, observed, chosen)


def check_rate_of_change(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    previous: dict = memory.setdefault("previous", {})
    max_change, max_percent = rule.max_change, rule.max_change_percent
    chosen, note = _per_subject(rule, observed, watched)
    for item in quantity_items(rule, observed, memory):
        key, _, value = item
        before = previous.get(key)
        previous[key] = value
        if before is None:
            continue
        change = value - before
        percent = abs(change) / abs(before) * 100 if before else (0.0 if change == 0 else float("inf"))
        if (max_change is not None and abs(change) > max_change) or (
            max_percent is not None and percent > max_percent
        ):
            text = f"{_item_label(rule, item)} changed {before:g} → {value:g} ({change:+g}, {percent:.0f} %)"
            note(item, True, text, change)
        elif watched is None or watched:
            note(item, False, "", change)
    return _findings(rule, observed, chosen)


def point_finding(point: dict[str, Any], bad: bool, message: str, value: float | None) -> Finding:
    return Finding(
        "device", point["device_id"], bad, message, value, point.get("region"), point.get("bus_id")
    )


def check_meter_mismatch(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    latest: dict[str, dict[str, Any]] = {}
    for check in observed.meter_checks:
        if check["status"] in ("ok", "mismatch"):
            latest[check["device_id"]] = check  # the newest verdict per meter counts
    for device_id, check in latest.items():
        region = observed.device_region.get(device_id)
        bad = check["status"] == "mismatch"
        if not _in_region(region, rule.scope.region) or not wanted(bad, watched, "meter", device_id):
            continue
        deviation = None if check.get("deviation_kg") is None else float(Decimal(check["deviation_kg"]))
        text = f"meter {device_id}: {check['status']}" + (
            f", shows {deviation:+g} kg against the platform" if deviation is not None else ""
        )
        yield Finding("meter", device_id, bad, text, deviation, region)


def check_cascade_mismatch(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    for verdict in observed.cascade:
        bad = verdict.get("status") == "mismatch"
        if not wanted(bad, watched, "center", str(verdict["peer"])):
            continue
        text = f"cascade peer {verdict['peer']}: {verdict.get('status')}" + (
            f" ({verdict['detail']})" if verdict.get("detail") else ""
        )
        yield Finding("center", str(verdict["peer"]), bad, text, None, verdict.get("region"))

"""The checks of measured points over time: a value stuck (the same reading, or no new reading) and a
register jumping (tamper suspicion).  Same contract as :mod:`carbonflow.center.alarms.checks`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from carbonflow.center.alarms.checks import (
    Finding,
    Observed,
    Watched,
    point_finding,
    point_in_scope,
    scoped_points,
    wanted,
)
from carbonflow.center.alarms.rules import AlarmRule


def check_stuck_value(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
    """A value that keeps exactly the same non-zero reading for ``intervals`` intervals in a row (a live
    measurement always moves a little; a frozen transducer or a hung device does not).

    ``same_value`` (the default): only intervals that brought a reading of the point count; one without
    (data still on its way, a device offline: other rules' business) neither counts nor breaks the run,
    so late delivery never looks stuck.  Devices that report on change only need ``same_value = false``:
    then a point of an online device that brought no new reading counts as repeating its last value —
    once the collector has reported the device after the interval's end (else its data may be late).
    A value that is unchanged but alive is refreshed by the RTU's background scan or the collector's
    general interrogation of a silent point (``refresh_s``): a new reading, so not silent."""
    # point -> (last value, readings in a row showing it, readings so far up to ``intervals``): the last
    # ``intervals`` readings are all the same exactly when the run is that long
    runs: dict[str, tuple[float, int, int]] = memory.setdefault("runs", {})
    points: dict[str, dict[str, Any]] = memory.setdefault("points", {})
    items = scoped_points(rule, observed, memory, rule.quantities or None)
    needed, same = rule.intervals, rule.same_value
    share = rule.max_step_share if same else None
    if not same:
        quiet: dict[str, int] = memory.setdefault("quiet", {})  # intervals in a row without a new reading
        current = {point_id: value for point_id, _, value in items}
        for point_id in current:
            quiet[point_id] = 0
        # an interval counts as silent only once the collector has reported the device online after its
        # end (a status or a reading): until then the readings may still be on their way (a late
        # collector, a loaded machine), and the interval neither counts nor breaks the run
        heard = {d["id"]: d.get("last_seen") for d in observed.devices or [] if d.get("online")}
        for point_id in runs.keys() - current.keys():
            seen_at = heard.get(points[point_id]["device_id"])
            if seen_at is not None and seen_at >= observed.at:
                items.append((point_id, points[point_id], runs[point_id][0]))
                quiet[point_id] = quiet.get(point_id, 0) + 1
    chosen: dict[str, tuple[bool, str, dict[str, Any], float]] = {}
    for point_id, point, value in items:
        if share is not None and value != 0 and observed.resolution(point_id) > share * abs(value):
            continue  # shown too coarsely for a live value to move between intervals
        run = runs.get(point_id)
        if run is None:
            points[point_id] = point
            run = runs[point_id] = (value, 1, 1)
        elif run[0] == value:
            run = runs[point_id] = (value, run[1] + 1, min(run[2] + 1, needed))
        else:
            run = runs[point_id] = (value, 1, min(run[2] + 1, needed))
        if run[2] < needed:
            continue
        # same value: the run; no new reading: intervals in a row without one while the device is online
        stuck = value != 0 and (run[1] if same else quiet.get(point_id, 0)) >= needed
        device = point["device_id"]
        held = chosen.get(device)
        if held is None:
            if stuck or watched is None or (watched and ("device", device) in watched):  # wanted(), inline
                chosen[device] = (stuck, point_id, point, value)
        elif stuck and not held[0]:
            chosen[device] = (stuck, point_id, point, value)
    for device, (stuck, point_id, point, value) in chosen.items():
        text = (
            f"{point_id} {point['quantity']} stuck at {value:g} for {rule.intervals} intervals"
            + ("" if rule.same_value else " (no new reading)")
            if stuck
            else f"{device}: values move"
        )
        yield point_finding(point, stuck, text, value)


def check_tamper(
    rule: AlarmRule, observed: Observed, memory: dict, watched: Watched = None
) -> Iterator[Finding]:
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
    recent: dict[str, float] = memory.setdefault("recent", {})  # the previous step's rate: ramps
    by_device: dict[str, Finding] = {}
    for point_id, point, value in scoped_points(rule, observed, memory, rule.quantities or None):
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
        previous_rate = recent.get(point_id)
        if rate is not None and previous_rate is not None:
            rate = max(rate, previous_rate)
        hours = (ts - before_ts).total_seconds() / 3600
        recent[point_id] = step / hours
        expected = None if rate is None else max(rate, 0.0) * hours
        quantum = 0.0  # two steps of the register's digits, worked out only when the step is unusual
        if step < 0 or (expected is not None and step > rule.ratio * expected + rule.min_jump):
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
        device = point["device_id"]
        if text or (device not in by_device and wanted(False, watched, "device", device)):
            by_device[device] = point_finding(
                point, bool(text), text or f"{device}: registers plausible", step
            )
    for conflict in observed.conflicts:
        point = observed.points.get(conflict["point_id"])
        if point is None or not point_in_scope(rule, point, observed, memory):
            continue
        text = (
            f"{conflict['point_id']} at {conflict['ts'].isoformat()}: offered {conflict['offered_value']} "
            f"again, {conflict['stored_value']} stored"
        )
        by_device[point["device_id"]] = point_finding(point, True, text, None)
    yield from by_device.values()

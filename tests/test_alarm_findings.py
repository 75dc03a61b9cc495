"""Clean findings are made only for the subjects the engine remembers (an active alarm or bad sightings
counting towards one): the alarms — raised, counted, cleared, flapping — are exactly those of an engine
that looks at a clean finding of every subject, over a long random run of every interval rule kind."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401

from carbonflow.center.alarms import AlarmEngine, parse_rules
from carbonflow.center.alarms.checks import Observed
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store
from carbonflow.center.store import alarms as alarm_store

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
BUSES = {"B1": "AH/HF/FX", "B2": "AH/HF", "B3": "AH/WH", "B4": "AH/WH/X"}
DEVICES = [f"D{k}" for k in range(8)]
RULES = [
    {"id": "hot-point", "kind": "threshold", "quantity": "point.p_mw", "above": 8.0, "count": 2, "window": 3,
     "clear_after": 2, "scope": {"element_kinds": ["branch"]}},
    {"id": "hot-bus", "kind": "threshold", "quantity": "bus.intensity_g_per_kwh", "above": 700.0,
     "scope": {"region": "AH/HF"}},
    {"id": "low-q", "kind": "threshold", "quantity": "point.q_mvar", "below": -4.0, "absolute": False},
    {"id": "step", "kind": "rate_of_change", "quantity": "point.p_mw", "max_change": 3.0, "count": 1,
     "window": 2},
    {"id": "bus-step", "kind": "rate_of_change", "quantity": "bus.intensity_g_per_kwh",
     "max_change_percent": 30},
    {"id": "stuck", "kind": "stuck_value", "quantities": ["p_mw", "q_mvar"], "intervals": 2},
    {"id": "quiet", "kind": "stuck_value", "quantities": ["p_mw"], "intervals": 2, "same_value": False,
     "clear_after": 2},
    {"id": "jump", "kind": "tamper", "quantities": ["import_energy_kwh"], "ratio": 3.0, "min_jump": 1.0},
    {"id": "loss", "kind": "comm_loss", "after_s": 150},
    {"id": "clock", "kind": "clock_offset", "tolerance": 5.0, "count": 2, "window": 3},
    {"id": "gap", "kind": "data_gap", "min_completeness": 0.9},
]  # fmt: skip


def catalogue() -> dict[str, dict]:
    points = {}
    for n, device in enumerate(DEVICES):
        bus = list(BUSES)[n % len(BUSES)]
        common = {"device_id": device, "device_kind": "substation_rtu", "region": BUSES[bus], "bus_id": bus,
                  "scale": None}  # fmt: skip
        for suffix, element, quantity, end in (
            ("p", f"L{n}", "p_mw", "from"), ("q", f"L{n}", "q_mvar", "from"),
            ("e", f"U{n}", "import_energy_kwh", "-"),
        ):  # fmt: skip
            kind = "branch" if element.startswith("L") else "load"
            points[f"{device}/{suffix}"] = common | {
                "id": f"{device}/{suffix}", "element_kind": kind, "element_id": element, "quantity": quantity,
                "end": end,
            }  # fmt: skip
    return points


def scenario(intervals: int, seed: int) -> list[Observed]:
    """Observations of a random run: values that wander past the limits, repeat, go missing; devices
    dropping out and clocks drifting; registers that jump and come back."""
    rng = random.Random(seed)
    points = catalogue()
    p = {device: 5.0 for device in DEVICES}
    register = {device: 1000.0 for device in DEVICES}
    runs = []
    for k in range(1, intervals + 1):
        at = T0 + k * timedelta(seconds=60)
        values, times, shown = {}, {}, {}
        for device in DEVICES:
            if rng.random() < 0.6:  # moves; else it repeats its last value
                p[device] = round(min(12.0, max(0.5, p[device] + rng.choice([-4, -1, -0.5, 0.5, 1, 4]))), 1)
            register[device] += (
                10 + (5000 if rng.random() < 0.05 else 0) - (5000 if rng.random() < 0.03 else 0)
            )
            for suffix, value in (
                ("p", p[device]),
                ("q", round(rng.uniform(-6, 2), 2)),
                ("e", register[device]),
            ):
                if rng.random() < 0.85:  # some readings do not arrive
                    point_id = f"{device}/{suffix}"
                    shown[point_id] = Decimal(str(value))
                    values[point_id] = float(value)
                    times[point_id] = at - timedelta(seconds=rng.randint(0, 50))
        devices = [
            {"id": device, "kind": "substation_rtu", "region": points[f"{device}/p"]["region"],
             "bus_id": points[f"{device}/p"]["bus_id"], "online": rng.random() > 0.1,
             "last_seen": at - timedelta(seconds=rng.choice([-5, 30, 200])), "error": None,
             "clock_offset_s": rng.choice([0.5, -2.0, 7.0, None])}
            for device in DEVICES
        ]  # fmt: skip
        stored = rng.random() > 0.05
        outcome = IntervalOutcome(
            end=at, stored=stored, completeness=rng.choice([1.0, 0.95, 0.8]),
            error=None if stored else "late",
            intensities={bus: rng.uniform(500, 800) for bus in BUSES},
        )  # fmt: skip
        runs.append(
            dict(at=at, outcome=outcome, devices=devices, points=points, point_values=values,
                 point_times=times, point_shown=shown, bus_region=BUSES, topology_version=1)
        )  # fmt: skip
    return runs


class EverySubject(AlarmEngine):
    only_watched = False


def alarms_of(target) -> list[tuple]:
    found = alarm_store.list_alarms(target, state="all", limit=10_000)
    return sorted(
        (a["rule"], a["subject"]["kind"], a["subject"]["id"], a["raised_at"], a["cleared_at"],
         a["occurrences"], a["flapping"], a["message"])
        for a in found
    )  # fmt: skip


def test_clean_findings_of_watched_subjects_only_give_the_same_alarms(store, tmp_path):  # noqa: F811
    reference_store = Store.open(f"sqlite:///{tmp_path / 'every-subject.db'}")
    try:
        engine = AlarmEngine(store, rules=parse_rules(RULES), interval_s=60)
        reference = EverySubject(reference_store, rules=parse_rules(RULES), interval_s=60)
        made, every = 0, 0
        for observation in scenario(120, seed=14):
            made += engine.evaluate(Observed(**observation)).findings
            every += reference.evaluate(Observed(**observation)).findings
        alarms = alarms_of(store)
        assert alarms == alarms_of(reference_store)
        rules = {alarm[0] for alarm in alarms}
        assert rules == {rule["id"] for rule in RULES}, rules  # every kind raised in the run
        assert any(alarm[4] is not None for alarm in alarms) and any(alarm[6] for alarm in alarms)
        assert made < every * 0.6  # and fewer findings were made (this run raises a lot)
    finally:
        reference_store.close()

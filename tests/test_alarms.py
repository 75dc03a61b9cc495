"""The alarm engine on both backends: each rule kind raises exactly when its condition holds and clears
exactly when it ends, de-duplicates, suppresses flapping, carries the site image; bad rules are refused
naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import insert, update

from carbonflow.center.alarms import AlarmEngine, RuleError, parse_rules
from carbonflow.center.alarms.checks import Observed
from carbonflow.center.alarms.rules import default_rules, parse_rule
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import alarms as alarm_store
from carbonflow.center.store import upsert_collector
from carbonflow.center.store.conflicts import ReadingConflict
from carbonflow.center.store.images import Image
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.schema import Collector, Device, MeterCheck, Point, Reading

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=60)


def at(k: int) -> datetime:
    return T0 + k * INTERVAL


def outcome(k: int, **values) -> IntervalOutcome:
    base = dict(
        end=at(k), stored=True, completeness=1.0,
        totals={"generation_carbon_t_per_h": 100.0, "load_carbon_t_per_h": 99.0, "residual_t_per_h": 0.0},
        intensities={"B1": 500.0, "B2": 600.0},
    )  # fmt: skip
    base.update(values)
    return IntervalOutcome(**base)


def field_devices(target) -> None:
    upsert_collector(target, "C1", "secret", name="c1")
    with target.write() as connection:
        connection.execute(update(Collector).where(Collector.id == "C1").values(region="AH/HF"))
        connection.execute(
            insert(Device),
            [
                dict(id="EM-1", collector_id="C1", kind="energy_meter", protocol="dlt645", bus_id="B1",
                     region="AH/HF/FX", status="online", online=True, last_seen=T0),
                dict(id="EM-2", collector_id="C1", kind="energy_meter", protocol="dlt645", bus_id="B2",
                     region="AH/WH", status="online", online=True, last_seen=T0),
                dict(id="CAM-1", collector_id="C1", kind="camera", protocol="camera-http", bus_id="B1",
                     region="AH/HF/FX", status="online", online=True, last_seen=T0),
                dict(id="ECM-1", collector_id="C1", kind="carbon_meter", protocol="dlt698", bus_id="B2",
                     region="AH/WH", status="online", online=True, last_seen=T0),
            ],
        )  # fmt: skip
        connection.execute(
            insert(Point),
            [
                dict(id="EM-1/p", device_id="EM-1", element_kind="branch", element_id="L1", quantity="p_mw",
                     end="from"),
                dict(id="EM-1/e", device_id="EM-1", element_kind="load", element_id="U1",
                     quantity="import_energy_kwh", end="-"),
                dict(id="EM-2/p", device_id="EM-2", element_kind="branch", element_id="L2", quantity="p_mw",
                     end="from"),
            ],
        )  # fmt: skip


def readings(target, k: int, values: dict[str, str]) -> None:
    with target.write() as connection:
        if connection.dialect.name == "postgresql":
            ensure_partitions(connection, ["readings"], months_between(at(k), at(k)))
        connection.execute(
            insert(Reading),
            [
                dict(point_id=p, ts=at(k) - timedelta(seconds=5), value=Decimal(v), quality="good",
                     received_at=at(k), batch_id=f"b{k}")
                for p, v in values.items()
            ],
        )  # fmt: skip


def set_device(target, device: str, engine: AlarmEngine | None = None, **values) -> None:
    """A device row changed, and (``engine``) the engine told so, as ingest does after its commit."""
    with target.write() as connection:
        connection.execute(update(Device).where(Device.id == device).values(**values))
    if engine is not None:
        engine.on_status(devices=[device], statuses=False)


def engine_with(target, *rules: dict, **kwargs) -> AlarmEngine:
    return AlarmEngine(target, rules=parse_rules(list(rules)), interval_s=60, **kwargs)


def active(target) -> list[dict]:
    return alarm_store.list_alarms(target, state="active")


def everything(target) -> list[dict]:
    return alarm_store.list_alarms(target, state="all")


# --- rules as data -----------------------------------------------------------------------------------


def test_the_shipped_rules_are_valid_and_cover_every_kind():
    kinds = {rule.kind for rule in default_rules()}
    assert kinds >= {
        "threshold", "rate_of_change", "comm_loss", "collector_loss", "data_gap", "stuck_value",
        "balance_residual", "meter_mismatch", "clock_offset", "camera_offline", "tamper", "cascade_mismatch",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"id": "t", "kind": "threshold", "above": 3}, "quantity"),
        ({"id": "t", "kind": "threshold", "quantity": "point.p_mw"}, "above"),
        ({"id": "t", "kind": "threshold", "quantity": "volts", "above": 1}, "quantity"),
        ({"id": "t", "kind": "comm_loss"}, "after_s"),
        ({"id": "t", "kind": "comm_loss", "after_s": -5}, "after_s"),
        ({"id": "t", "kind": "data_gap", "min_completeness": 0.9, "severity": "fatal"}, "severity"),
        ({"id": "t", "kind": "balance_residual", "tolerance": 0.01, "count": 3, "window": 2}, "count"),
        ({"id": "t", "kind": "nonsense"}, "kind"),
        ({"id": "has space", "kind": "meter_mismatch"}, "id"),
        ({"id": "t", "kind": "meter_mismatch", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(definition, field):
    with pytest.raises(RuleError) as caught:
        parse_rule(definition)
    assert caught.value.field == field
    assert field in str(caught.value) and "rule" in str(caught.value)


def test_rule_ids_must_be_unique():
    with pytest.raises(RuleError, match="appears twice"):
        parse_rules([{"id": "a", "kind": "meter_mismatch"}, {"id": "a", "kind": "cascade_mismatch"}])


# --- lifecycle ---------------------------------------------------------------------------------------


def test_threshold_needs_count_of_window_and_clears_after_clean_intervals(store):  # noqa: F811
    engine = engine_with(
        store,
        {"id": "hot", "kind": "threshold", "quantity": "bus.intensity_g_per_kwh", "above": 1000,
         "count": 2, "window": 3, "clear_after": 2},
    )  # fmt: skip
    hot = {"B1": 1200.0, "B2": 600.0}
    assert engine.on_interval(outcome(1, intensities=hot)).raised == []  # 1 of 3
    assert engine.on_interval(outcome(2)).raised == []
    raised = engine.on_interval(outcome(3, intensities=hot)).raised  # 2 of the last 3
    assert len(raised) == 1
    [alarm] = active(store)
    assert alarm["subject"] == {"kind": "bus", "id": "B1"} and alarm["raised_at"] == at(3)
    assert engine.on_interval(outcome(4, intensities=hot)).raised == []  # de-duplicated: an occurrence
    assert active(store)[0]["occurrences"] == 2
    assert engine.on_interval(outcome(5)).cleared == []  # one clean interval is not enough
    assert engine.on_interval(outcome(6)).cleared == raised
    [cleared] = everything(store)
    assert cleared["state"] == "cleared" and cleared["cleared_at"] == at(6)


def test_flapping_is_marked_and_needs_longer_to_clear(store):  # noqa: F811
    engine = engine_with(
        store,
        {"id": "gap", "kind": "data_gap", "min_completeness": 0.9, "notify": ["webhook"]},
        channels=["webhook"], flap_raises=3,
    )  # fmt: skip
    for k in range(6):  # bad, good, bad, good, bad -> the third raise flaps
        engine.on_interval(outcome(k, completeness=0.5 if k % 2 == 0 else 1.0))
    alarms = everything(store)
    assert [a["flapping"] for a in sorted(alarms, key=lambda a: a["id"])] == [False, False, True]
    assert active(store) and active(store)[0]["flapping"]  # one clean interval does not clear it now
    for k in range(6, 8):
        engine.on_interval(outcome(k))
    assert active(store) == []
    notified = alarm_store.list_notifications(store)
    events = sorted(n["event"] for n in notified)
    assert events == ["cleared", "cleared", "raised", "raised"]  # none for the flapping raise


def test_interval_rules_fire_on_their_condition_and_stay_silent_otherwise(store):  # noqa: F811
    engine = engine_with(
        store,
        {"id": "gap", "kind": "data_gap", "min_completeness": 0.9},
        {"id": "balance", "kind": "balance_residual", "tolerance": 0.001},
        {"id": "step", "kind": "rate_of_change", "quantity": "totals.generation_carbon_t_per_h",
         "max_change_percent": 50},
    )  # fmt: skip
    assert engine.on_interval(outcome(1)).raised == []
    assert engine.on_interval(outcome(2)).raised == []
    unmetered = IntervalOutcome(at(3), stored=False, error="only 10% measured")
    engine.on_interval(unmetered)
    assert [a["rule"] for a in active(store)] == ["gap"]
    assert "not metered" in active(store)[0]["message"]
    totals = {"generation_carbon_t_per_h": 200.0, "residual_t_per_h": 1.0}
    engine.on_interval(outcome(4, totals=totals))
    assert sorted(a["rule"] for a in active(store)) == ["balance", "step"]  # gap cleared at 4
    engine.on_interval(outcome(5, totals={"generation_carbon_t_per_h": 210.0, "residual_t_per_h": 0.0}))
    assert active(store) == []


def test_comm_loss_clock_offset_and_camera_follow_the_device_state(store):  # noqa: F811
    field_devices(store)
    wall = [at(1)]  # collectors' last_seen is the center's receive time: wall clock
    engine = engine_with(
        store,
        {"id": "loss", "kind": "comm_loss", "after_s": 120},
        {"id": "clock", "kind": "clock_offset", "tolerance": 5},
        {"id": "cam", "kind": "camera_offline", "after_s": 120},
        {"id": "collector", "kind": "collector_loss", "after_s": 300},
        clock=lambda: at(1), wall_clock=lambda: wall[0],
    )  # fmt: skip
    set_device(store, "EM-1", engine, last_seen=at(1))
    set_device(store, "EM-2", engine, last_seen=at(1))
    set_device(store, "CAM-1", engine, last_seen=at(1))
    set_device(store, "ECM-1", engine, last_seen=at(1))
    with store.write() as connection:
        connection.execute(update(Collector).values(last_seen=at(1)))
    engine.on_status(collector_id="C1", statuses=False)
    assert engine.tick(at(1)).raised == []
    set_device(store, "EM-1", online=False, status="offline", error="connection refused")
    set_device(store, "EM-2", clock_offset_s=-30.0)
    set_device(store, "CAM-1", online=False, status="offline")
    engine.on_status()
    subjects = sorted((a["rule"], a["subject"]["kind"], a["subject"]["id"]) for a in active(store))
    assert subjects == [("cam", "camera", "CAM-1"), ("clock", "device", "EM-2"), ("loss", "device", "EM-1")]
    assert engine.tick(at(3) + timedelta(seconds=1)).raised != []  # ECM-1 silent for over 120 s
    assert ("loss", "ECM-1") in {(a["rule"], a["subject"]["id"]) for a in active(store)}
    set_device(store, "EM-1", engine, online=True, status="online", last_seen=at(4))
    set_device(store, "EM-2", engine, clock_offset_s=0.2, last_seen=at(4))
    set_device(store, "CAM-1", engine, online=True, last_seen=at(4))
    set_device(store, "ECM-1", engine, last_seen=at(4))
    engine.tick(at(4))
    assert [a["subject"]["id"] for a in active(store)] == []
    wall[0] = at(7)
    engine.tick(at(7))  # the collector has been silent for 6 minutes now; devices too
    assert ("collector", "C1") in {(a["rule"], a["subject"]["id"]) for a in active(store)}


def test_an_alarm_at_a_site_with_a_camera_carries_the_image_nearest_its_raise(store):  # noqa: F811
    field_devices(store)
    with store.write() as connection:
        connection.execute(
            insert(Image),
            [
                dict(camera_id="CAM-1", ts=at(k) + timedelta(seconds=10), object_key=f"{k:064x}.png",
                     size_bytes=10, sha256=f"{k:064x}", content_type="image/png", received_at=at(k))
                for k in (0, 2, 5)
            ],
        )  # fmt: skip
    engine = engine_with(store, {"id": "loss", "kind": "comm_loss", "after_s": 120}, clock=lambda: at(2))
    set_device(store, "EM-1", online=False)
    engine.on_status()
    [alarm] = active(store)
    assert alarm["image"]["camera"] == "CAM-1" and alarm["image"]["key"] == f"{2:064x}.png"
    assert alarm["image"]["url"].endswith(alarm["image"]["key"])


def test_stuck_value_and_line_zero_flow_on_the_readings_of_the_interval(store):  # noqa: F811
    field_devices(store)
    engine = engine_with(
        store,
        {"id": "stuck", "kind": "stuck_value", "quantities": ["p_mw"], "intervals": 3},
        {"id": "zero", "kind": "threshold", "quantity": "point.p_mw", "absolute": True, "below": 0.0001,
         "scope": {"element_kinds": ["branch"]}},
    )  # fmt: skip
    em1 = ["10.5", "10.7", "10.7", "10.7", "10.9"]
    em2 = ["-3.1", "0", "0", "-3.3", "-3.2"]
    raised_at, cleared_at = {}, {}
    for k in range(5):
        readings(store, k + 1, {"EM-1/p": em1[k], "EM-2/p": em2[k]})
        evaluation = engine.on_interval(outcome(k + 1))
        for alarm in everything(store):
            if alarm["id"] in evaluation.raised:
                raised_at[(alarm["rule"], alarm["subject"]["id"])] = k + 1
            if alarm["id"] in evaluation.cleared:
                cleared_at[(alarm["rule"], alarm["subject"]["id"])] = k + 1
    assert raised_at == {("stuck", "EM-1"): 4, ("zero", "EM-2"): 2}  # 0 is never "stuck": it is no flow
    assert cleared_at == {("stuck", "EM-1"): 5, ("zero", "EM-2"): 4}


def test_a_device_registered_while_the_center_runs_is_judged_from_its_first_interval(store):  # noqa: F811
    field_devices(store)
    engine = engine_with(
        store,
        {"id": "zero", "kind": "threshold", "quantity": "point.p_mw", "absolute": True, "below": 0.0001,
         "scope": {"element_kinds": ["branch"]}},
    )  # fmt: skip
    readings(store, 1, {"EM-1/p": "10.5", "EM-2/p": "-3.1"})
    engine.on_interval(outcome(1))  # the point catalogue is read here
    assert active(store) == []
    with store.write() as connection:  # `carbonflow center load` of one more meter, the center running
        connection.execute(
            insert(Device).values(id="EM-3", collector_id="C1", kind="energy_meter", protocol="dlt645",
                                  bus_id="B2", region="AH/WH", status="online", online=True, last_seen=at(1))
        )  # fmt: skip
        connection.execute(
            insert(Point).values(id="EM-3/p", device_id="EM-3", element_kind="branch", element_id="L3",
                                 quantity="p_mw", end="from")
        )  # fmt: skip
    readings(store, 2, {"EM-1/p": "10.6", "EM-2/p": "-3.0", "EM-3/p": "0"})
    evaluation = engine.on_interval(outcome(2))
    assert evaluation.error is None
    assert [(a["rule"], a["subject"]["id"]) for a in active(store)] == [("zero", "EM-3")]


def test_a_register_jump_raises_until_the_register_comes_back(store):  # noqa: F811
    field_devices(store)
    engine = engine_with(
        store,
        {"id": "jump", "kind": "tamper", "quantities": ["import_energy_kwh"], "ratio": 3, "min_jump": 1.0},
    )
    register = [100, 110, 121, 131, 5141, 5152, 162, 172, 165]  # +5000 from 5 to 6, back at 7; 9 runs back
    states = []
    for k, value in enumerate(register):
        readings(store, k + 1, {"EM-1/e": str(value)})
        engine.on_interval(outcome(k + 1))
        states.append(bool(active(store)))
    assert states == [False, False, False, False, True, True, False, False, True]


def test_reading_conflicts_and_meter_checks_since_the_last_evaluation(store):  # noqa: F811
    field_devices(store)
    with store.write() as connection:  # an old check and an old conflict are history: not alarmed
        connection.execute(
            insert(MeterCheck),
            [dict(device_id="ECM-1", carbon_point="x", energy_point="y", start_ts=at(0), end_ts=at(0),
                  status="mismatch", created_at=at(0))],
        )  # fmt: skip
    engine = engine_with(
        store, {"id": "meter", "kind": "meter_mismatch"}, {"id": "jump", "kind": "tamper", "quantities": []}
    )
    engine.on_interval(outcome(1))
    assert active(store) == []
    with store.write() as connection:
        connection.execute(
            insert(MeterCheck),
            [dict(device_id="ECM-1", carbon_point="x", energy_point="y", start_ts=at(1), end_ts=at(2),
                  status="mismatch", deviation_kg=Decimal("0.42"), created_at=at(2))],
        )  # fmt: skip
    readings(store, 2, {"EM-1/e": "100"})
    with store.write() as connection:
        connection.execute(
            insert(ReadingConflict),
            [dict(point_id="EM-1/e", ts=at(2) - timedelta(seconds=5), batch_id="again",
                  stored_value=Decimal("100"), offered_value=Decimal("90"), received_at=at(2))],
        )  # fmt: skip
    engine.on_meter_checks()  # as the maintenance scheduler and ingest tell it after their commits
    engine.on_status(devices=["EM-1"], statuses=False, conflicts=1)
    engine.on_interval(outcome(2))
    found = {(a["rule"], a["subject"]["kind"], a["subject"]["id"]) for a in active(store)}
    assert found == {("meter", "meter", "ECM-1"), ("jump", "device", "EM-1")}
    with store.write() as connection:
        connection.execute(
            insert(MeterCheck),
            [dict(device_id="ECM-1", carbon_point="x", energy_point="y", start_ts=at(2), end_ts=at(3),
                  status="ok", created_at=at(3))],
        )  # fmt: skip
    engine.on_meter_checks()
    readings(store, 3, {"EM-1/e": "101"})
    engine.on_interval(outcome(3))
    assert active(store) == []


def test_cascade_verdicts_raise_and_clear_through_the_hook(store):  # noqa: F811
    engine = engine_with(store, {"id": "cascade", "kind": "cascade_mismatch"})
    engine.cascade_verdict("AH-HF", "mismatch", "tie L12 differs by 3 MW", at=at(1))
    [alarm] = active(store)
    assert alarm["subject"] == {"kind": "center", "id": "AH-HF"} and "L12" in alarm["message"]
    engine.cascade_verdict("AH-HF", "ok", at=at(2))
    assert active(store) == []


def test_rules_are_stored_replaced_and_a_removed_rule_clears_its_alarms(store):  # noqa: F811
    engine = AlarmEngine(store, interval_s=60)
    assert engine.rules_source == "default"
    engine.set_rules([{"id": "gap", "kind": "data_gap", "min_completeness": 0.9}], actor="alice")
    engine.on_interval(outcome(1, completeness=0.2))
    assert len(active(store)) == 1
    again = AlarmEngine(store, interval_s=60)  # a restarted center keeps its rules and active alarms
    assert [r.id for r in again.rules] == ["gap"] and again.rules_source == "stored"
    again.on_interval(outcome(2, completeness=0.2))
    assert len(everything(store)) == 1  # still the one alarm: no duplicate after the restart
    again.set_rules([{"id": "balance", "kind": "balance_residual", "tolerance": 0.01}])
    assert active(store) == []
    with pytest.raises(RuleError):
        again.set_rules([{"id": "x", "kind": "threshold"}])
    assert [r.id for r in AlarmEngine(store).rules] == ["balance"]  # a refused set changes nothing


def test_evaluation_errors_never_reach_the_metering_loop(store):  # noqa: F811
    engine = engine_with(store, {"id": "gap", "kind": "data_gap", "min_completeness": 0.9})
    evaluation = engine.evaluate(Observed(at(1), outcome=object()))
    assert evaluation.error is not None  # logged and reported, not raised


def test_a_stuck_value_needs_readings_shown_finely_and_late_data_never_counts(store):  # noqa: F811
    field_devices(store)
    engine = engine_with(
        store,
        {"id": "stuck", "kind": "stuck_value", "quantities": ["p_mw"], "intervals": 2,
         "max_step_share": 1e-4},
    )  # fmt: skip
    # EM-1: live, but its readings of intervals 2 and 4 are late (not in when the interval is metered);
    # EM-2: shown in coarse steps (0.1 of ~3): a steady load repeats without being stuck
    em1 = ["10.51234", None, "10.52345", None, "10.61234", "10.61234"]
    em2 = ["-3.1", "-3.1", "-3.1", "-3.1", "-3.1", "-3.1"]
    raised = []
    for k in range(6):
        values = {"EM-2/p": em2[k]} | ({"EM-1/p": em1[k]} if em1[k] else {})
        readings(store, k + 1, values)
        evaluation = engine.on_interval(outcome(k + 1))
        raised += [(k + 1, a["subject"]["id"]) for a in everything(store) if a["id"] in evaluation.raised]
    # an empty interval is no repeat (counting it as one raised at 2 and 4); 6 repeats 5: stuck
    assert raised == [(6, "EM-1")]

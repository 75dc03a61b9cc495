"""Validation (duplicates, order, counter roll-over and resets, bounds) and the durable SQLite outbox
(batches persisted before sending, deleted only on Ack, same batch_id after a restart, dead letters,
bounded retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from carbonflow.collector.outbox import Outbox, OutboxFull
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.messages.c4 import Batch, DeviceStatus, Reading
from carbonflow.messages.collector_config import PointConfig

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SECRET = b"outbox-test-secret"
COUNTER = PointConfig(name="e", di="00010000", kind="counter", min=Decimal(0), rollover=Decimal(1000000))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_counter_roll_over_is_corrected_and_a_reset_is_flagged_invalid():
    validator = Validator()
    shown = ["999990.00", "999999.50", "3.25", "10.00", "4.00", "6.00"]
    verdicts = [
        validator.check("m/e", COUNTER, RawValue("e", Decimal(v), at(k))) for k, v in enumerate(shown)
    ]
    sent = [(v.reading.value, v.reading.quality) for v in verdicts]
    assert sent == [
        ("999990.00", "good"),
        ("999999.50", "good"),
        ("1000003.25", "good"),  # wrapped at 10^6: sent continuous
        ("1000010.00", "good"),
        ("4.00", "invalid"),  # went backwards far from the wrap point: a reset, the new base
        ("6.00", "good"),
    ]
    assert "rolled over" in (verdicts[2].flag or "") and "backwards" in (verdicts[4].flag or "")


def test_a_counter_without_rollover_going_backwards_is_invalid():
    point = PointConfig(name="c", oad="20800200", kind="counter")
    validator = Validator()
    first = validator.check("m/c", point, RawValue("c", Decimal("500.00"), at(0)))
    second = validator.check("m/c", point, RawValue("c", Decimal("499.99"), at(1)))
    assert first.reading.quality == "good" and second.reading.quality == "invalid"
    assert second.reading.value == "499.99" and "backwards" in second.flag


def test_duplicates_and_out_of_order_readings_are_dropped_and_bounds_checked():
    point = PointConfig(name="p", di="02030000", min=Decimal(-100), max=Decimal(100))
    validator = Validator()
    results = [
        validator.check("m/p", point, RawValue("p", Decimal(v), at(t)))
        for t, v in [(1, "5"), (1, "5"), (0, "4"), (2, "150.5"), (3, "-7.25")]
    ]
    assert [r.reading and (r.reading.value, r.reading.quality) for r in results] == [
        ("5", "good"),
        None,
        None,
        ("150.5", "invalid"),
        ("-7.25", "good"),
    ]
    assert "duplicate" in results[1].flag and "out of order" in results[2].flag
    assert validator.dropped == 2


def reading(point: str, seconds: float, value: str = "1.00") -> Reading:
    return Reading(point=point, ts=at(seconds), value=value)


def test_batches_are_persisted_unsigned_signed_at_each_send_and_deleted_only_on_ack(tmp_path):
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        outbox.append([reading("m/e", k) for k in range(25)], [DeviceStatus(device="m", online=True)])
        assert outbox.form_batch("c1", SECRET, max_readings=10, max_age_s=3600) is not None  # full size
        second = outbox.form_batch("c1", SECRET, max_readings=10, max_age_s=3600)
        assert outbox.form_batch("c1", SECRET, max_readings=10, max_age_s=3600) is None  # 5 left, young
        third = outbox.form_batch("c1", SECRET, max_readings=10, max_age_s=3600, force=True)
        stored = outbox.unacked(10)
        assert [(b.seq, b.readings) for b in stored] == [(0, 10), (1, 10), (2, 5)]
        first = Batch.model_validate_json(stored[0].body)
        assert first.signature is None and first.nonce is None  # the outbox keeps the content only
        sent, resent = (Batch.model_validate_json(stored[0].signed_body(SECRET)) for _ in range(2))
        assert sent.verify(SECRET) and resent.verify(SECRET) and sent.nonce != resent.nonce
        assert sent.canonical() == resent.canonical() == first.canonical()  # same content every send
        assert len(first.statuses) == 1 and first.readings[0].ts == at(0)
        assert second.seq == 1 and third.seq == 2
        assert outbox.acknowledge(second.batch_id) and not outbox.acknowledge(second.batch_id)
        assert outbox.stats().batches == 2 and outbox.stats().batched_readings == 15

    with Outbox(path) as reopened:  # a restart: the same batches, byte for byte, and seq goes on
        again = reopened.unacked(10)
        assert [b.batch_id for b in again] == [stored[0].batch_id, stored[2].batch_id]
        assert again[0].body == stored[0].body
        reopened.append([reading("m/e", 100)])
        assert reopened.form_batch("c1", SECRET, 10, 3600, force=True).seq == 3


def test_rejected_batches_become_dead_letters_and_can_be_requeued(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.append([reading("m/e", 0)])
        batch = outbox.form_batch("c1", SECRET, 10, 0)
        outbox.record_failure(batch.batch_id, "HTTP 503")
        assert outbox.dead_letter(batch.batch_id, 422, "HTTP 422: reading 0 bad")
        assert outbox.unacked(5) == [] and outbox.stats().dead_letters == 1
        assert outbox.dead_letters()[0]["status"] == 422
        assert outbox.requeue_dead_letters() == 1
        assert [b.batch_id for b in outbox.unacked(5)] == [batch.batch_id]


def test_a_full_outbox_refuses_new_readings_explicitly_and_keeps_what_it_has(tmp_path):
    with Outbox(tmp_path / "o.sqlite", max_readings=10) as outbox:
        outbox.append([reading("m/e", k) for k in range(8)])
        with pytest.raises(OutboxFull, match="3 new readings refused"):
            outbox.append([reading("m/e", 10 + k) for k in range(3)], [DeviceStatus(device="m", online=True)])
        stats = outbox.stats()
        assert (stats.pending_readings, stats.refused_readings) == (8, 3)
        batch = outbox.form_batch("c1", SECRET, 100, 0)
        assert len(batch.readings) == 8 and len(batch.statuses) == 1  # the status still got in
        outbox.acknowledge(batch.batch_id)
        assert outbox.append([reading("m/e", 20)]) == 1  # room again


def test_point_states_survive_a_restart_so_duplicates_stay_dropped(tmp_path):
    validator = Validator()
    verdict = validator.check("m/e", COUNTER, RawValue("e", Decimal("999999.00"), at(5)))
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.append([verdict.reading], states={p: validator.states[p] for p in validator.changed})
    with Outbox(tmp_path / "o.sqlite") as outbox:
        restarted = Validator(outbox.load_states())
    assert restarted.check("m/e", COUNTER, RawValue("e", Decimal("999999.00"), at(5))).reading is None
    wrapped = restarted.check("m/e", COUNTER, RawValue("e", Decimal("1.00"), at(6))).reading
    assert (wrapped.value, wrapped.quality) == ("1000001.00", "good")

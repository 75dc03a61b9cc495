"""Contract C4 messages: validation names the bad field, signing detects any change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from carbonflow.messages.c4 import Batch, Reading

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def batch(**change) -> Batch:
    fields = dict(
        collector_id="col-1",
        batch_id="0b7d4c1e-7a41-4bb8-9f0b-6a0f0b7b2c11",
        seq=3,
        created_at=NOW,
        readings=[Reading(point="m1/import_energy_kwh", ts=NOW, value="1206.42")],
    )
    fields.update(change)
    return Batch(**fields)


def test_signature_verifies_only_with_the_right_secret_and_unchanged_content():
    signed = batch().signed(b"secret-1")
    assert signed.verify(b"secret-1") and not signed.verify(b"secret-2")
    tampered = signed.model_copy(
        update={"readings": [Reading(point="m1/import_energy_kwh", ts=NOW, value="1206.43")]}
    )
    assert not tampered.verify(b"secret-1")
    assert not batch().verify(b"secret-1")  # unsigned


def test_signature_survives_a_json_round_trip():
    signed = batch().signed(b"k")
    again = Batch.model_validate_json(signed.model_dump_json())
    assert again.verify(b"k") and again.readings[0].value == "1206.42"


@pytest.mark.parametrize(
    ("reading", "message"),
    [
        ({"point": "m1/e", "ts": "2026-11-25T08:00:00", "value": "1"}, "time zone"),
        ({"point": "m1/e", "ts": NOW, "value": "12,5"}, "not a decimal"),
        ({"point": "m1/e", "ts": NOW, "value": "NaN"}, "not finite"),
        ({"point": "m1/e", "ts": NOW, "value": "1", "quality": "great"}, "quality"),
        ({"point": "", "ts": NOW, "value": "1"}, "point"),
    ],
)
def test_bad_readings_are_refused_naming_the_field(reading, message):
    with pytest.raises(ValidationError, match=message):
        batch(readings=[reading])


def test_timestamps_are_normalised_to_utc():
    local = datetime.fromisoformat("2026-11-25T16:00:00+08:00")
    assert Reading(point="m/e", ts=local, value="1").ts == NOW

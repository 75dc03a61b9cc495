"""A center rotates its cascade signing key without a gap: its peers trust the new key and, while it
moves over, the previous ones; a key they were never given is still refused (docs/cascade.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carbonflow.center.cascade.config import CascadeConfig, new_key, private_key_text, public_key_text
from carbonflow.center.cascade.node import CascadeNode, Refused
from carbonflow.center.cascade.outbox import CascadeOutbox
from carbonflow.center.store import Store
from carbonflow.messages.c5 import Envelope, Verification


def city(province_keys: list, tmp_path) -> CascadeNode:
    current, *previous = province_keys
    config = CascadeConfig.model_validate(
        {
            "center_id": "ah-hf", "region": "AH/HF", "level": "city", "interval_s": 3600,
            "private_key": private_key_text(new_key()),
            "peers": [{
                "id": "ah", "region": "AH", "level": "province", "direction": "upper",
                "public_key": public_key_text(current),
                "previous_public_keys": [public_key_text(key) for key in previous],
            }],
        }
    )  # fmt: skip
    store = Store.open(f"sqlite:///{tmp_path / 'ah-hf.db'}")
    return CascadeNode(store, config, CascadeOutbox(tmp_path / "outbox.db"))


def verification_from_the_province(key) -> bytes:
    ts = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % 1000)
    envelope = Envelope(
        message_id=uuid.uuid4().hex, sender="ah", recipient="ah-hf", ts=ts, interval_s=3600,
        created_at=datetime.now(UTC), payload=Verification(report_hash="0" * 64, status="ok"),
    )  # fmt: skip
    return envelope.signed(key).model_dump_json().encode()


def test_messages_under_the_new_and_the_previous_key_are_taken_a_stranger_key_is_not(tmp_path):
    old, new, stranger = new_key(), new_key(), new_key()
    node = city([new, old], tmp_path)
    assert node.receive(verification_from_the_province(new))["status"] == "accepted"
    assert node.receive(verification_from_the_province(old))["status"] == "accepted"
    with pytest.raises(Refused) as refused:
        node.receive(verification_from_the_province(stranger))
    assert (refused.value.status, refused.value.error) == (403, "bad signature")


def test_once_the_previous_key_is_dropped_it_is_refused(tmp_path):
    old, new = new_key(), new_key()
    node = city([new], tmp_path)
    with pytest.raises(Refused) as refused:
        node.receive(verification_from_the_province(old))
    assert refused.value.error == "bad signature"


def test_a_malformed_previous_key_is_named():
    with pytest.raises(ValueError, match=r"previous_public_keys\[0\]"):
        CascadeConfig.model_validate(
            {
                "center_id": "ah", "region": "AH", "level": "province",
                "private_key": private_key_text(new_key()),
                "peers": [{
                    "id": "ah-hf", "region": "AH/HF", "level": "city", "direction": "lower",
                    "public_key": public_key_text(new_key()), "previous_public_keys": ["bm90IGEga2V5"],
                }],
            }
        )  # fmt: skip

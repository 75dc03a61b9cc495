"""Contract C4: what a collector sends to a center and what comes back (DESIGN §5).

One schema, two transports (HTTP ``POST /api/v1/ingest`` and MQTT QoS 1).  A batch is signed with
HMAC-SHA256 under the collector's own secret (:mod:`carbonflow.messages.signing`, purpose ``batch``) over
its canonical JSON (the batch without ``signature``, ``signed_at`` and ``nonce``, keys sorted, no
spaces) and its stamp, so the center can refuse a forged, altered, stale or replayed batch on either
transport.  The stamp is renewed at every send (the outbox keeps the content unsigned); the content —
and so the center's idempotency digest — stays the same.  Values travel as decimal strings exactly as
the device showed them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carbonflow.messages.signing import STAMP_FIELDS, sign, signature_of, signature_ok, stamp

__all__ = ["Ack", "Batch", "Command", "CommandResult", "DeviceStatus", "Reading", "sign"]

Quality = Literal["good", "estimated", "stale", "invalid"]
CommandKind = Literal["time_sync", "read_now", "reload_config", "restart", "set_carbon_factor"]
CommandStatus = Literal["queued", "sent", "acknowledged", "failed"]
MAX_READINGS_PER_BATCH = 50_000


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC)")
    return value.astimezone(UTC)


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    point: str = Field(min_length=1, max_length=200)  # "<device id>/<point name>"
    ts: datetime  # when the device measured it (device clock corrected by the collector), UTC
    value: str | None  # decimal string exactly as shown by the device; None when invalid
    quality: Quality = "good"

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("value")
    @classmethod
    def _decimal_text(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"value {value[:40]!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"value {value!r} is not finite")
        return value


class DeviceStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    online: bool
    last_seen: datetime | None = None
    clock_offset_s: float | None = None  # device clock minus collector clock
    firmware: str | None = None
    error: str | None = None


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collector_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    batch_id: str = Field(min_length=8, max_length=64)  # idempotency key (a UUID)
    seq: int = Field(ge=0)  # per collector, increasing; gaps tell the center a batch went missing
    created_at: datetime
    config_version: str | None = None
    readings: list[Reading] = Field(default_factory=list, max_length=MAX_READINGS_PER_BATCH)
    statuses: list[DeviceStatus] = Field(default_factory=list)
    signed_at: str | None = Field(default=None, max_length=64)  # the stamp (messages.signing)
    nonce: str | None = Field(default=None, max_length=64)
    signature: str | None = None

    @field_validator("created_at")
    @classmethod
    def _created_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    def canonical(self) -> bytes:
        """The content: what the signature covers besides the stamp, and what the center's idempotency
        digest hashes (the same for every send of one batch)."""
        body = self.model_dump(mode="json", exclude=set(STAMP_FIELDS))
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def unsigned(self) -> Batch:
        return self.model_copy(update=dict.fromkeys(STAMP_FIELDS))

    def signed(self, secret: bytes) -> Batch:
        """This batch with a fresh stamp and its signature (called at every send)."""
        signed_at, nonce = stamp()
        signature = signature_of(secret, "batch", signed_at, nonce, self.canonical())
        return self.model_copy(update={"signed_at": signed_at, "nonce": nonce, "signature": signature})

    def verify(self, secret: bytes, canonical: bytes | None = None) -> bool:
        """``canonical``: this batch's ``canonical()`` when the caller has it already (the center hashes
        the same bytes for its idempotency digest; serialising 2,000 readings twice cost ~8 ms)."""
        body = self.canonical() if canonical is None else canonical
        return signature_ok(secret, "batch", self.signed_at, self.nonce, body, self.signature)


class Ack(BaseModel):
    """The center's answer, sent only after the batch is committed to the database."""

    batch_id: str
    accepted: int  # readings stored now
    duplicates: int  # readings already stored (replay): (point, ts) seen before
    duplicate_batch: bool = False  # the whole batch_id was seen before
    conflicts: int = 0  # duplicates whose value differs from the stored one (kept, reported, not stored)


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: str
    collector_id: str
    kind: CommandKind
    device: str | None = None  # None: the collector itself (reload_config, restart)
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class CommandResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: str
    status: Literal["acknowledged", "failed"]
    detail: str = ""
    finished_at: datetime

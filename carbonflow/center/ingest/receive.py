"""Transport-independent ingestion: raw bytes of a batch → checked, authenticated, stored → Ack.

Order of checks, each refusing the whole batch with an error naming what is wrong (nothing stored):
JSON syntax (400) → schema (422: naive timestamp, bad decimal, missing field; the error names the
reading index and its point) → collector known (401) → HMAC signature under that collector's secret
(401) → the store's own checks (unknown point 422, reused batch_id 409).  HTTP and MQTT both call
``receive_batch``; only the way the answer goes back differs.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from carbonflow.center.store import (
    BadSignatureError,
    InvalidBatchError,
    Store,
    StoreError,
    UnknownCollectorError,
    collector_secret,
    ingest_batch,
)
from carbonflow.center.store.collector_admin import record_status_report
from carbonflow.center.store.readings import record_status
from carbonflow.messages.c4 import Ack, Batch, DeviceStatus, sign


class MalformedBatchError(StoreError):
    status_code = 400


def _describe(error: dict[str, Any], document: Any) -> tuple[str, dict[str, Any]]:
    """``reading 3 (point 'M1/2') value: ...`` from pydantic's first error and the raw document."""
    location = error.get("loc", ())
    where = ".".join(str(part) for part in location) or "batch"
    detail: dict[str, Any] = {"field": where}
    if len(location) >= 2 and location[0] in ("readings", "statuses") and isinstance(location[1], int):
        index = location[1]
        kind, name_key = ("reading", "point") if location[0] == "readings" else ("status", "device")
        name = None
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            name = document[location[0]][index].get(name_key)
        field = ".".join(str(part) for part in location[2:]) or kind
        where = f"{kind} {index}" + (f" ({name_key} {name!r})" if name else "") + f" {field}"
        detail.update({"index": index, name_key: name})
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}", detail


def decode_batch(raw: bytes | str) -> Batch:
    """Parse and validate a batch; errors name the offending reading (index and point)."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedBatchError(f"batch is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedBatchError("batch must be a JSON object")
    try:
        return Batch.model_validate(document)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        message, detail = _describe(errors[0], document)
        detail["errors"] = len(errors)
        raise InvalidBatchError(f"invalid batch: {message}", detail) from None


def authenticate(store: Store, batch: Batch) -> None:
    secret = collector_secret(store, batch.collector_id)
    if secret is None:
        raise UnknownCollectorError(f"unknown collector {batch.collector_id!r}")
    if not batch.verify(secret):
        raise BadSignatureError(
            f"bad signature on batch {batch.batch_id!r} of collector {batch.collector_id!r}"
        )


def verify_request_signature(store: Store, collector_id: str, payload: bytes, signature: str | None) -> None:
    """HMAC of a raw request body (or path, for GET) under the collector's secret."""
    secret = collector_secret(store, collector_id)
    if secret is None:
        raise UnknownCollectorError(f"unknown collector {collector_id!r}")
    if not signature or not hmac.compare_digest(signature, sign(payload, secret)):
        raise BadSignatureError(f"bad or missing X-Carbonflow-Signature for collector {collector_id!r}")


StatusHook = Callable[[], Any]  # called after device statuses were stored (the alarm engine's on_status)


def receive_batch(
    store: Store,
    raw: bytes | str,
    *,
    received_at: datetime | None = None,
    on_status: StatusHook | None = None,
) -> Ack:
    """Decode, authenticate and store one batch; the Ack is returned only after the commit."""
    batch = decode_batch(raw)
    authenticate(store, batch)
    ack = ingest_batch(store, batch, received_at=received_at)
    if on_status is not None and batch.statuses and not ack.duplicate_batch:
        on_status()
    return ack


def receive_status(
    store: Store, collector_id: str, raw: bytes | str, on_status: StatusHook | None = None
) -> Ack | None:
    """A message on the status topic: a Batch (stored like any batch, Ack returned) or a collector's
    live status ``{"collector_id", "config_version", "devices": [DeviceStatus...], ..., "signature"}``
    signed over its canonical JSON (keys sorted, no spaces) — device statuses and last seen are updated."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedBatchError(f"status is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedBatchError("status must be a JSON object")
    if "batch_id" in document:
        return receive_batch(store, raw, on_status=on_status)
    if document.get("collector_id") != collector_id:
        raise InvalidBatchError(
            f"status of collector {document.get('collector_id')!r} on the topic of {collector_id!r}"
        )
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), default=str).encode()
    verify_request_signature(store, collector_id, canonical, document.get("signature"))
    try:
        statuses = [DeviceStatus.model_validate(item) for item in document.get("devices") or []]
    except ValidationError as error:
        raise InvalidBatchError(f"invalid device status: {str(error).splitlines()[0]}") from None
    record_status(store, collector_id, statuses, config_version=document.get("config_version"))
    record_status_report(store, collector_id, unsigned)  # outbox state etc., shown in /collectors
    if on_status is not None and statuses:
        on_status()
    return None

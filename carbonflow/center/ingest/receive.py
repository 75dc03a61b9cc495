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
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from carbonflow.center.store import (
    BadSignatureError,
    InvalidBatchError,
    StaleMessageError,
    Store,
    StoreError,
    accept_fresh,
    collector_secret,
    ingest_batch,
    record_audit,
)
from carbonflow.center.store.collector_admin import record_status_report
from carbonflow.center.store.readings import record_status
from carbonflow.messages.c4 import Ack, Batch, DeviceStatus, sign

log = logging.getLogger(__name__)


class MalformedBatchError(StoreError):
    status_code = 400


JSON_NESTING_LIMIT = 32  # C4 messages nest 3 levels; anything near this is an attack on the parser
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: one pass, no per-character alternation
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_OPENING = frozenset(b"[{")


def json_too_deep(raw: bytes | str, limit: int = JSON_NESTING_LIMIT) -> bool:
    """Whether a JSON text opens more than ``limit`` arrays/objects inside each other (strings skipped)
    — checked before parsing, so a deeply nested body is a 400, never a RecursionError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_STRING.sub(b'""', data).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in _OPENING else -1
        if depth > limit:
            return True
    return False


def _load_json(raw: bytes | str, what: str) -> Any:
    if json_too_deep(raw):
        raise MalformedBatchError(f"{what} JSON nested deeper than {JSON_NESTING_LIMIT} levels")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise MalformedBatchError(f"{what} is not valid JSON: {error}") from None


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
    document = _load_json(raw, "batch")
    if not isinstance(document, dict):
        raise MalformedBatchError("batch must be a JSON object")
    try:
        return Batch.model_validate(document)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        message, detail = _describe(errors[0], document)
        detail["errors"] = len(errors)
        raise InvalidBatchError(f"invalid batch: {message}", detail) from None


def refuse_collector(store: Store, collector_id: str, what: str, reason: str) -> BadSignatureError:
    """The one answer to a collector message that fails authentication — the same for an unknown
    collector and a bad signature, so ids cannot be probed; the real reason goes to the log, and to the
    audit log when the collector exists (an unknown id costs no database write)."""
    log.warning("refused %s of collector %r: %s", what, collector_id, reason)
    if reason != "unknown collector":
        with contextlib.suppress(StoreError):
            record_audit(store, collector_id, "collector.refused", what, {"reason": reason})
    return BadSignatureError(f"{what} refused: collector authentication failed")


def authenticate(store: Store, batch: Batch, canonical: bytes | None = None) -> None:
    secret = collector_secret(store, batch.collector_id)
    if secret is None:
        raise refuse_collector(store, batch.collector_id, f"batch {batch.batch_id!r}", "unknown collector")
    if not batch.verify(secret, canonical):
        raise refuse_collector(store, batch.collector_id, f"batch {batch.batch_id!r}", "bad signature")


def verify_request_signature(store: Store, collector_id: str, payload: bytes, signature: str | None) -> None:
    """HMAC of a raw request body (or path, for GET) under the collector's secret."""
    secret = collector_secret(store, collector_id)
    if secret is None:
        raise refuse_collector(store, collector_id, "request", "unknown collector")
    if not signature or not hmac.compare_digest(signature, sign(payload, secret)):
        raise refuse_collector(store, collector_id, "request", "bad or missing X-Carbonflow-Signature")


def check_fresh(store: Store, collector_id: str, kind: str, nonce: Any, signed_at: Any) -> None:
    """Refuse (401, audited) a signed message that is stale, replayed or older than one accepted."""
    moment = None
    with contextlib.suppress(TypeError, ValueError):
        moment = datetime.fromisoformat(signed_at)
        moment = moment if moment.tzinfo is not None else None
    try:
        accept_fresh(store, collector_id, kind, nonce if isinstance(nonce, str) else None, moment,
                     now=datetime.now(UTC))  # fmt: skip
    except StaleMessageError as error:
        with contextlib.suppress(StoreError):
            record_audit(store, collector_id, "collector.refused", kind, {"reason": error.detail["reason"]})
        raise


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
    canonical = batch.canonical()  # once: the signature and the store's content digest cover these bytes
    authenticate(store, batch, canonical)
    ack = ingest_batch(store, batch, received_at=received_at, canonical=canonical)
    if on_status is not None and batch.statuses and not ack.duplicate_batch:
        on_status()
    return ack


def receive_status(
    store: Store, collector_id: str, raw: bytes | str, on_status: StatusHook | None = None
) -> Ack | None:
    """A message on the status topic: a Batch (stored like any batch, Ack returned) or a collector's
    live status ``{"collector_id", "config_version", "devices": [DeviceStatus...], ..., "signature"}``
    signed over its canonical JSON (keys sorted, no spaces) — device statuses and last seen are updated."""
    document = _load_json(raw, "status")
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
    check_fresh(store, collector_id, "status", unsigned.get("nonce"), unsigned.get("signed_at"))
    try:
        statuses = [DeviceStatus.model_validate(item) for item in document.get("devices") or []]
    except ValidationError as error:
        raise InvalidBatchError(f"invalid device status: {str(error).splitlines()[0]}") from None
    record_status(store, collector_id, statuses, config_version=document.get("config_version"))
    record_status_report(store, collector_id, unsigned)  # outbox state etc., shown in /collectors
    if on_status is not None and statuses:
        on_status()
    return None

"""Transport-independent ingestion: raw bytes of a batch → checked, authenticated, stored → Ack.

Order of checks, each refusing the whole batch with an error naming what is wrong (nothing stored):
JSON syntax (400) → schema (422: naive timestamp, bad decimal, missing field; the error names the
reading index and its point) → collector known (401) → HMAC signature under that collector's secret
(401) → fresh: signed within the window, nonce unseen (401 naming stale/replayed, audited) → the store's
own checks (unknown point 422, reused batch_id 409).  HTTP and MQTT both call ``receive_batch``; only the
way the answer goes back differs.  Every other collector message (status, command result, signed
request, image) goes through the same two steps: :func:`authenticate_signed` then :func:`check_fresh`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from pydantic import ValidationError

from carbonflow.center.ingest.grouping import BatchGroups
from carbonflow.center.store import (
    BadSignatureError,
    InvalidBatchError,
    StaleMessageError,
    Store,
    StoreError,
    accept_fresh,
    collector_secrets,
    ingest_batch,
    record_audit,
    retire_previous_secret,
)
from carbonflow.center.store.collector_admin import record_status_report
from carbonflow.center.store.maintenance import record_command_result
from carbonflow.center.store.readings import record_status
from carbonflow.messages.c4 import Ack, Batch, CommandResult, DeviceStatus
from carbonflow.messages.signing import (
    NONCE_HEADER,
    SIGNED_AT_HEADER,
    document_content,
    document_signature_ok,
    headers_signature_ok,
    parse_signed_at,
    request_body,
)

log = logging.getLogger(__name__)


class MalformedBatchError(StoreError):
    status_code = 400


JSON_NESTING_LIMIT = 32  # C4 messages nest 3 levels; anything near this is an attack on the parser
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: one pass, no per-character alternation
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def json_too_deep(raw: bytes | str, limit: int = JSON_NESTING_LIMIT) -> bool:
    """Whether a JSON text opens more than ``limit`` arrays/objects inside each other (strings skipped)
    — checked before parsing, so a deeply nested body is a 400, never a RecursionError.

    Runs on every request body (the HTTP guard, then ``receive_batch``), so in C where it can: a text
    without a backslash and with its quotes paired has its strings exactly between the 1st and 2nd
    quote, the 3rd and 4th…, dropped by one split (the regex gives the same, 4× slower: ~2.3 ms for a
    2,000-reading batch); the depth is the largest running sum of the brackets' ±1."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data or data.count(b'"') % 2:
        outside = _JSON_STRING.sub(b'""', data)
    else:
        outside = b"".join(data.split(b'"')[::2])
    steps = array("b", outside.translate(None, _NOT_BRACKETS).translate(_STEPS))
    return max(accumulate(steps), default=0) > limit


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


def authenticate_signed(
    store: Store, collector_id: str, what: str, check: Callable[[bytes], bool], reason: str = "bad signature"
) -> None:
    """Refuse (the uniform 401) a message of an unknown collector or whose signature ``check`` (given
    the collector's secret) fails."""
    secrets = collector_secrets(store, collector_id)  # the current one, then one being rotated out
    if not secrets:
        raise refuse_collector(store, collector_id, what, "unknown collector")
    for position, secret in enumerate(secrets):
        if check(secret):
            if position == 0 and len(secrets) > 1:  # the collector holds the new secret now
                retire_previous_secret(store, collector_id)
            return
    raise refuse_collector(store, collector_id, what, reason)


def authenticate(store: Store, batch: Batch, canonical: bytes | None = None) -> None:
    authenticate_signed(
        store, batch.collector_id, f"batch {batch.batch_id!r}", lambda secret: batch.verify(secret, canonical)
    )


def verify_request(
    store: Store, collector_id: str, method: str, target: str, body: bytes, headers: Any
) -> None:
    """A collector's signed HTTP request (``target``: path and ``?query``): signature over method, target,
    stamp and body, then fresh (a captured ``GET …/commands`` cannot be replayed)."""
    payload = request_body(method, target, body)
    authenticate_signed(
        store,
        collector_id,
        "request",  # the same words for every collector: ids cannot be probed
        lambda secret: headers_signature_ok(secret, "request", payload, headers),
        "bad or missing X-Carbonflow-Signature",
    )
    nonce, signed_at = headers.get(NONCE_HEADER), headers.get(SIGNED_AT_HEADER)
    check_fresh(store, collector_id, "request", nonce, signed_at, ordered=False)


def check_fresh(
    store: Store, collector_id: str, kind: str, nonce: Any, signed_at: Any, *, ordered: bool = True
) -> None:
    """Refuse (401, audited) a signed message that is stale, replayed or (``ordered``) older than one
    accepted.  Called only once the signature checked out, so the reason can be told."""
    try:
        accept_fresh(store, collector_id, kind, nonce if isinstance(nonce, str) else None,
                     parse_signed_at(signed_at), now=datetime.now(UTC), ordered=ordered)  # fmt: skip
    except StaleMessageError as error:
        with contextlib.suppress(StoreError):
            record_audit(store, collector_id, "collector.refused", kind, {"reason": error.detail["reason"]})
        raise


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    document = _load_json(raw, what)
    if not isinstance(document, dict):
        raise MalformedBatchError(f"{what} must be a JSON object")
    return document


def authenticate_document(store: Store, collector_id: str, document: dict[str, Any], purpose: str) -> None:
    """A JSON document signed inside (``signed_at``, ``nonce``, ``signature``): authenticated, fresh."""
    authenticate_signed(
        store,
        collector_id,
        purpose,
        lambda secret: document_signature_ok(document, secret, purpose),
        "bad or missing signature",
    )
    check_fresh(
        store, collector_id, purpose, document.get("nonce"), document.get("signed_at"),
        ordered=purpose == "status",  # only the latest status counts; results stand on their own
    )  # fmt: skip


# called after a collector message was stored (the alarm engine's on_status), with keywords:
# collector_id, devices (ids whose rows it changed: statuses, last seen), statuses (device statuses among
# it: the state rules run), conflicts (readings offered again with another value)
StatusHook = Callable[..., Any]


def receive_batch(
    store: Store,
    raw: bytes | str,
    *,
    received_at: datetime | None = None,
    on_status: StatusHook | None = None,
    topic_collector: str | None = None,
    groups: BatchGroups | None = None,
) -> Ack:
    """Decode, authenticate and store one batch; the Ack is returned only after the commit.
    ``topic_collector``: the collector whose topic the batch came on (MQTT) — another collector's batch
    there is refused before anything else is looked at.  ``groups``: the receiver's ``BatchGroups``, to
    store the batch together with those of other threads waiting at the same time."""
    batch = decode_batch(raw)
    if topic_collector is not None and batch.collector_id != topic_collector:
        raise StoreError(
            f"batch of collector {batch.collector_id!r} published on the topic of {topic_collector!r}"
        )
    canonical = batch.canonical()  # once: the signature and the store's content digest cover these bytes
    authenticate(store, batch, canonical)
    # not ordered: up to max_in_flight batches are sent at once; a replay is refused by its nonce (and
    # would be a duplicate by batch_id anyway); a refused batch stays in the outbox and is re-signed
    check_fresh(store, batch.collector_id, "batch", batch.nonce, batch.signed_at, ordered=False)
    if groups is None:
        ack = ingest_batch(store, batch, received_at=received_at, canonical=canonical)
    else:
        ack = groups.store_batch(batch, received_at=received_at, canonical=canonical)
    if on_status is not None and not ack.duplicate_batch:
        devices = {reading.point.rsplit("/", 1)[0] for reading in batch.readings}
        devices.update(s.device for s in batch.statuses if s.device != batch.collector_id)
        on_status(
            collector_id=batch.collector_id,
            devices=sorted(devices),
            statuses=bool(batch.statuses),
            conflicts=ack.conflicts,
        )
    return ack


def receive_status(
    store: Store, collector_id: str, raw: bytes | str, on_status: StatusHook | None = None
) -> Ack | None:
    """A message on the status topic: a Batch (stored like any batch, Ack returned) or a collector's
    live status ``{"collector_id", "config_version", "devices": [DeviceStatus...], ..., "signature"}``
    signed over its canonical JSON (keys sorted, no spaces) — device statuses and last seen are updated."""
    document = _json_object(raw, "status")
    if "batch_id" in document:
        return receive_batch(store, raw, on_status=on_status)
    if document.get("collector_id") != collector_id:
        raise InvalidBatchError(
            f"status of collector {document.get('collector_id')!r} on the topic of {collector_id!r}"
        )
    authenticate_document(store, collector_id, document, "status")
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    try:
        statuses = [DeviceStatus.model_validate(item) for item in document.get("devices") or []]
    except ValidationError as error:
        raise InvalidBatchError(f"invalid device status: {str(error).splitlines()[0]}") from None
    record_status(store, collector_id, statuses, config_version=document.get("config_version"))
    record_status_report(store, collector_id, unsigned)  # outbox state etc., shown in /collectors
    if on_status is not None:
        devices = sorted({s.device for s in statuses if s.device != collector_id})
        on_status(collector_id=collector_id, devices=devices, statuses=bool(statuses))
    return None


def receive_command_result(store: Store, collector_id: str, raw: bytes | str) -> CommandResult:
    """A command result over MQTT: a CommandResult document signed inside (purpose ``command-result``)."""
    document = _json_object(raw, "command result")
    authenticate_document(store, collector_id, document, "command-result")
    try:
        result = CommandResult.model_validate(document_content(document))
    except ValidationError as error:
        raise InvalidBatchError(f"invalid command result: {str(error).splitlines()[0]}") from None
    record_command_result(store, collector_id, result)
    return result

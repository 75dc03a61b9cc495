"""The one way every message between a collector and its center is signed and checked for freshness
(docs/message-signing.md).

Every signature is hex HMAC-SHA256, under the collector's own secret, of :func:`signed_payload`::

    carbonflow-{purpose}\\n{signed_at}\\n{nonce}\\n{body}

``purpose`` names the kind of message (``batch``, ``status``, ``image``, ``request``, ``command``,
``command-result``, ``config``), so a signature made for one kind can never pass for another — this is
what keeps a collector's own messages from being reflected back to it as center commands, although both
directions use the same secret.  ``signed_at`` (the sender's wall clock, ISO 8601 UTC) and ``nonce``
(random, 32 hex digits) are inside the signature: the receiver refuses a message older than the
freshness window (stale) or whose nonce it has seen (replayed).  ``body`` is the message's own canonical
bytes (a JSON document: sorted keys, no spaces, without ``signature``, ``signed_at`` and ``nonce``).

Pure: no I/O; the center keeps its nonces in the database, the collector in a :class:`NonceGuard`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

SIGNATURE_HEADER = "X-Carbonflow-Signature"
SIGNED_AT_HEADER = "X-Carbonflow-Signed-At"
NONCE_HEADER = "X-Carbonflow-Nonce"
FRESHNESS_WINDOW = timedelta(minutes=5)
STAMP_FIELDS = ("signed_at", "nonce", "signature")


def sign(payload: bytes, secret: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def stamp() -> tuple[str, str]:
    """A fresh ``(signed_at, nonce)``: the wall clock (whatever clock the data runs on), 128 random bits."""
    return datetime.now(UTC).isoformat(), secrets.token_hex(16)


def signed_payload(purpose: str, signed_at: str, nonce: str, body: bytes) -> bytes:
    return f"carbonflow-{purpose}\n{signed_at}\n{nonce}\n".encode() + body


def signature_of(secret: bytes, purpose: str, signed_at: str, nonce: str, body: bytes) -> str:
    return sign(signed_payload(purpose, signed_at, nonce, body), secret)


def signature_ok(
    secret: bytes, purpose: str, signed_at: Any, nonce: Any, body: bytes, signature: Any
) -> bool:
    """Whether ``signature`` is ours for this message.  A missing stamp is signed as empty text, so an
    authentic message without one is refused by the freshness check as *unfresh* (telling an outdated
    collector from a forger) rather than as a bad signature."""
    if not isinstance(signature, str) or not signature:
        return False
    stamp_text = [value if isinstance(value, str) else "" for value in (signed_at, nonce)]
    return hmac.compare_digest(signature, signature_of(secret, purpose, *stamp_text, body))


def canonical_json(document: Any) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def sign_document(document: dict[str, Any], secret: bytes, purpose: str) -> dict[str, Any]:
    """``document`` with ``signed_at``, ``nonce`` and ``signature`` added (any old ones replaced)."""
    content = {key: value for key, value in document.items() if key not in STAMP_FIELDS}
    signed_at, nonce = stamp()
    signature = signature_of(secret, purpose, signed_at, nonce, canonical_json(content))
    return {**content, "signed_at": signed_at, "nonce": nonce, "signature": signature}


def document_content(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its stamp (what the signature's body covers)."""
    return {key: value for key, value in document.items() if key not in STAMP_FIELDS}


def document_signature_ok(document: dict[str, Any], secret: bytes, purpose: str) -> bool:
    return signature_ok(
        secret,
        purpose,
        document.get("signed_at"),
        document.get("nonce"),
        canonical_json(document_content(document)),
        document.get("signature"),
    )


def request_body(method: str, target: str, body: bytes) -> bytes:
    """What a collector's HTTP request signature covers besides the stamp: method, path with query, body."""
    return f"{method.upper()}\n{target}\n".encode() + body


def stamp_headers(secret: bytes, purpose: str, body: bytes) -> dict[str, str]:
    """A fresh stamp and its signature as HTTP headers (messages whose body is not a JSON document)."""
    signed_at, nonce = stamp()
    return {
        SIGNED_AT_HEADER: signed_at,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature_of(secret, purpose, signed_at, nonce, body),
    }


def headers_signature_ok(secret: bytes, purpose: str, body: bytes, headers: Any) -> bool:
    """Whether ``headers`` (any mapping with ``get``) carry our signature of ``body`` for ``purpose``."""
    return signature_ok(
        secret,
        purpose,
        headers.get(SIGNED_AT_HEADER),
        headers.get(NONCE_HEADER),
        body,
        headers.get(SIGNATURE_HEADER),
    )


def request_headers(secret: bytes, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """The signature headers of one collector request (``target``: the path and ``?query``)."""
    return stamp_headers(secret, "request", request_body(method, target, body))


def parse_signed_at(text: Any) -> datetime | None:
    """The stamp's time, or None when it is missing, malformed or naive."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class NonceJournal(Protocol):
    """Where a :class:`NonceGuard` keeps the nonces it accepted, so a restart does not forget them."""

    def nonces_since(self, since: datetime) -> list[tuple[str, datetime]]: ...

    def record_nonce(self, nonce: str, seen_at: datetime, forget_before: datetime) -> None: ...


class NonceGuard:
    """Freshness on the receiving side that has no database (the collector): a message is accepted once,
    and only within the window.  Nonces are remembered for twice the window (a message that old is
    stale anyway), at most ``capacity`` of them — the center sends a few messages a minute.  With a
    ``journal`` (the collector's outbox file) they also outlive a restart: a command captured before it
    cannot be replayed after it."""

    def __init__(
        self,
        window: timedelta = FRESHNESS_WINDOW,
        capacity: int = 100_000,
        journal: NonceJournal | None = None,
        now: datetime | None = None,
    ) -> None:
        self.window, self.capacity, self.journal = window, capacity, journal
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        if journal is not None:
            since = (now or datetime.now(UTC)) - 2 * window
            self._seen.update(sorted(journal.nonces_since(since), key=lambda item: item[1]))

    def refusal(self, signed_at: Any, nonce: Any, now: datetime | None = None) -> str | None:
        """None (accepted, nonce recorded) or why the message is refused: unfresh, stale, replayed."""
        now = now or datetime.now(UTC)
        moment = parse_signed_at(signed_at)
        if moment is None or not isinstance(nonce, str) or not nonce or len(nonce) > 64:
            return "unfresh"
        if abs(now - moment) > self.window:
            return "stale"
        while self._seen and (
            len(self._seen) >= self.capacity or next(iter(self._seen.values())) < now - 2 * self.window
        ):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return "replayed"
        self._seen[nonce] = now
        if self.journal is not None:
            self.journal.record_nonce(nonce, now, now - 2 * self.window)
        return None


def config_body(collector_id: str, version: str, text: str) -> bytes:
    """What the center's signature of a pushed configuration covers besides the stamp."""
    return f"{collector_id}\n{version}\n".encode() + text.encode("utf-8")

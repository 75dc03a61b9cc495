"""What became of one message sent to a peer, classified once for every sender.

``acked``: the peer committed it (the outbox may delete it).  ``rejected``: the peer refuses this message
for good (HTTP 4xx other than the ones below): kept aside, never resent by itself.  ``unauthorized``
(401/403): the message is fine, our credentials are not: it stays queued and is retried with the longest
back-off.  ``retry``: 408/425/429, 5xx, no answer, no acknowledgement in time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

RETRY_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})
Outcome = Literal["acked", "rejected", "retry", "unauthorized"]


class Sender(Protocol):
    """A connection to a peer that queued messages go out over (HttpSender, MqttSession)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class DeliveryError(Exception):
    """The peer could not be reached or refused a request (not a verdict on a queued message)."""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    ack: Any = None  # the peer's acknowledgement, when it sends one
    status: int | None = None  # HTTP status, when there was one
    error: str = ""

    @property
    def trouble(self) -> bool:
        """The peer is away or refuses us: the sender backs off."""
        return self.outcome in ("retry", "unauthorized")


def classify_status(status: int, detail: str) -> SendResult:
    """The verdict of an HTTP answer other than 200."""
    error = f"HTTP {status}: {detail}"
    if status in AUTH_STATUSES:
        return SendResult("unauthorized", status=status, error=error)
    if 400 <= status < 500 and status not in RETRY_STATUSES:
        return SendResult("rejected", status=status, error=error)
    return SendResult("retry", status=status, error=error)


def unreachable(error: Exception) -> SendResult:
    return SendResult("retry", error=f"center unreachable: {type(error).__name__}: {error}".strip(": "))


def error_text(response: httpx.Response) -> str:
    """One short line from an error answer: the ``{"error", "detail"}`` body, else the raw text."""
    return error_text_of(response.content)


def error_text_of(content: bytes) -> str:
    """:func:`error_text` of an answer's body bytes."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")[:300]
    if isinstance(body, dict) and "error" in body:
        detail = body.get("detail")
        return f"{body['error']}" + (f" ({json.dumps(detail)[:300]})" if detail else "")
    return json.dumps(body)[:300]

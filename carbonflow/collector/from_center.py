"""The collector's check of what its center sends down: commands (HTTP polling and MQTT) and pushed
configurations must carry the center's signature under this collector's secret, with a fresh stamp.

A forged, stale or replayed message is logged and ignored — never acted on, never answered (an answer
would tell a forger what passed).  Nonces are remembered (:class:`NonceGuard`); in memory alone, after a
restart a command replayed within the window would pass once more — unless a ``journal`` keeps them
(the collector's outbox file does: :meth:`Outbox.record_nonce`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from carbonflow.messages.c4 import Command
from carbonflow.messages.signing import (
    NONCE_HEADER,
    SIGNED_AT_HEADER,
    NonceGuard,
    NonceJournal,
    document_content,
    document_signature_ok,
    headers_signature_ok,
)

log = logging.getLogger(__name__)


class FromCenter:
    def __init__(self, secret: bytes, journal: NonceJournal | None = None) -> None:
        self.secret = secret
        self.guard = NonceGuard(journal=journal)
        self.refused = 0  # messages ignored in this run (forged, stale, replayed, malformed)

    def _refuse(self, what: str, reason: str) -> None:
        self.refused += 1
        log.warning("%s ignored: %s", what, reason)

    def fresh(self, what: str, signed_at: Any, nonce: Any) -> bool:
        reason = self.guard.refusal(signed_at, nonce)
        if reason is not None:
            self._refuse(what, reason)  # unfresh (no stamp), stale or replayed
        return reason is None

    def command(self, item: Any, what: str) -> Command | None:
        """A Command from one signed document (dict or JSON bytes), or None (logged) when it is not
        the center's, not fresh or malformed."""
        if isinstance(item, bytes | str):
            try:
                item = json.loads(item)
            except (json.JSONDecodeError, UnicodeDecodeError):
                item = None
        if not isinstance(item, dict):
            self._refuse(what, "not a JSON object")
            return None
        label = f"{what}: command {str(item.get('command_id'))[:60]!r}"
        if not document_signature_ok(item, self.secret, "command"):
            self._refuse(label, "not signed by the center")
            return None
        if not self.fresh(label, item.get("signed_at"), item.get("nonce")):
            return None
        try:
            return Command.model_validate(document_content(item))
        except ValidationError as error:
            self._refuse(what, f"malformed Command: {error.errors()[0]['msg']}")
            return None

    def config_ok(self, body: bytes, headers: Any, what: str) -> bool:
        """A pushed configuration: the center's signature in the response headers, fresh."""
        if not headers_signature_ok(self.secret, "config", body, headers):
            self._refuse(what, "not signed by the center")
            return False
        return self.fresh(what, headers.get(SIGNED_AT_HEADER), headers.get(NONCE_HEADER))

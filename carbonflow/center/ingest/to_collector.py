"""What the center sends down to a collector, signed by the center (docs/message-signing.md).

Commands (HTTP answer of ``GET …/commands`` and MQTT ``carbonflow/{id}/commands``) are Command documents
signed inside (purpose ``command``); a pushed configuration comes with ``X-Carbonflow-Signed-At``,
``X-Carbonflow-Nonce`` and ``X-Carbonflow-Signature`` (purpose ``config``).  The key is the collector's
own secret (the previous one while a rotation waits for the collector) — HMAC, like the other
direction: the purpose inside every signature keeps one direction's
messages from passing for the other's, and the secret is already on both ends (see the document for why
not Ed25519).  Each send is stamped anew, so a command sent again after a timeout is fresh again.

A ``reload_config`` command carries the configuration's text inside its signed document (``params.text``,
added as it is sent — the queue keeps only the version): an MQTT collector has no HTTP center to fetch
it from, and an HTTP one needs no second request.  The collector installs only text that came inside a
command it verified (docs/collector.md).
"""

from __future__ import annotations

from typing import Any

from carbonflow.center.store import NotFoundError, Store, collector_config, collector_signing_secret
from carbonflow.messages.c4 import Command
from carbonflow.messages.signing import config_body, sign_document, stamp_headers


def signed_commands(store: Store, collector_id: str, commands: list[Command]) -> list[dict[str, Any]]:
    if not commands:
        return []
    secret = collector_signing_secret(store, collector_id)  # the one it holds (a rotation may wait)
    if secret is None:  # the collector was removed meanwhile: nothing it could verify
        return []
    return [sign_document(_with_config_text(store, command), secret, "command") for command in commands]


def _with_config_text(store: Store, command: Command) -> dict[str, Any]:
    document = command.model_dump(mode="json")
    params = document.get("params") or {}
    if command.kind == "reload_config" and params.get("version") is not None:
        try:
            text = collector_config(store, command.collector_id, str(params["version"]))
        except NotFoundError:  # a version removed meanwhile: the collector fetches (and is told so)
            return document
        document["params"] = {**params, "text": text}
    return document


def config_headers(store: Store, collector_id: str, version: str, text: str) -> dict[str, str]:
    secret = collector_signing_secret(store, collector_id)  # the one it holds (a rotation may wait)
    if secret is None:
        return {}
    return stamp_headers(secret, "config", config_body(collector_id, version, text))

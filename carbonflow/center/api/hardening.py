"""Transport-level guards of the center's HTTP edge, as plain ASGI middleware:

* response headers on every answer: Content-Security-Policy (scripts from the center only, no framing),
  X-Frame-Options, X-Content-Type-Options, Referrer-Policy; Strict-Transport-Security under HTTPS;
* request bodies larger than ``max_body_bytes`` → 413, JSON nested deeper than ``max_json_depth`` → 400,
  both as the API's JSON error and before any route (or authentication) runs.
"""

from __future__ import annotations

import json
import re

from carbonflow.center.ingest.receive import JSON_NESTING_LIMIT, json_too_deep

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's documentation pages load Swagger UI / ReDoc from a CDN with an inline bootstrap script
DOCS_CSP = (
    "default-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: https:; "
    "frame-ancestors 'none'"
)
DOCS = re.compile(r"^/(docs|redoc)(/|$)")
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _TooLarge(Exception):
    pass


def _json_error(status: int, error: str, detail: object = None) -> tuple[dict, bytes]:
    body = json.dumps({"error": error, "detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class Hardening:
    def __init__(self, app, *, max_body_bytes: int, max_json_depth: int = JSON_NESTING_LIMIT) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        csp = DOCS_CSP if DOCS.match(scope.get("path", "")) else CSP

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", csp.encode()), *_HEADERS]
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        refusal = await self._refusal(scope, receive)
        if isinstance(refusal, tuple):
            start, body = refusal
            await send_with_headers(start)
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, refusal, send_with_headers)

    async def _refusal(self, scope, receive):
        """A 413/400 answer, or a ``receive`` that replays the (checked) body to the app."""
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return _json_error(413, f"request body over {self.max_body_bytes} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return _json_error(413, f"request body over {self.max_body_bytes} bytes")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunk for chunk in chunks if isinstance(chunk, bytes))
        if json_too_deep(body, self.max_json_depth):
            return _json_error(400, f"request JSON nested deeper than {self.max_json_depth} levels")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

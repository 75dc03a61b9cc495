"""Every write a user makes through the API goes into the audit log (who, what, when, from where).

Routes already audit what they mean (``command.queue``, ``user.update``, ``alarm.ack`` …); this adds one
``http.<method>`` entry per state-changing request of a logged-in user — path, answer status and the
client address — so a write no route thought to audit is still on record, refused ones included.  Left
out: collector traffic (signed by the collector, recorded in ``batches`` and, when refused, audited by
ingest), the login itself (``login`` / ``login.failed`` entries) and reads.
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carbonflow.center.store import record_audit

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
log = logging.getLogger(__name__)


class AuditWrites:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # shared by any copy of the scope further in
        status = 500  # what the client sees if the app fails before answering

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            principal = state.get("principal")  # set by deps.authorize, for users only
            if principal is not None:
                await anyio.to_thread.run_sync(self._record, scope, principal.user.name, status)

    def _record(self, scope: Scope, actor: str, status: int) -> None:
        store = scope["app"].state.store
        client = scope.get("client")
        detail = {"status": status, "from": client[0] if client else "?"}
        try:
            record_audit(store, actor, f"http.{scope['method'].lower()}", scope["path"], detail)
        except Exception:  # the answer is sent already: an audit failure is logged, never raised
            log.exception("could not audit %s %s by %s", scope["method"], scope["path"], actor)

"""Live updates: WebSocket ``/api/v1/live`` pushes the latest interval's totals whenever a new one is stored,
and ``{"type": "alarms", "counts", "items"}`` whenever alarms are raised, cleared or acknowledged (the
items changed since the last message; the first message after connecting carries the active ones).

Auth: the session cookie (the UI) or ``?token=`` (scripts); without a valid one the socket is closed with
code 4401.  Each socket polls the store every ``settings.live_poll_s`` seconds — one cheap ``max(ts)``
query — which needs no coupling to the metering process (another process may write the intervals).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.deps import SESSION_COOKIE, user_of_token
from carbonflow.center.api.routes._common import jsonable
from carbonflow.center.store import alarm_counts, interval_header, latest_interval_ts, list_alarms
from carbonflow.center.store.alarms import latest_alarm_change

router = APIRouter(prefix="/api/v1", tags=["live"])


def _totals_message(header: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "interval",
        "ts": header["ts"],
        "interval_s": header["interval_s"],
        "totals": header["totals"],
        "generation_energy_kwh": header["generation_energy_kwh"],
        "load_energy_kwh": header["load_energy_kwh"],
    }


async def _alarm_changes(socket: WebSocket, store, seen):
    """Send the alarms changed since ``seen`` (None: the active ones); the new watermark."""
    latest = await run_in_threadpool(latest_alarm_change, store)
    if latest is None or latest == seen:
        return seen
    if seen is None:
        items = await run_in_threadpool(lambda: list_alarms(store, state="active"))
    else:
        items = await run_in_threadpool(lambda: list_alarms(store, state="all", updated_after=seen))
    counts = await run_in_threadpool(alarm_counts, store)
    await socket.send_json(jsonable({"type": "alarms", "counts": counts, "items": items}))
    return latest


@router.websocket("/live")
async def live(socket: WebSocket) -> None:
    token = socket.query_params.get("token") or socket.cookies.get(SESSION_COOKIE)
    user = await run_in_threadpool(user_of_token, socket.app, token)
    if user is None:
        await socket.close(code=4401, reason="login required")
        return
    await socket.accept()
    store, settings = socket.app.state.store, socket.app.state.settings
    sent = None
    alarms_seen = None
    try:
        while True:
            latest = await run_in_threadpool(latest_interval_ts, store)
            if latest is not None and latest != sent:
                header = await run_in_threadpool(interval_header, store, latest)
                if header is not None:  # None: purged between the two queries
                    await socket.send_json(jsonable(_totals_message(header)))
                sent = latest
            alarms_seen = await _alarm_changes(socket, store, alarms_seen)
            with contextlib.suppress(TimeoutError):  # a message from the client only wakes the loop early
                await asyncio.wait_for(socket.receive_text(), timeout=settings.live_poll_s)
    except WebSocketDisconnect:
        return

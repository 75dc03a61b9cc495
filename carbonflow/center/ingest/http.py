"""HTTP transport of C4: ``POST /api/v1/ingest`` with the Batch JSON as body.

200 + Ack JSON only after the commit; errors are JSON ``{"error", "detail"}`` (see ``receive``).
The handler reads the raw body itself (not a pydantic body parameter) so that the errors name the
offending reading the same way on HTTP and MQTT.  Database work runs in the thread pool; batches
whose requests wait there at the same time are stored in one transaction (``grouping``), each
answered on its own.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from carbonflow.center.ingest.receive import receive_batch
from carbonflow.messages.c4 import Ack

router = APIRouter()


@router.post("/api/v1/ingest", response_model=Ack, tags=["ingest"])
async def ingest(request: Request) -> Ack:
    raw = await request.body()
    alarms = getattr(request.app.state, "alarms", None)  # device statuses feed the alarm rules
    hook = None if alarms is None else alarms.on_status
    groups = getattr(request.app.state, "batch_groups", None)  # requests in flight stored together
    return await run_in_threadpool(
        lambda: receive_batch(request.app.state.store, raw, on_status=hook, groups=groups)
    )

"""Collector-facing endpoints of remote maintenance (signed by the collector, see ``deps``); the
commands go back signed by the center (``ingest.to_collector``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from carbonflow.center.api.deps import RawBody, SignedCollector, StoreDep
from carbonflow.center.ingest.to_collector import signed_commands
from carbonflow.center.store import InvalidBatchError, record_command_result, take_queued_commands
from carbonflow.messages.c4 import CommandResult

router = APIRouter(prefix="/api/v1/collectors", tags=["collectors"])


@router.get("/{collector_id}/commands")
def queued_commands(collector_id: SignedCollector, store: StoreDep) -> list[dict[str, Any]]:
    """The collector's queued commands, oldest first, each a Command signed by the center (``signed_at``,
    ``nonce``, ``signature`` added); they are marked ``sent``."""
    return signed_commands(store, collector_id, take_queued_commands(store, collector_id))


@router.post("/{collector_id}/command-results")
def command_result(body: RawBody, collector_id: SignedCollector, store: StoreDep) -> dict[str, str]:
    try:
        result = CommandResult.model_validate_json(body)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidBatchError(f"invalid command result: {where}: {first['msg']}") from None
    record_command_result(store, collector_id, result)
    return {"command_id": result.command_id, "status": result.status}

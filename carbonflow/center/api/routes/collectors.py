"""Collector-facing endpoints of remote maintenance (signed by the collector, see ``deps``)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError

from carbonflow.center.api.deps import RawBody, SignedCollector, StoreDep
from carbonflow.center.store import InvalidBatchError, record_command_result, take_queued_commands
from carbonflow.messages.c4 import Command, CommandResult

router = APIRouter(prefix="/api/v1/collectors", tags=["collectors"])


@router.get("/{collector_id}/commands", response_model=list[Command])
def queued_commands(collector_id: SignedCollector, store: StoreDep) -> list[Command]:
    """The collector's queued commands, oldest first; they are marked ``sent``."""
    return take_queued_commands(store, collector_id)


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

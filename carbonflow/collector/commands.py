"""Remote-maintenance commands on the collector: a registry keyed by command kind, each handler with
typed (pydantic) parameters, and the loop that fetches commands and sends their results back.

An unknown kind or parameters that do not validate give a ``failed`` result with a one-line reason;
so does any error of the device or of the configuration.  A command sent again by the center (its
answer was lost) is answered again, not run twice; a result the center did not take is sent again
later, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from carbonflow.collector.clients.errors import DeviceError
from carbonflow.collector.config import ConfigError
from carbonflow.collector.pollers import Clock
from carbonflow.delivery import DeliveryError
from carbonflow.messages.c4 import Command, CommandResult
from carbonflow.protocols.errors import ProtocolError

if TYPE_CHECKING:
    from carbonflow.collector.service import DeviceRunner

log = logging.getLogger(__name__)
FAILURES = (DeviceError, OSError, ValueError, KeyError, ConfigError, ProtocolError)


class Maintained(Protocol):
    """What a command handler may do to the collector."""

    def targets(self, device: str | None) -> list[DeviceRunner]: ...

    async def restart_polling(self) -> int: ...

    async def reload_config(
        self, version: str | None = None, url: str | None = None, text: str | None = None
    ) -> str: ...

    def batch_now(self) -> None: ...


class NoParams(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReloadParams(BaseModel):
    """A version pushed by the center (fetched from ``url``, checked, written); none: re-read the file."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    version: str | None = None
    url: str | None = None
    # the configuration itself, inside the center's signed command (MQTT collectors have no URL to fetch)
    text: str | None = None


class CarbonFactorParams(BaseModel):
    """``factor`` or ``factors`` (decimal strings); DL/T 698.45 also ``start`` and ``interval_s``;
    DL/T 645 ``di``, Modbus ``point``.  Other keys (``unit``) are passed on as they are."""

    model_config = ConfigDict(extra="allow")
    factor: Decimal | None = None
    factors: list[Decimal] | None = None
    start: datetime | None = None
    interval_s: int | None = None
    di: str | None = None
    point: str | None = None


@dataclass(frozen=True)
class CommandHandler:
    params: type[BaseModel]
    run: Callable[[Maintained, Command, Any], Awaitable[str]]


class CommandRegistry:
    def __init__(self) -> None:
        self.handlers: dict[str, CommandHandler] = {}

    def register(self, kind: str, params: type[BaseModel] = NoParams):
        def add(run: Callable[[Maintained, Command, Any], Awaitable[str]]):
            self.handlers[kind] = CommandHandler(params, run)
            return run

        return add

    async def run(self, target: Maintained, command: Command) -> str:
        """The handler's detail line; raises (ValueError for an unknown kind or bad parameters)."""
        handler = self.handlers.get(command.kind)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            raise ValueError(f"unknown command kind {command.kind!r} (known: {known})")
        try:
            params = handler.params.model_validate(command.params or {})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "params"
            raise ValueError(f"{command.kind}: parameter {where}: {first['msg']}") from None
        return await handler.run(target, command, params)


COMMANDS = CommandRegistry()


@COMMANDS.register("reload_config", ReloadParams)
async def reload_config(collector: Maintained, command: Command, params: ReloadParams) -> str:
    return await collector.reload_config(params.version, params.url, params.text)


@COMMANDS.register("restart")
async def restart(collector: Maintained, command: Command, params: NoParams) -> str:
    return f"polling restarted for {await collector.restart_polling()} devices"


@COMMANDS.register("read_now")
async def read_now(collector: Maintained, command: Command, params: NoParams) -> str:
    counts = []
    for runner in collector.targets(command.device):
        counts.append(f"{runner.device.id}: {await runner.poll_once()} readings")
        if runner.state.online is False or runner.state.failures:
            counts[-1] += f" (failed: {runner.state.last_error})"
    collector.batch_now()
    return "; ".join(counts)


@COMMANDS.register("time_sync")
async def time_sync(collector: Maintained, command: Command, params: NoParams) -> str:
    lines, failed = [], []
    for runner in collector.targets(command.device):
        try:
            lines.append(f"{runner.device.id}: {await runner.poller.time_sync()}")
        except (DeviceError, OSError) as error:
            failed.append(f"{runner.device.id}: {error}")
    if failed:
        raise DeviceError("; ".join(failed + lines))
    return "; ".join(lines)


@COMMANDS.register("set_carbon_factor", CarbonFactorParams)
async def set_carbon_factor(collector: Maintained, command: Command, params: CarbonFactorParams) -> str:
    if command.device is None:
        raise ValueError("set_carbon_factor needs a device")
    runner = collector.targets(command.device)[0]
    return await runner.poller.set_carbon_factor(params.model_dump(mode="json", exclude_none=True))


async def run_command(
    run: Callable[[Command], Awaitable[str]], command: Command, clock: Clock, on_event: Callable[[str], None]
) -> CommandResult:
    """Run one command; any failure becomes a 'failed' result with a one-line reason."""
    try:
        detail, status = await run(command), "acknowledged"
    except FAILURES as error:
        detail, status = " ".join(str(error).split()) or type(error).__name__, "failed"
    except Exception as error:  # the center still gets an answer, and the command loop goes on
        log.exception("command %s failed unexpectedly", command.command_id)
        detail, status = f"internal error: {type(error).__name__}: {error}", "failed"
    on_event(f"command {command.command_id} {command.kind} {command.device or ''}: {status}: {detail}")
    return CommandResult(
        command_id=command.command_id, status=status, detail=detail[:2000], finished_at=clock()
    )


class CommandLoop:
    """Fetch commands, answer each, send the answers back (over any transport)."""

    REMEMBERED = 1000  # answers kept by command id, to answer a command sent again

    def __init__(
        self,
        next_commands: Callable[[], Awaitable[list[Command]]],
        send_result: Callable[[CommandResult], Awaitable[None]],
        execute: Callable[[Command], Awaitable[CommandResult]],
        retry_s: float,
        answered: dict[str, CommandResult] | None = None,
    ) -> None:
        self.next_commands, self.send_result, self.execute = next_commands, send_result, execute
        self.retry_s = retry_s
        self.answered = {} if answered is None else answered

    async def run(self) -> None:
        unsent: list[CommandResult] = []  # results the center has not taken yet: sent again, in order
        while True:
            unsent = await self.send_results(unsent)
            try:
                commands = await self.next_commands()
            except DeliveryError as error:
                log.info("commands not fetched: %s", error)
                await asyncio.sleep(self.retry_s)
                continue
            for command in commands:
                result = self.answered.get(command.command_id) or await self.execute(command)
                self.answered[command.command_id] = result
                while len(self.answered) > self.REMEMBERED:
                    self.answered.pop(next(iter(self.answered)))
                unsent.append(result)
                unsent = await self.send_results(unsent)

    async def send_results(self, results: list[CommandResult]) -> list[CommandResult]:
        """Send what can be sent; a result that fails (center away, slow) stays for the next round."""
        for index, result in enumerate(results):
            try:
                await self.send_result(result)
            except DeliveryError as error:
                log.warning("result of command %s not sent yet: %s", result.command_id, error)
                return results[index:]
        return []

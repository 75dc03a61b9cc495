"""Stopping asyncio tasks for good."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel until done: on Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives
    as its inner call completes, and a loop would then run on while its owner waits forever."""
    tasks = [t for t in tasks if t is not None]
    pending = [t for t in tasks if not t.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
        pending = [t for t in pending if not t.done()]
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()

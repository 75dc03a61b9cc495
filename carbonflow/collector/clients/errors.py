"""Errors and the retry policy shared by every protocol client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class DeviceError(Exception):
    """A device could not be read or commanded; the message names the device and the request."""


class DeviceTimeout(DeviceError):
    """No (valid) answer within the timeout, after all retries."""


class DeviceRejected(DeviceError):
    """The device answered with an exception/error reply (the message carries its reason)."""


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 2.0  # per attempt
    retries: int = 2  # attempts after the first
    backoff_s: float = 0.2  # doubled after each failed attempt


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    policy: RetryPolicy,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run ``attempt`` with a timeout, retrying on timeouts and I/O errors; rejections are final.

    ``on_failure`` runs after each failed attempt (e.g. drop and reopen the connection, since a late
    reply would otherwise be taken as the answer to the next request).
    """
    delay = policy.backoff_s
    last: Exception | None = None
    for number in range(policy.retries + 1):
        try:
            return await asyncio.wait_for(attempt(), policy.timeout_s)
        except DeviceRejected:
            raise
        except (TimeoutError, OSError, DeviceError) as error:
            last = error
            if on_failure is not None:
                await on_failure()
            if number < policy.retries:
                await asyncio.sleep(delay)
                delay *= 2
    reason = "no answer" if isinstance(last, TimeoutError) else str(last) or type(last).__name__
    raise DeviceTimeout(f"{what}: {reason} after {policy.retries + 1} attempts") from last

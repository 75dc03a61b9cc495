"""Exponential back-off, written once (tenacity): ``min_s``, doubled after each failed round up to
``max_s``, back to ``min_s`` after a round that went through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential


class RoundFailed(Exception):
    """A round of sending met trouble (peer away, credentials refused): wait, then try again."""


def backoff(min_s: float, max_s: float, retry_on: type[BaseException] = RoundFailed) -> AsyncRetrying:
    # tenacity waits multiplier * 2**(attempt - 1), clamped to [min, max]: min_s after the first failure
    return AsyncRetrying(
        wait=wait_exponential(multiplier=min_s, min=min_s, max=max_s),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    )


async def forever_with_backoff(round_: Callable[[], Awaitable[object]], min_s: float, max_s: float) -> None:
    """Run ``round_`` forever; one raising :class:`RoundFailed` is retried with a growing wait, one that
    returns resets the wait."""
    retrying = backoff(min_s, max_s)
    while True:
        await retrying(round_)

"""What every protocol client shares: the retry policy (run by tenacity), one request at a time, and an
asyncio TCP master that writes a request and reads frames until the answer is complete.

This is the master-side mirror of :mod:`carbonflow.devices.base`: a device server cuts request frames
from its receive buffer with the protocol's pure splitter and answers each; a :class:`FramedClient`
cuts reply frames with the same kind of splitter and hands each to the request's ``accept`` until one
is the answer.  Errors name the device and the request: :class:`DeviceTimeout` when no valid answer
came after every attempt, :class:`DeviceRejected` when the device refused (never retried).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Self, TypeVar

from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt, wait_exponential

from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy

T = TypeVar("T")

READ_CHUNK_BYTES = 4096


def _retryable(error: BaseException) -> bool:
    """Timeouts, I/O errors and bad answers are worth another attempt; a refusal is the answer."""
    return isinstance(error, TimeoutError | OSError | DeviceError) and not isinstance(error, DeviceRejected)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    policy: RetryPolicy,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run ``attempt`` under the policy's timeout, retrying timeouts and I/O errors; refusals are final.

    ``on_failure`` runs after each failed attempt (e.g. drop the connection, since a late reply would
    otherwise be taken as the answer to the next request).  Waits: ``backoff_s``, then doubled.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=wait_exponential(multiplier=policy.backoff_s),
        retry=retry_if_exception(_retryable),
    )
    try:
        async for state in retrying:
            with state:
                try:
                    async with asyncio.timeout(policy.timeout_s):
                        return await attempt()
                except Exception as error:
                    if on_failure is not None and _retryable(error):
                        await on_failure()
                    raise
    except RetryError as error:
        last = error.last_attempt.exception()
        reason = "no answer" if isinstance(last, TimeoutError) else str(last) or type(last).__name__
        raise DeviceTimeout(f"{what}: {reason} after {policy.retries + 1} attempts") from last
    raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover


async def open_stream(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to a device; a refusal or an unreachable host is a (retryable) DeviceError."""
    try:
        return await asyncio.open_connection(host, port)
    except OSError as error:
        raise DeviceError(f"cannot connect: {error.strerror or error}") from error


async def close_stream(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class FramedClient(ABC):
    """An asyncio TCP master speaking one request/reply protocol, one request in flight at a time.

    Subclasses implement :meth:`split_frames` (cut complete frames from the receive buffer with the
    protocol's pure splitter, noting frames it throws away in ``rejects``) and call :meth:`exchange`
    with a request and an ``accept`` that turns a frame into the answer, or None to keep reading (an
    echo, another meter's reply, a frame the device sent on its own).  After a failed attempt the
    connection is dropped and reopened, so that a late reply is never taken for the next request's.
    """

    protocol = "?"

    def __init__(self, host: str, port: int, name: str, policy: RetryPolicy | None = None) -> None:
        self.host, self.port = host, port
        self.name = name
        self.policy = policy or RetryPolicy()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._frames: deque[bytes] = deque()  # complete frames received but not yet looked at
        self._rejects: list[str] = []  # why the splitter threw frames away during this attempt
        self._lock = asyncio.Lock()

    # -- to implement -----------------------------------------------------------------------------
    @abstractmethod
    def split_frames(self, buffer: bytearray, rejects: list[str]) -> list[bytes]:
        """Take every complete frame off the front of ``buffer``; say in ``rejects`` why any was dropped."""

    # -- connection -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Open the connection unless it is open; a closing one (the device hung up) is replaced."""
        if self.connected:
            return
        await self.close()
        self._reader, self._writer = await open_stream(self.host, self.port)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        self._buffer.clear()
        self._frames.clear()
        self._rejects.clear()
        await close_stream(writer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- exchange ---------------------------------------------------------------------------------
    async def exchange(
        self,
        request: bytes | Callable[[], bytes],
        accept: Callable[[bytes], Awaitable[T | None]],
        what: str,
    ) -> T:
        """Send ``request`` (or what it builds, anew for each attempt) and read until ``accept``
        returns the answer; with the retry policy, under the client's lock."""

        async def attempt() -> T:
            await self.connect()
            self._rejects.clear()
            await self.send(request() if callable(request) else request)
            while True:
                answer = await accept(await self.receive())
                if answer is not None:
                    return answer

        async with self._lock:
            return await with_retries(attempt, what, self.policy, on_failure=self.close)

    async def send_only(self, request: bytes, what: str) -> None:
        """A request that gets no reply (broadcasts), with the retry policy."""

        async def attempt() -> None:
            await self.connect()
            await self.send(request)

        async with self._lock:
            await with_retries(attempt, what, self.policy, on_failure=self.close)

    async def send(self, frame: bytes) -> None:
        """Write one frame on the open connection (also to answer frames the device sends itself)."""
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("connection closed")
        self._writer.write(frame)
        await self._writer.drain()

    async def receive(self) -> bytes:
        """The next complete frame; frames the splitter threw away since the request was sent are an
        error once no good frame is left to look at."""
        while not self._frames:
            if self._rejects:  # with_retries puts the request in front of the final message
                raise DeviceError(self._rejects[0])
            if self._reader is None:
                raise ConnectionError("not connected")
            chunk = await self._reader.read(READ_CHUNK_BYTES)
            if not chunk:
                raise ConnectionError("connection closed by the device")
            self._buffer.extend(chunk)
            self._frames.extend(self.split_frames(self._buffer, self._rejects))
        return self._frames.popleft()

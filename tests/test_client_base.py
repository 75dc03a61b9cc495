"""The protocol clients' shared base: retries with the device's policy and a framed request/reply."""

from __future__ import annotations

import asyncio

import pytest

from carbonflow.collector.clients.base import FramedClient, with_retries
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, DeviceTimeout, RetryPolicy

QUICK = RetryPolicy(timeout_s=0.2, retries=2, backoff_s=0.0)


def test_failed_attempts_are_retried_and_each_failure_runs_the_hook() -> None:
    calls: list[str] = []

    async def attempt() -> str:
        calls.append("attempt")
        if len(calls) < 5:
            raise ConnectionError("reset")
        return "answer"

    async def on_failure() -> None:
        calls.append("drop")

    assert asyncio.run(with_retries(attempt, "read", QUICK, on_failure)) == "answer"
    assert calls == ["attempt", "drop", "attempt", "drop", "attempt"]


def test_no_answer_after_every_attempt_is_a_timeout_naming_the_request() -> None:
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(1.0)

    with pytest.raises(DeviceTimeout, match=r"^meter-1: read: no answer after 3 attempts$"):
        asyncio.run(with_retries(attempt, "meter-1: read", QUICK))
    assert attempts == 3


def test_a_refusal_is_final_and_keeps_the_connection() -> None:
    dropped = []

    async def attempt() -> None:
        raise DeviceRejected("meter-1: refused")

    async def on_failure() -> None:
        dropped.append(True)

    with pytest.raises(DeviceRejected, match="refused"):
        asyncio.run(with_retries(attempt, "meter-1: write", QUICK, on_failure))
    assert not dropped


class LineClient(FramedClient):
    """A toy protocol: frames end with a newline; ``!`` lines are frames with a bad checksum."""

    def split_frames(self, buffer: bytearray, rejects: list[str]) -> list[bytes]:
        frames = []
        while (end := buffer.find(b"\n")) >= 0:
            frame = bytes(buffer[:end])
            del buffer[: end + 1]
            if frame.startswith(b"!"):
                rejects.append(f"bad frame {frame.decode()}")
            else:
                frames.append(frame)
        return frames


async def _line_server(replies: dict[bytes, list[bytes]]) -> asyncio.Server:
    """Answers each request line with its chunks, a little apart (a reply split across reads)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            for chunk in replies.get(line.strip(), []):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.02)
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _pong(frame: bytes) -> bytes | None:
    return frame if frame.startswith(b"po") else None


def test_exchange_reads_frames_until_the_answer_and_reports_thrown_away_frames() -> None:
    async def scenario() -> None:
        server = await _line_server({b"ping": [b"noise\npo", b"ng\n"], b"bad": [b"!x\n"]})
        port = server.sockets[0].getsockname()[1]
        async with server, LineClient("127.0.0.1", port, "line", QUICK) as client:
            assert await client.exchange(b"ping\n", _pong, "line: ping") == b"pong"
            with pytest.raises(DeviceTimeout, match=r"^line: bad: bad frame !x after 3 attempts$"):
                await client.exchange(b"bad\n", _pong, "line: bad")
            assert await client.exchange(lambda: b"ping\n", _pong, "line: ping") == b"pong"

    asyncio.run(scenario())


def test_a_refused_connection_is_a_device_error_after_the_retries() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = LineClient("127.0.0.1", port, "line", QUICK)
        with pytest.raises(DeviceError, match=r"line: ping: cannot connect: .* after 3 attempts"):
            await client.exchange(b"ping\n", _pong, "line: ping")

    asyncio.run(scenario())

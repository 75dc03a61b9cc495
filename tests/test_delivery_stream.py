"""The lean HTTP/1.1 sender of the cascade (carbonflow/delivery/stream.py) against a real socket server:
outcomes classified like httpx's sender, one keep-alive connection, a connection the peer closed while
idle replaced without losing the message, an unreachable or silent peer a ``retry``."""

from __future__ import annotations

import asyncio
import json

from carbonflow.delivery import StreamSender


class Peer:
    """A socket server answering each POST with the next canned answer (None: close without answering)."""

    def __init__(self, answers: list[bytes | None], close_after_each: bool = False) -> None:
        self.answers, self.close_after_each = answers, close_after_each
        self.requests: list[tuple[bytes, bytes]] = []  # head, body
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_each:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def _answer(status: int, body: dict, reason: str = "X") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


def _chunked(status: int, text: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n{len(text):x}\r\n".encode()
        + text
        + b"\r\n0\r\n\r\n"
    )


def _run(peer: Peer, sends: int, *, prefix: str = "", timeout_s: float = 5.0):
    async def go():
        port = await peer.start()
        sender = StreamSender(f"http://127.0.0.1:{port}{prefix}", timeout_s, keepalive_expiry_s=30)
        await sender.start()
        try:
            return [
                await sender.send(
                    "/api/v1/cascade/messages", b'{"n": %d}' % n, {"content-type": "application/json"}
                )
                for n in range(sends)
            ]
        finally:
            await sender.stop()
            await peer.stop()

    return asyncio.run(go())


def test_outcomes_are_classified_and_one_connection_carries_them():
    peer = Peer(
        [
            _answer(200, {"status": "accepted"}),
            _answer(422, {"error": "wrong recipient", "detail": "addressed to ah"}),
            _answer(403, {"error": "bad signature"}),
            _answer(503, {"error": "busy"}),
            _chunked(409, b'{"error": "conflict", "detail": "another message"}'),
        ]
    )
    acked, rejected, unauthorized, busy, conflict = _run(peer, 5, prefix="/center")
    assert (acked.outcome, acked.status) == ("acked", 200)
    assert (
        rejected.outcome == "rejected" and rejected.error == 'HTTP 422: wrong recipient ("addressed to ah")'
    )
    assert unauthorized.outcome == "unauthorized" and unauthorized.status == 403
    assert busy.outcome == "retry" and busy.status == 503
    assert conflict.outcome == "rejected" and conflict.error == 'HTTP 409: conflict ("another message")'
    assert peer.connections == 1  # keep-alive
    head, body = peer.requests[0]
    assert head.startswith(b"POST /center/api/v1/cascade/messages HTTP/1.1\r\n")
    assert b"content-type: application/json" in head and body == b'{"n": 0}'


def test_a_connection_the_peer_closed_is_replaced_and_the_message_still_delivered():
    peer = Peer([_answer(200, {}), _answer(200, {}), _answer(200, {})], close_after_each=True)
    results = _run(peer, 3)
    assert [r.outcome for r in results] == ["acked"] * 3
    assert [body for _head, body in peer.requests] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert peer.connections == 3


def test_a_peer_that_drops_the_request_on_a_fresh_connection_is_a_retry():
    peer = Peer([None])
    (result,) = _run(peer, 1)
    assert result.outcome == "retry" and result.error.startswith("center unreachable: EOFError")


def test_an_unreachable_or_silent_peer_is_a_retry():
    async def unreachable():
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        sender = StreamSender(f"http://127.0.0.1:{port}", 2.0)
        return await sender.send("/m", b"{}", {})

    result = asyncio.run(unreachable())
    assert result.outcome == "retry" and result.error.startswith("center unreachable: ConnectionRefusedError")

    async def silent():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        sender = StreamSender(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 0.3)
        try:
            return await sender.send("/m", b"{}", {})
        finally:
            await sender.stop()
            server.close()

    result = asyncio.run(silent())
    assert result.outcome == "retry" and "TimeoutError" in result.error

"""A lean HTTP/1.1 sender for queued messages: one keep-alive connection to one peer, one request at a
time, answers parsed by httptools.

The cascade's delivery loops post ~40 small signed messages per interval, one at a time per peer;
httpx spends ~1.2 ms of CPU on each (request and response models, header normalisation, auth and
redirect flows, its connection pool), this sender ~0.05 ms.  It does what those loops need and no more:
``POST`` with a body, a ``200`` or a classified failure (:mod:`carbonflow.delivery.outcome`), https with
the same TLS contexts, a connection idle longer than ``keepalive_expiry_s`` opened anew.  A request that
fails on a **reused** connection before any answer came back (the peer closed it while idle) is sent
once more on a fresh connection: the peer de-duplicates a message it already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

import httptools

from carbonflow.delivery.outcome import SendResult, classify_status, error_text_of, unreachable


class _Answer:
    """httptools callbacks: the status, whether the connection stays open, the body, done."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False
        self.started = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.started = True

    def on_headers_complete(self) -> None:  # (llhttp knows it here; once complete it says False)
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class StreamSender:
    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        tls_context: ssl.SSLContext | None = None,
        keepalive_expiry_s: float = 5.0,
    ) -> None:
        """``tls_context``: for an https:// peer with a private CA (default: the system's CAs)."""
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.host_header = url.netloc.rsplit("@", 1)[-1].encode("ascii")
        self.tls = None
        if url.scheme == "https":
            self.tls = tls_context if tls_context is not None else ssl.create_default_context()
        self.timeout_s, self.keepalive_expiry_s = timeout_s, keepalive_expiry_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle_since = 0.0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connections are opened on the first message."""

    async def stop(self) -> None:
        await self._close()

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> SendResult:
        """POST one queued message; a 200 is ``acked``, anything else classified."""
        request = self._request(path, body, headers)
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    reused = await self._connect()
                    try:
                        status, answer, keep = await self._exchange(request)
                    except (OSError, EOFError) as error:
                        if not reused or getattr(error, "answered", False):
                            raise
                        await self._close()  # the peer closed the idle connection: once more, anew
                        await self._connect()
                        status, answer, keep = await self._exchange(request)
            except (OSError, EOFError, TimeoutError, httptools.HttpParserError) as error:
                await self._close()
                return unreachable(error)
            except asyncio.CancelledError:  # stopped mid-request: the connection's state is unknown
                self._drop()
                raise
            if keep:
                self._idle_since = time.monotonic()
            else:
                await self._close()
        if status == 200:
            return SendResult("acked", status=200)
        return classify_status(status, error_text_of(bytes(answer)))

    def _request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            b"POST " + (self.prefix + path).encode("ascii") + b" HTTP/1.1",
            b"host: " + self.host_header,
            b"content-length: " + str(len(body)).encode("ascii"),
            *(f"{name}: {value}".encode("latin-1") for name, value in headers.items()),
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def _connect(self) -> bool:
        """True when an open connection is reused."""
        if self._writer is not None:
            idle = time.monotonic() - self._idle_since
            if idle <= self.keepalive_expiry_s and not self._writer.is_closing():
                return True
            await self._close()
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
        )
        return False

    async def _exchange(self, request: bytes) -> tuple[int, bytearray, bool]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        await self._writer.drain()
        answer = _Answer()
        parser = answer.parser = httptools.HttpResponseParser(answer)
        while not answer.complete:
            data = await self._reader.read(65536)
            if not data:
                error = EOFError("the peer closed the connection")
                error.answered = answer.started  # type: ignore[attr-defined]
                raise error
            parser.feed_data(data)
        return parser.get_status_code(), answer.body, answer.keep_alive

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader, self._writer = None, None

    async def _close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # closing a connection the peer already dropped
                await writer.wait_closed()

"""The HTTP sender: one httpx client to a peer's base URL.

:meth:`HttpSender.send` posts a queued message and returns its classified :class:`SendResult`;
:meth:`HttpSender.request` is for calls that are not queued messages (fetch commands, post a result)
and raises :class:`DeliveryError` when the peer is away or refuses.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from carbonflow.delivery.outcome import DeliveryError, SendResult, classify_status, error_text, unreachable


class HttpSender:
    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        tls_context: ssl.SSLContext | None = None,
        keepalive_expiry_s: float = 5.0,
    ) -> None:
        """``tls_context``: for an https:// peer with a private CA or a client certificate
        (:func:`carbonflow.delivery.tls.client_context`); default: the system's CAs.
        ``keepalive_expiry_s``: an idle connection is reused this long (keep it below the peer's own
        keep-alive timeout, uvicorn's is 5 s: a connection the peer closes just as it is reused fails
        the request as unreachable, and the message waits for the back-off)."""
        self.base_url, self.timeout_s = base_url, timeout_s
        self.tls_context = tls_context
        self.limits = httpx.Limits(keepalive_expiry=keepalive_expiry_s)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        verify = self.tls_context if self.tls_context is not None else True
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout_s, verify=verify, limits=self.limits
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "HTTP sender not started"
        return self._client

    async def send(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        accept: Callable[[httpx.Response], SendResult] | None = None,
    ) -> SendResult:
        """POST one queued message; a 200 is ``acked`` unless ``accept`` judges the answer otherwise."""
        try:
            response = await self.client.post(path, content=body, headers=headers)
        except httpx.HTTPError as error:
            return unreachable(error)
        if response.status_code == 200:
            return accept(response) if accept is not None else SendResult("acked", status=200)
        return classify_status(response.status_code, error_text(response))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response | None:
        """One call; None for a 404 when ``missing_ok`` (a peer without that endpoint)."""
        try:
            response = await self.client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"{method} {path}: {type(error).__name__}: {error}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise DeliveryError(f"{method} {path}: HTTP {response.status_code}: {error_text(response)}")
        return response

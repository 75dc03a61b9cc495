"""One MQTT session per process-side identity (aiomqtt over paho, on the asyncio loop - no thread).

:class:`MqttSession` keeps ONE connection under a fixed client id with a persistent session
(``clean_session=False``, MQTT 3.1.1) and QoS 1 everywhere: it publishes to any topic and hands what
arrives on each subscribed topic to that topic's handler.  A lost connection is re-established with
back-off (1 s doubling to 30 s; at once the first time after a connection that had worked).

:class:`AwaitedAcks` is the request/acknowledgement pattern on top: publish a message, wait for the
peer's acknowledgement that comes back on another topic, matched by key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from carbonflow.delivery.backoff import backoff
from carbonflow.delivery.outcome import DeliveryError, SendResult
from carbonflow.delivery.tasks import cancel_and_wait
from carbonflow.delivery.tls import client_context

log = logging.getLogger(__name__)
Handler = Callable[[bytes], None]


class MqttSession:
    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``url``: mqtt://host[:1883] or mqtts://host[:8883]; an mqtts:// broker is verified with
        ``tls_context`` (a private CA, a client certificate) or else the system's CAs."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        self.host, self.port = parts.hostname or "localhost", parts.port or (8883 if tls else 1883)
        self.tls_context = (tls_context or client_context()) if tls else None
        self.client_id = client_id
        self.username, self.password = username, password
        self.keepalive_s, self.timeout_s = keepalive_s, timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.last_error: str | None = None
        self._handlers: dict[str, Handler] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Route messages of ``topic`` to ``handler`` (subscribed at every (re)connection)."""
        if self._task is not None:
            raise RuntimeError("subscribe before the session starts")
        self._handlers[topic] = handler

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect in the background; wait up to ``timeout_s`` for it (not fatal: sends retry)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt {self.client_id}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.timeout_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    async def publish(self, topic: str, body: bytes) -> None:
        """QoS 1 publish, returns once the broker took it (PUBACK)."""
        client = self._client
        if client is None or not self.connected:
            raise DeliveryError(f"MQTT {topic}: broker not connected ({self.last_error or 'connecting'})")
        try:
            await client.publish(topic, body, qos=1, timeout=self.timeout_s)
        except aiomqtt.MqttError as error:
            raise DeliveryError(f"MQTT {topic}: publish failed: {error}") from None

    async def _run(self) -> None:
        retrying = backoff(self.reconnect_min_s, self.reconnect_max_s, retry_on=aiomqtt.MqttError)
        while True:
            await retrying(self._connection)

    async def _connection(self) -> None:
        """One connection, until it is lost.  Raises MqttError when it could not be made (back off);
        returns after a connection that had worked was lost (reconnect soon)."""
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
            username=self.username,
            password=self.password,
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            tls_context=self.tls_context,
        )
        try:
            async with client:
                if self._handlers:
                    await client.subscribe([(topic, 1) for topic in self._handlers])
                self._client, self.last_error = client, None
                self._connected.set()
                async for message in client.messages:
                    self._dispatch(str(message.topic), message.payload)
        except aiomqtt.MqttError as error:
            self.last_error = f"{'disconnected from' if self._client else 'cannot reach'} the broker: {error}"
            if self._client is None:
                raise
            log.warning("%s: %s", self.client_id, self.last_error)
            await asyncio.sleep(self.reconnect_min_s)
        finally:
            self._client = None
            self._connected.clear()

    def _dispatch(self, topic: str, payload: Any) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            handler(payload if isinstance(payload, bytes) else str(payload or "").encode())
        except Exception:  # one bad message must not end the session
            log.exception("%s: handler of %s failed", self.client_id, topic)


class AwaitedAcks:
    """Futures for acknowledgements that come back on another topic, by key."""

    def __init__(self, session: MqttSession, timeout_s: float, what: str = "Ack") -> None:
        self.session, self.timeout_s, self.what = session, timeout_s, what
        self._waiting: dict[Hashable, asyncio.Future] = {}

    def resolve(self, key: Hashable, ack: Any) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(ack)

    async def publish(self, topic: str, body: bytes, key: Hashable) -> SendResult:
        """Publish and wait for the acknowledgement: ``acked`` (with ``ack``) or ``retry``."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await asyncio.wait_for(self._publish_and_wait(topic, body, future), self.timeout_s)
        except DeliveryError as error:
            return SendResult("retry", error=str(error))
        except TimeoutError:
            return SendResult("retry", error=f"no {self.what} within {self.timeout_s} s")
        finally:
            self._waiting.pop(key, None)
        return SendResult("acked", ack=future.result())

    async def _publish_and_wait(self, topic: str, body: bytes, future: asyncio.Future) -> None:
        await self.session.publish(topic, body)
        await future

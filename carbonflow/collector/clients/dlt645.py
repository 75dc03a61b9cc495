"""DL/T 645-2007 master over TCP, as meters are reached through a serial server or a 4G DTU.

The link is half duplex: one request, then wait for the matching reply.  The byte stream may carry
FE preambles, echoes of other meters on the bus and line noise; :func:`take_frame` skips all that, and
replies for another address or function are ignored.  Every exchange runs under the client's
:class:`RetryPolicy` (timeout per attempt, retries, reconnect after a failure so that a late reply is
never taken for the next request's).  Errors name the device, the meter address and the DI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, RetryPolicy, with_retries
from carbonflow.protocols import dlt645
from carbonflow.protocols.dlt645 import DataItem, DiTable, Frame, ProtocolError, Reply, Value

MAX_FOLLOW_UPS = 255  # the sequence number is one byte


class Dlt645Client:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        table: DiTable = dlt645.DEFAULT_TABLE,
        policy: RetryPolicy | None = None,
        name: str | None = None,
        preamble: int = 4,
    ) -> None:
        self.host, self.port = host, port
        self.table = table
        self.policy = policy or RetryPolicy()
        self.name = name or f"dlt645 {host}:{port}"
        self.preamble = preamble  # FE wake-up bytes before each request (4 is customary)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Dlt645Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        self._buffer.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- public calls -----------------------------------------------------------------------------
    async def read(self, address: str, di: str) -> Value:
        """One DI's value: Decimal (``Decimal("1206.42")``), str for dates/digits, a list for blocks
        (``None`` for absent members), a tuple for multi-field items such as max demand + time."""
        item = self._item(address, di)
        payload = await self.read_raw(address, item.di)
        try:
            return item.decode(payload)
        except ProtocolError as error:
            raise DeviceError(f"{self._what('read', address, item.di)}: undecodable reply: {error}") from None

    async def read_many(
        self, address: str, dis: Iterable[str], skip_rejected: bool = False
    ) -> dict[str, Value]:
        """Several DIs in turn; with ``skip_rejected`` DIs the meter refuses are left out, not raised."""
        values: dict[str, Value] = {}
        for di in dis:
            try:
                values[dlt645.normalize_di(di)] = await self.read(address, di)
            except DeviceRejected:
                if not skip_rejected:
                    raise
        return values

    async def read_raw(self, address: str, di: str) -> bytes:
        """The payload of a read (follow-up frames joined), for DIs the table does not describe."""
        what = self._what("read", address, di)
        di = self._checked(what, dlt645.normalize_di, di)
        request = self._checked(what, dlt645.read_request, address, di, self.preamble)
        reply = await self._exchange(request, address, dlt645.READ, what)
        payload = reply.payload
        seq = 1
        while reply.follow_up:
            if seq > MAX_FOLLOW_UPS:
                raise DeviceError(f"{what}: more than {MAX_FOLLOW_UPS} follow-up frames")
            request = dlt645.read_follow_up_request(address, di, seq, self.preamble)
            reply = await self._exchange(request, address, dlt645.READ_FOLLOW_UP, f"{what} (follow-up {seq})")
            payload += reply.payload
            seq += 1
        return payload

    async def read_address(self) -> str:
        """The address of the single meter on the link (request to ``AA..AA``)."""
        request = dlt645.read_address_request(self.preamble)
        reply = await self._exchange(
            request, dlt645.WILDCARD, dlt645.READ_ADDRESS, f"{self.name}: read address"
        )
        return reply.meter_address or reply.address

    async def write(
        self,
        address: str,
        di: str,
        value: Any,
        password: str = dlt645.DEFAULT_PASSWORD,
        operator: str = dlt645.DEFAULT_OPERATOR,
    ) -> None:
        """Write a parameter (e.g. the vendor carbon factor); a refusal raises DeviceRejected."""
        item = self._item(address, di, writing=True)
        what = self._what("write", address, item.di)
        request = self._checked(
            what, dlt645.write_request, address, item, value, password, operator, self.preamble
        )
        await self._exchange(request, address, dlt645.WRITE, what)

    async def time_sync(self, moment: datetime) -> None:
        """Broadcast time sync (no reply); ``moment`` is the meters' local wall time."""
        what = f"{self.name}: broadcast time sync"
        await self._send_only(self._checked(what, dlt645.time_sync_request, moment, self.preamble), what)

    async def freeze(self, address: str = dlt645.BROADCAST, when: str = dlt645.FREEZE_NOW) -> None:
        """Freeze (``99999999`` = now); broadcast gets no reply, a single meter acknowledges."""
        what = self._what("freeze", address, None)
        request = self._checked(what, dlt645.freeze_request, address, when, self.preamble)
        if address == dlt645.BROADCAST:
            await self._send_only(request, what)
        else:
            await self._exchange(request, address, dlt645.FREEZE, what)

    # -- plumbing ---------------------------------------------------------------------------------
    def _what(self, action: str, address: str, di: str | None) -> str:
        item = None if di is None else self.table.get(di)
        label = "" if di is None else f" {di}" + (f" ({item.name})" if item else "")
        return f"{self.name}: {action}{label} at meter {address}"

    def _item(self, address: str, di: str, writing: bool = False) -> DataItem:
        what = self._what("write" if writing else "read", address, str(di))
        normalized = self._checked(what, dlt645.normalize_di, di)
        item = self.table.get(normalized)
        if item is None:
            raise DeviceError(
                f"{what}: DI is not in the client's DI table (use read_raw, or extend the table)"
            )
        return item

    @staticmethod
    def _checked(what: str, build, *args):
        try:
            return build(*args)
        except ProtocolError as error:
            raise DeviceError(f"{what}: {error}") from None

    async def _connect(self) -> None:
        if self._writer is None or self._writer.is_closing():
            self._buffer.clear()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def _drop(self) -> None:
        await self.close()

    async def _send_only(self, request: bytes, what: str) -> None:
        async def attempt() -> None:
            await self._connect()
            assert self._writer is not None
            self._writer.write(request)
            await self._writer.drain()

        async with self._lock:
            await with_retries(attempt, what, self.policy, self._drop)

    async def _exchange(self, request: bytes, address: str, function: int, what: str) -> Reply:
        async def attempt() -> Reply:
            await self._connect()
            assert self._writer is not None
            self._writer.write(request)
            await self._writer.drain()
            return await self._await_reply(address, function)

        async with self._lock:
            reply = await with_retries(attempt, what, self.policy, self._drop)
        if reply.error is not None:
            raise DeviceRejected(f"{what}: meter answered {reply.error}")
        return reply

    async def _await_reply(self, address: str, function: int) -> Reply:
        """Read until a reply from ``address`` to ``function`` arrives; ignore anything else."""
        assert self._reader is not None
        rejects: list[str] = []
        while True:
            while (raw := dlt645.take_frame(self._buffer, rejects)) is not None:
                reply = self._matching(dlt645.parse_frame(raw), address, function)
                if reply is not None:
                    return reply
            if rejects:  # with_retries puts ``what`` in front of the final message
                raise DeviceError(rejects[0])
            chunk = await self._reader.read(4096)
            if not chunk:
                raise ConnectionError("connection closed by the device")
            self._buffer.extend(chunk)

    @staticmethod
    def _matching(frame: Frame, address: str, function: int) -> Reply | None:
        if not frame.is_reply or frame.function != function:
            return None  # an echo of our request or another master's traffic
        if not dlt645.address_matches(
            dlt645.WILDCARD if address == dlt645.BROADCAST else address, frame.address
        ):
            return None
        try:
            return dlt645.parse_reply(frame)
        except ProtocolError:
            return None

"""DL/T 645-2007 master over TCP, as meters are reached through a serial server or a 4G DTU.

The link is half duplex: one request, then wait for the matching reply.  The byte stream may carry
FE preambles, echoes of other meters on the bus and line noise; :func:`take_frame` skips all that, and
replies for another address or function are ignored.  Connection, retries and reconnects are the
:class:`~carbonflow.collector.clients.base.FramedClient`'s; this module builds requests and matches
replies.  Errors name the device, the meter address and the DI.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from carbonflow.collector.clients.base import FramedClient
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, RetryPolicy
from carbonflow.protocols import dlt645
from carbonflow.protocols.dlt645 import DataItem, DiTable, Frame, ProtocolError, Reply, Value
from carbonflow.protocols.dlt645.di_table import FREEZE_TIME, HOURLY_FREEZE, frozen_di

MAX_FOLLOW_UPS = 255  # the sequence number is one byte


class Dlt645Client(FramedClient):
    protocol = "dlt645"

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
        super().__init__(host, port, name or f"dlt645 {host}:{port}", policy)
        self.table = table
        self.preamble = preamble  # FE wake-up bytes before each request (4 is customary)

    def split_frames(self, buffer: bytearray, rejects: list[str]) -> list[bytes]:
        frames = []
        while (frame := dlt645.take_frame(buffer, rejects)) is not None:
            frames.append(frame)
        return frames

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
        reply = await self._exchange(request, address, dlt645.READ, what, di)
        payload = reply.payload
        seq = 1
        while reply.follow_up:
            if seq > MAX_FOLLOW_UPS:
                raise DeviceError(f"{what}: more than {MAX_FOLLOW_UPS} follow-up frames")
            request = dlt645.read_follow_up_request(address, di, seq, self.preamble)
            reply = await self._exchange(
                request, address, dlt645.READ_FOLLOW_UP, f"{what} (follow-up {seq})", di, seq
            )
            payload += reply.payload
            seq += 1
        return payload

    async def read_frozen(
        self, address: str, number: int, columns: Iterable[str], series: str = HOURLY_FREEZE
    ) -> tuple[datetime, dict[str, Value]] | None:
        """The ``number``-th last record (1 = newest) of a freeze ``series`` (default the hourly freeze
        ``0504``): its freeze time (naive, the meter's local time) and the ``columns`` asked for
        (``"01"`` forward, ``"02"`` reverse active energy); None when the meter has no such record."""
        try:
            shown = await self.read(address, frozen_di(series, FREEZE_TIME, number))
        except DeviceRejected as error:
            if "no requested data" in str(error):
                return None
            raise
        if not isinstance(shown, str):
            raise DeviceError(f"{self.name}: freeze record {number} of {series} has no time ({shown!r})")
        moment = datetime.fromisoformat(shown)
        values = {c: await self.read(address, frozen_di(series, c, number)) for c in columns}
        return moment, values

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
        await self.send_only(self._checked(what, dlt645.time_sync_request, moment, self.preamble), what)

    async def freeze(self, address: str = dlt645.BROADCAST, when: str = dlt645.FREEZE_NOW) -> None:
        """Freeze (``99999999`` = now); broadcast gets no reply, a single meter acknowledges."""
        what = self._what("freeze", address, None)
        request = self._checked(what, dlt645.freeze_request, address, when, self.preamble)
        if address == dlt645.BROADCAST:
            await self.send_only(request, what)
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

    async def _exchange(
        self,
        request: bytes,
        address: str,
        function: int,
        what: str,
        di: str | None = None,
        seq: int | None = None,
    ) -> Reply:
        """``di`` (and ``seq`` for a follow-up): the reply must be about that data item — a reply that
        arrives twice, or late after its request timed out, answers an earlier request and is skipped."""

        async def accept(raw: bytes) -> Reply | None:
            reply = self._matching(dlt645.parse_frame(raw), address, function)
            if reply is not None and reply.error is None and di is not None and reply.di != di:
                return None
            if reply is not None and seq is not None and reply.seq is not None and reply.seq != seq:
                return None
            return reply

        reply = await self.exchange(request, accept, what)
        if reply.error is not None:
            raise DeviceRejected(f"{what}: meter answered {reply.error}")
        return reply

    @staticmethod
    def _matching(frame: Frame, address: str, function: int) -> Reply | None:
        """The reply from ``address`` to ``function``, or None for anything else on the line."""
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

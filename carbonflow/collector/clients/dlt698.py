"""asyncio DL/T 698.45 client: GET/SET/ACTION/record reads, time sync and carbon-factor download.

One request in flight per connection.  Frames the meter sends on its own (LINK login/heartbeat,
REPORT-Notification) are answered as a master station does and kept in :attr:`Dlt698Client.reports`.
After a failed attempt the connection is dropped and reopened, so a late answer can never be taken for
the answer to the next request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from carbonflow.collector.clients.base import FramedClient
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, RetryPolicy
from carbonflow.protocols.dlt698.apdu import (
    ActionRequestNormal,
    ActionResponseNormal,
    Apdu,
    ErrorResponse,
    GetRecord,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    GetResponseNormal,
    GetResponseNormalList,
    GetResponseRecord,
    LinkRequest,
    LinkResponse,
    ReportNotificationList,
    ReportNotificationRecordList,
    ReportResponseList,
    ReportResponseRecordList,
    ResultNormal,
    SetRequestNormal,
    SetResponseNormal,
)
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.describe import dar_text
from carbonflow.protocols.dlt698.frame import decode_frame, split_frames
from carbonflow.protocols.dlt698.objects import (
    DEFAULT_CARBON_ITEMS,
    FREEZE_TIME_OI,
    UNITS,
    CarbonItems,
    ObjectTable,
    decimal_text,
    scaled,
)
from carbonflow.protocols.dlt698.requests import (
    DATE_TIME_OAD,
    carbon_factor_data,
    client_frame,
    date_time,
    date_time_s,
    link_answer_frame,
    server_address,
)
from carbonflow.protocols.dlt698.types import INTEGER_TYPES, Data, DataType, DateTimeS, Oad, Omd, Rsd, Ti
from carbonflow.protocols.errors import ProtocolError

CHINA_TIME = timezone(timedelta(hours=8), "CST")
FREEZE_TIME_OAD = Oad(FREEZE_TIME_OI, 2, 0)


@dataclass(frozen=True)
class Reading:
    """One attribute as read: engineering value(s) as Decimal with the meter's scaler, and the unit."""

    oad: Oad
    name: str | None
    value: Decimal | list | str | None
    unit: str | None
    data: Data

    @property
    def text(self) -> str:
        def show(value: object) -> str:
            return decimal_text(value) if isinstance(value, Decimal) else str(value)

        if isinstance(self.value, list):
            return ", ".join(show(v) for v in self.value)
        return show(self.value)


@dataclass(frozen=True)
class FactorSchedule:
    start: datetime  # meter local time
    interval: Ti
    factors: tuple[Decimal, ...]


def engineering(data: Data, scaler: int) -> Decimal | list | str | None:
    """Integers -> Decimal x 10^scaler (exact), arrays/structures -> lists, dates -> text, null -> None."""
    if data.type in (DataType.ARRAY, DataType.STRUCTURE):
        return [engineering(item, scaler) for item in data.value]
    if data.type in INTEGER_TYPES and data.type != DataType.ENUM:
        return scaled(data.value, scaler)
    if data.type == DataType.NULL:
        return None
    if data.type in (DataType.OCTET_STRING, DataType.TSA):
        return data.value.hex().upper()
    return data.value if data.type == DataType.ENUM else str(data.value)


def _as_oad(oad: Oad | str) -> Oad:
    return oad if isinstance(oad, Oad) else Oad.parse(oad)


class Dlt698Client(FramedClient):
    protocol = "dlt698"

    def __init__(
        self,
        host: str,
        port: int,
        address: str,
        client_address: int = 0x00,
        policy: RetryPolicy | None = None,
        carbon: CarbonItems = DEFAULT_CARBON_ITEMS,
        objects: ObjectTable | None = None,
        timezone: timezone = CHINA_TIME,
    ) -> None:
        self.address = server_address(address)
        super().__init__(host, port, f"DL/T 698 meter {self.address.address} at {host}:{port}", policy)
        self.client_address = client_address
        self.carbon = carbon
        self.objects = objects or carbon.table()
        self.timezone = timezone
        self.reports: list[Apdu] = []  # REPORT-Notifications and LINK-Requests received
        self._piid = 0  # of the request in flight (one at a time)

    def split_frames(self, buffer: bytearray, rejects: list[str]) -> list[bytes]:
        return split_frames(buffer)  # frames with a bad FCS too: decoding them names the fault

    # -- exchange -------------------------------------------------------------------------------------
    def _next_piid(self) -> int:
        self._piid = (self._piid + 1) % 64
        return self._piid

    async def _request(self, make: Callable[[int], Apdu], what: str, expected: tuple[type, ...]) -> Apdu:
        """Send the APDU built by ``make(piid)`` and wait for the matching reply, with retries."""

        def request() -> bytes:  # a new PIID for each attempt
            return client_frame(self.address, make(self._next_piid()), self.client_address)

        async def accept(raw: bytes) -> Apdu | None:
            try:
                frame = decode_frame(raw)
                reply = decode_apdu(frame.apdu)
            except ProtocolError as error:
                raise DeviceError(f"bad reply frame: {error}") from None
            if frame.control.is_request:  # the meter speaks on its own: answer as a master does
                await self._answer_meter(reply)
                return None
            if isinstance(reply, ErrorResponse):
                raise DeviceRejected(f"{self.name}: {what}: ERROR-Response code {reply.error}")
            piid = getattr(reply, "piid_acd", self._piid) & 0x3F
            return reply if isinstance(reply, expected) and piid == self._piid else None

        return await self.exchange(request, accept, f"{self.name}: {what}")

    async def _answer_meter(self, apdu: Apdu) -> None:
        self.reports.append(apdu)
        if isinstance(apdu, LinkRequest):
            now = date_time(datetime.now(UTC).astimezone(self.timezone))
            reply: Apdu = LinkResponse(apdu.piid_acd & 0x3F, 0x80, apdu.time, now, now)
        elif isinstance(apdu, ReportNotificationList):
            reply = ReportResponseList(apdu.piid_acd & 0x3F, tuple(r.oad for r in apdu.results))
        elif isinstance(apdu, ReportNotificationRecordList):
            reply = ReportResponseRecordList(apdu.piid_acd & 0x3F, tuple(r.oad for r in apdu.results))
        else:
            return
        await self.send(link_answer_frame(self.address, reply, self.client_address))

    # -- reading --------------------------------------------------------------------------------------
    def _reading(self, result: ResultNormal) -> Reading:
        if result.data is None:
            code = result.dar if result.dar is not None else 255
            raise DeviceRejected(f"{self.name}: GET {result.oad} refused: DAR {code} ({dar_text(code)})")
        item = self.objects.find(result.oad.oi, result.oad.attribute)
        scaler = item.scaler if item is not None and result.oad.attribute_id != 3 else 0
        unit = item.unit if item is not None and result.oad.attribute_id != 3 else None
        return Reading(
            result.oad, item.name if item else None, engineering(result.data, scaler), unit, result.data
        )

    async def get(self, oad: Oad | str) -> Reading:
        target = _as_oad(oad)
        reply = await self._request(
            lambda p: GetRequestNormal(p, target), f"GET {target}", (GetResponseNormal,)
        )
        assert isinstance(reply, GetResponseNormal)
        return self._reading(reply.result)

    async def get_many(self, oads: list[Oad | str]) -> list[Reading]:
        targets = tuple(_as_oad(o) for o in oads)
        what = "GET " + ",".join(str(t) for t in targets)
        reply = await self._request(
            lambda p: GetRequestNormalList(p, targets), what, (GetResponseNormalList,)
        )
        assert isinstance(reply, GetResponseNormalList)
        return [self._reading(result) for result in reply.results]

    async def get_record(
        self, oad: Oad | str, columns: list[Oad | str], last: int = 1
    ) -> list[dict[str, Decimal | list | str | None]]:
        """Rows of a record object (selector 9: the ``last``-th most recent), keyed by column OAD."""
        request = GetRecord(_as_oad(oad), Rsd.last(last), tuple(_as_oad(c) for c in columns))
        what = f"GET record {request.oad}"
        reply = await self._request(lambda p: GetRequestRecord(p, request), what, (GetResponseRecord,))
        assert isinstance(reply, GetResponseRecord)
        if reply.result.rows is None:
            code = reply.result.dar or 255
            raise DeviceRejected(f"{self.name}: {what} refused: DAR {code} ({dar_text(code)})")
        rows = []
        for row in reply.result.rows:
            cells = {}
            for column, cell in zip(reply.result.columns, row):
                item = self.objects.find(column.oi, column.attribute) if isinstance(column, Oad) else None
                cells[str(column)] = engineering(cell, item.scaler if item else 0)
            rows.append(cells)
        return rows

    async def read_frozen(
        self, oi: int, number: int, columns: list[Oad | str]
    ) -> tuple[datetime, dict[str, Decimal | list | str | None]] | None:
        """The ``number``-th last record (1 = newest) of freeze object ``oi`` (5002 minute, 5003 hour,
        5004 day): its freeze time 2021-0200 (naive, the meter's local time) and the ``columns`` by OAD
        text; None when the meter has no such record."""
        rows = await self.get_record(Oad(oi, 2, 0), [FREEZE_TIME_OAD, *columns], number)
        if not rows:
            return None
        row = dict(rows[0])
        shown = row.pop(str(FREEZE_TIME_OAD))
        if shown is None:
            return None
        try:
            return datetime.fromisoformat(str(shown)), row
        except ValueError:
            raise DeviceError(f"{self.name}: frozen record {oi:04X} -{number} has time {shown!r}") from None

    async def read_scaler_unit(self, oad: Oad | str) -> tuple[int, str]:
        """Attribute 3 of the object: (scaler, unit text) as the meter declares them."""
        target = _as_oad(oad)
        reading = await self.get(Oad(target.oi, 3, 0))
        if reading.data.type != DataType.SCALER_UNIT:
            raise DeviceError(f"{self.name}: {target.oi:04X} attribute 3 is {reading.data.type.label}")
        value = reading.data.value
        return value.scaler, UNITS.get(value.unit, str(value.unit))

    # -- writing --------------------------------------------------------------------------------------
    async def set(self, oad: Oad | str, data: Data) -> None:
        target = _as_oad(oad)
        what = f"SET {target}"
        reply = await self._request(lambda p: SetRequestNormal(p, target, data), what, (SetResponseNormal,))
        assert isinstance(reply, SetResponseNormal)
        if reply.dar:
            raise DeviceRejected(f"{self.name}: {what} refused: DAR {reply.dar} ({dar_text(reply.dar)})")

    async def action(self, omd: Omd | str, parameter: Data | None = None) -> Data | None:
        method = omd if isinstance(omd, Omd) else Omd.parse(omd)
        what = f"ACTION {method}"
        argument = parameter or Data.null()
        reply = await self._request(
            lambda p: ActionRequestNormal(p, method, argument), what, (ActionResponseNormal,)
        )
        assert isinstance(reply, ActionResponseNormal)
        if reply.dar:
            raise DeviceRejected(f"{self.name}: {what} refused: DAR {reply.dar} ({dar_text(reply.dar)})")
        return reply.data

    async def read_time(self) -> datetime:
        """The meter clock as an aware datetime in the meter's zone."""
        reading = await self.get(DATE_TIME_OAD)
        value: DateTimeS = reading.data.value
        return datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second, tzinfo=self.timezone
        )

    async def sync_time(self, moment: datetime | None = None) -> None:
        """SET 40000200 to ``moment`` (default now), shown in the meter's local zone."""
        local = (moment or datetime.now(UTC)).astimezone(self.timezone)
        await self.set(DATE_TIME_OAD, Data(DataType.DATE_TIME_S, date_time_s(local)))

    # -- carbon ---------------------------------------------------------------------------------------
    async def read_carbon(self) -> dict[str, Reading]:
        forward, reverse = self.carbon.forward, self.carbon.reverse
        readings = await self.get_many(
            [Oad(forward.oi, forward.attribute), Oad(reverse.oi, reverse.attribute)]
        )
        return {"forward": readings[0], "reverse": readings[1]}

    async def read_carbon_factor(self) -> FactorSchedule | None:
        item = self.carbon.factor
        reading = await self.get(Oad(item.oi, item.attribute))
        data = reading.data
        if data.type == DataType.NULL:
            return None
        try:
            start, interval, factors = data.value
            s = start.value
            moment = datetime(s.year, s.month, s.day, s.hour, s.minute, s.second)
            values = tuple(scaled(f.value, item.scaler) for f in factors.value)
        except (TypeError, ValueError, AttributeError):
            raise DeviceError(
                f"{self.name}: carbon factor {item.oi:04X} is not structure{{start, TI, factors}}"
            ) from None
        return FactorSchedule(moment, interval.value, values)

    async def set_carbon_factor(
        self, start: datetime, interval: Ti, factors: list[Decimal | str]
    ) -> FactorSchedule:
        """Download a factor schedule and read it back; a mismatch is a DeviceError."""
        item = self.carbon.factor
        local_start = start.astimezone(self.timezone).replace(tzinfo=None) if start.tzinfo else start
        try:
            data = carbon_factor_data(local_start, interval, factors, item.scaler)
        except ProtocolError as error:
            raise DeviceError(f"{self.name}: carbon factor not sent: {error}") from None
        await self.set(Oad(item.oi, item.attribute), data)
        expected = FactorSchedule(
            local_start.replace(microsecond=0), interval, tuple(Decimal(f) for f in factors)
        )
        echoed = await self.read_carbon_factor()
        if echoed != expected:
            raise DeviceError(f"{self.name}: carbon factor read back as {echoed}, expected {expected}")
        return echoed

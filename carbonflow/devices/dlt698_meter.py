"""A simulated DL/T 698.45 meter and electric-carbon meter (电碳表) on :class:`DeviceServer`.

Energy registers integrate the source's ``p_kw`` (forward when positive, reverse when negative);
voltage/current/power/power factor/frequency come from the source (``u_v``, ``i_a``, ``p_kw``,
``pf``, ``f_hz``; missing ones fall back to nominal values).  The carbon objects are the meter model's
:class:`CarbonItems`; the factor download is validated, stored, read back, and drives the carbon
registers (see :mod:`carbonflow.devices.carbon_meter`).

Freezing: with a ``freeze_period_s`` the meter runs the minute freeze 5002 (the hourly freeze 5003 when
the period is whole hours): at every multiple of the period since the UTC epoch on its own clock it
records the freeze time 2021-0200 (date_time_s, local) and the associated objects - forward / reverse
active energy 0010-0200 / 0020-0200 and the carbon registers - up to ``FREEZE_DEPTH`` records.
Attribute 3 lists them as structure{period, OAD, depth}; attribute 2 is read with GetRequestRecord,
RSD selector 9 (the n-th last record), 1 (the record whose 2021-0200 equals a time) or 2 (2021-0200 in
[start, end)).  The simulated meter takes the records it owes when it is next asked anything, with the
registers' values at each boundary.  The daily freeze 5004 is taken by :meth:`Dlt698Meter.freeze`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from carbonflow.devices.base import (
    FORWARD_ENERGY,
    REVERSE_ENERGY,
    Connection,
    Counter,
    DeviceClock,
    DeviceServer,
    Faults,
    StaticSource,
    ValueSource,
)
from carbonflow.devices.carbon_meter import CarbonRegister, FactorSchedule, ti_timedelta
from carbonflow.protocols.dlt698.apdu import (
    ActionRequestNormal,
    ActionResponseNormal,
    Apdu,
    ErrorResponse,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    GetResponseNormal,
    GetResponseNormalList,
    GetResponseRecord,
    LinkRequest,
    LinkResponse,
    RawApdu,
    ReleaseRequest,
    ReleaseResponse,
    ReportResponseList,
    ResultNormal,
    ResultRecord,
    SetRequestNormal,
    SetRequestNormalList,
    SetResponseNormal,
    SetResponseNormalList,
)
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.axdr import encode_data
from carbonflow.protocols.dlt698.frame import (
    SERVER_RESPONSE,
    Control,
    Frame,
    LinkFunction,
    ServerAddress,
    decode_frame,
    split_frames,
)
from carbonflow.protocols.dlt698.objects import (
    DAILY_FROZEN_OI,
    DEFAULT_CARBON_ITEMS,
    FREEZE_TIME_OI,
    CarbonItems,
    ObjectItem,
    ObjectTable,
    carbon_unit_scale,
    freeze_object,
    scaled,
)
from carbonflow.protocols.dlt698.requests import date_time, date_time_s
from carbonflow.protocols.dlt698.types import Data, DataType, DateTimeS, Oad
from carbonflow.protocols.errors import ProtocolError

CHINA_TIME = timezone(timedelta(hours=8), "CST")
DAR_REFUSED, DAR_UNDEFINED, DAR_NO_OBJECT, DAR_TYPE, DAR_RANGE, DAR_OTHER = 3, 4, 6, 7, 8, 255
FREEZE_TIME_OAD = Oad(FREEZE_TIME_OI, 2, 0)
FREEZE_DEPTH = 288  # records kept by the minute / hourly freeze (3 days of 15-minute records)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Record = dict[Oad, Data]
BROADCAST_TIME_METHOD = 127  # 4000 method 127: broadcast time sync with a date_time_s parameter
ENERGY_ROLLOVER_KWH = Decimal(2**32) * Decimal("0.01")  # double-long-unsigned energy at 0.01 kWh wraps here


@dataclass(frozen=True)
class MeterModel:
    """What a meter model serves, as data: phases, tariffs, its carbon objects, its local time zone."""

    name: str = "generic DL/T 698.45 electric-carbon meter"
    phases: int = 3
    tariffs: int = 4
    carbon: CarbonItems = DEFAULT_CARBON_ITEMS
    timezone: timezone = CHINA_TIME
    energy_resolution: Decimal = Decimal("0.0001")  # extended-precision register, kWh
    max_factors: int = 96
    initial_factor: Decimal | None = None  # kgCO2/kWh in force before any download
    objects: ObjectTable = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", self.carbon.table())


def _raw(value: float | Decimal, scaler: int) -> int:
    """An engineering value as the integer a meter stores at ``scaler`` (rounded half even)."""
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return int(number.scaleb(-scaler).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class Dlt698Meter(DeviceServer):
    protocol = "dlt698"
    reads_at_true_time = True  # registers advance on true time; only the displayed clock is the meter's

    def __init__(
        self,
        name: str,
        address: str = "000000000001",
        source: ValueSource | None = None,
        model: MeterModel | None = None,
        faults: Faults | None = None,
        clock: DeviceClock | None = None,
        login_on_connect: bool = False,
        heartbeat_s: int = 180,
        freeze_period_s: int | None = None,
    ) -> None:
        super().__init__(name, faults, clock)
        self.freeze_period_s = freeze_period_s
        self.freeze_oi, self.freeze_every = freeze_object(freeze_period_s) if freeze_period_s else (None, 0)
        self.address = ServerAddress(address)
        self.source = source or StaticSource({"p_kw": 0.0})
        self.model = model or MeterModel()
        self.login_on_connect = login_on_connect
        self.heartbeat_s = heartbeat_s
        self.link_responses: list[LinkResponse] = []
        self.frozen: list[Record] = []  # daily frozen records, oldest first
        self.period_frozen: list[Record] = []  # minute / hourly frozen records, oldest first
        self._freezes_checked: datetime | None = None  # periodic freezes are taken up to this clock time
        self.factor_data: Data | None = None  # the last factor download as received, for read-back
        res, rollover = self.model.energy_resolution, ENERGY_ROLLOVER_KWH
        self.forward_energy = Counter(lambda t: max(self._p_kw(t), 0.0), resolution=res, rollover=rollover)
        self.reverse_energy = Counter(lambda t: max(-self._p_kw(t), 0.0), resolution=res, rollover=rollover)
        self.forward_carbon = self._carbon_register(self.forward_energy, self.model.carbon.forward)
        self.reverse_carbon = self._carbon_register(self.reverse_energy, self.model.carbon.reverse)
        self._readers = self._build_readers()
        carbon = self.model.carbon
        self.freeze_columns = (  # what the periodic freeze keeps, besides its time 2021-0200
            Oad(0x0010, 2, 0),
            Oad(0x0020, 2, 0),
            Oad(0x0010, 4, 0),  # extended precision (0.0001 kWh): what a meter behind CT/VT is read at
            Oad(0x0020, 4, 0),
            Oad(carbon.forward.oi, carbon.forward.attribute, 0),
            Oad(carbon.reverse.oi, carbon.reverse.attribute, 0),
        )

    def _carbon_register(self, energy: Counter, item: ObjectItem) -> CarbonRegister:
        """The carbon register ``item`` counting Δ``energy`` x the factor in force, in its own unit."""
        return CarbonRegister(
            energy.value,
            Decimal(1).scaleb(item.scaler),
            self.model.initial_factor,
            carbon_unit_scale(item.unit, self.model.carbon.factor.unit),
        )

    def counter_registers(self) -> dict[str, Counter]:
        return {FORWARD_ENERGY: self.forward_energy, REVERSE_ENERGY: self.reverse_energy}

    def _set_counters(self, counters: Mapping[str, Counter]) -> None:
        """New energy registers restart their carbon registers, which count from now on (as the
        energy registers do)."""
        self.forward_energy = counters.get(FORWARD_ENERGY, self.forward_energy)
        self.reverse_energy = counters.get(REVERSE_ENERGY, self.reverse_energy)
        self.forward_carbon = self._carbon_register(self.forward_energy, self.model.carbon.forward)
        self.reverse_carbon = self._carbon_register(self.reverse_energy, self.model.carbon.reverse)
        self.advance()

    # -- physical values ----------------------------------------------------------------------------
    def _read(self, quantity: str, t: datetime, default: float) -> float:
        try:
            return self.source.read(quantity, t)
        except KeyError:
            return default

    def _p_kw(self, t: datetime) -> float:
        return self._read("p_kw", t, 0.0)

    def true_time(self) -> datetime:
        return self.clock.now_fn()

    def local_time(self) -> datetime:
        """The meter's own clock as it displays it (naive local time)."""
        return self.clock.now().astimezone(self.model.timezone).replace(tzinfo=None)

    def advance(self) -> datetime:
        """Bring every register up to now; returns the true time used."""
        now, local = self.true_time(), self.local_time()
        self.forward_carbon.advance(now, local)
        self.reverse_carbon.advance(now, local)
        return now

    # -- objects ------------------------------------------------------------------------------------
    def _build_readers(self) -> dict[tuple[int, int], Callable[[datetime], Data]]:
        carbon = self.model.carbon
        readers: dict[tuple[int, int], Callable[[datetime], Data]] = {
            (0x0010, 2): lambda t: self._energy_array(
                self.forward_energy.value(t), -2, DataType.DOUBLE_LONG_UNSIGNED
            ),
            (0x0010, 4): lambda t: self._energy_array(
                self.forward_energy.value(t), -4, DataType.LONG64_UNSIGNED
            ),
            (0x0020, 2): lambda t: self._energy_array(
                self.reverse_energy.value(t), -2, DataType.DOUBLE_LONG_UNSIGNED
            ),
            (0x0020, 4): lambda t: self._energy_array(
                self.reverse_energy.value(t), -4, DataType.LONG64_UNSIGNED
            ),
            (0x0000, 2): lambda t: self._energy_array(self._combined(t), -2, DataType.DOUBLE_LONG),
            (0x0000, 4): lambda t: self._energy_array(self._combined(t), -4, DataType.LONG64),
            (0x2000, 2): lambda t: self._phases(DataType.LONG_UNSIGNED, self._read("u_v", t, 220.0), -1),
            (0x2001, 2): lambda t: self._phases(DataType.DOUBLE_LONG, self._current(t), -3),
            (0x2004, 2): lambda t: self._total_and_phases(DataType.DOUBLE_LONG, self._p_kw(t) * 1000, -1),
            (0x200A, 2): lambda t: self._power_factor(t),
            (0x200F, 2): lambda t: Data(DataType.LONG_UNSIGNED, _raw(self._read("f_hz", t, 50.0), -2)),
            (0x4000, 2): lambda t: Data(DataType.DATE_TIME_S, date_time_s(self.local_time())),
            (0x4001, 2): lambda t: Data(DataType.OCTET_STRING, bytes.fromhex(self.address.address)),
            (carbon.forward.oi, carbon.forward.attribute): lambda t: self._carbon(
                self.forward_carbon, carbon.forward
            ),
            (carbon.reverse.oi, carbon.reverse.attribute): lambda t: self._carbon(
                self.reverse_carbon, carbon.reverse
            ),
            (carbon.factor.oi, carbon.factor.attribute): lambda t: self.factor_data or Data.null(),
        }
        return readers

    def _combined(self, t: datetime) -> Decimal:
        return self.forward_energy.value(t) + self.reverse_energy.value(t)

    def _energy_array(self, total: Decimal, scaler: int, data_type: DataType) -> Data:
        # the whole total is registered in tariff 1; a real tariff schedule is out of scope
        raw = int(total.scaleb(-scaler).to_integral_value(rounding=ROUND_FLOOR))
        values = [raw, raw] + [0] * (self.model.tariffs - 1)
        return Data.array([Data(data_type, v) for v in values])

    def _current(self, t: datetime) -> float:
        default = abs(self._p_kw(t)) * 1000 / (self.model.phases * self._read("u_v", t, 220.0))
        return self._read("i_a", t, default)

    def _phases(self, data_type: DataType, value: float, scaler: int) -> Data:
        return Data.array([Data(data_type, _raw(value, scaler))] * self.model.phases)

    def _total_and_phases(self, data_type: DataType, total: float, scaler: int) -> Data:
        items = [Data(data_type, _raw(total, scaler))]
        items += [Data(data_type, _raw(total / self.model.phases, scaler))] * self.model.phases
        return Data.array(items)

    def _power_factor(self, t: datetime) -> Data:
        p, q = self._p_kw(t), self._read("q_kvar", t, 0.0)
        factor = self._read("pf", t, abs(p) / math.hypot(p, q) if (p or q) else 1.0)
        return Data.array([Data(DataType.LONG, _raw(factor, -3))] * (1 + self.model.phases))

    def _carbon(self, register: CarbonRegister, item: ObjectItem) -> Data:
        return Data(
            item.element_type or DataType.DOUBLE_LONG_UNSIGNED, int(register.value().scaleb(-item.scaler))
        )

    def read_attribute(self, oad: Oad, now: datetime) -> tuple[Data | None, int]:
        """(Data, 0) or (None, DAR) for one OAD, as the meter would answer it: DAR 8 (out of range) for
        a value its data type cannot hold (e.g. active power above 214 MW as double-long in 0.1 W)
        instead of dropping the link."""
        data, dar = self._attribute(oad, now)
        if data is not None:
            try:
                encode_data(data)
            except ProtocolError:
                return None, DAR_RANGE
        return data, dar

    def _attribute(self, oad: Oad, now: datetime) -> tuple[Data | None, int]:
        key = (oad.oi, oad.attribute_id)
        if oad.oi == self.freeze_oi and oad.attribute_id == 3 and oad.index == 0:
            return self._freeze_associations(), 0
        if oad.attribute_id == 3 and (oad.oi, 2) in self._readers:
            item = self.model.objects.find(oad.oi, 2)
            if item is not None:
                return Data(DataType.SCALER_UNIT, item.scaler_unit), 0
        reader = self._readers.get(key)
        if reader is None:
            return None, DAR_NO_OBJECT
        data = reader(now)
        if oad.index == 0:
            return data, 0
        if data.type not in (DataType.ARRAY, DataType.STRUCTURE) or oad.index > len(data.value):
            return None, DAR_UNDEFINED
        return data.value[oad.index - 1], 0

    def _freeze_associations(self) -> Data:
        """Attribute 3 of the periodic freeze object: array of structure{period, OAD, depth}."""
        return Data.array(
            [
                Data.structure(
                    [
                        Data(DataType.LONG_UNSIGNED, self.freeze_every),
                        Data(DataType.OAD, oad),
                        Data(DataType.LONG_UNSIGNED, FREEZE_DEPTH),
                    ]
                )
                for oad in self.freeze_columns
            ]
        )

    def freeze_times(self, after: datetime, until: datetime) -> list[datetime]:
        """The periodic freeze moments of the meter's clock in ``(after, until]``, the last depth of them."""
        period = self.freeze_period_s
        if not period or until <= after:
            return []
        first = int((after - EPOCH).total_seconds() // period) + 1
        last = int((until - EPOCH).total_seconds() // period)
        first = max(first, last - FREEZE_DEPTH + 1)
        return [EPOCH + timedelta(seconds=k * period) for k in range(first, last + 1)]

    def catch_up_freezes(self) -> None:
        """Take every periodic frozen record due by the meter's clock now and not yet taken, each with
        the registers at its boundary (registers run on true time: boundary minus the clock's offset)."""
        shown, true_now = self.clock.now(), self.true_time()
        checked = self._freezes_checked
        self._freezes_checked = shown if checked is None else max(checked, shown)
        if checked is None:
            return
        offset = shown - true_now
        for moment in self.freeze_times(checked, shown):
            true_time = moment - offset
            local = moment.astimezone(self.model.timezone).replace(tzinfo=None)
            self.forward_carbon.advance(true_time, local)
            self.reverse_carbon.advance(true_time, local)
            record: Record = {FREEZE_TIME_OAD: Data(DataType.DATE_TIME_S, date_time_s(local))}
            for oad in self.freeze_columns:
                data, dar = self.read_attribute(oad, true_time)
                if data is not None and not dar:
                    record[oad] = data
            self.period_frozen.append(record)
        del self.period_frozen[:-FREEZE_DEPTH]

    def freeze(self) -> None:
        """Take a daily frozen record (the simulator calls this at day change; tests call it directly)."""
        now = self.advance()
        record = {FREEZE_TIME_OAD: Data(DataType.DATE_TIME_S, date_time_s(self.local_time()))}
        for oi, attribute in self._readers:
            data, dar = self.read_attribute(Oad(oi, attribute, 0), now)
            if data is not None and not dar:
                record[Oad(oi, attribute, 0)] = data
        self.frozen.append(record)

    # -- writes -------------------------------------------------------------------------------------
    def write_attribute(self, oad: Oad, data: Data) -> int:
        carbon = self.model.carbon
        if (oad.oi, oad.attribute_id, oad.index) == (0x4000, 2, 0):
            return self._set_time(data)
        if (oad.oi, oad.attribute_id, oad.index) == (carbon.factor.oi, carbon.factor.attribute, 0):
            return self._download_factors(data)
        return DAR_REFUSED if (oad.oi, oad.attribute_id) in self._readers else DAR_NO_OBJECT

    def _set_time(self, data: Data) -> int:
        if data.type != DataType.DATE_TIME_S:
            return DAR_TYPE
        value: DateTimeS = data.value
        try:
            local = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
        except ValueError:
            return DAR_RANGE
        self.advance()
        self.clock.set(local.replace(tzinfo=self.model.timezone).astimezone(UTC))
        now, local_now = self.true_time(), self.local_time()
        self.forward_carbon.clock_set(now, local_now)
        self.reverse_carbon.clock_set(now, local_now)
        return 0

    def _download_factors(self, data: Data) -> int:
        """Validate structure{date_time_s, TI, array long-unsigned} and put the schedule in force."""
        item = self.model.carbon.factor
        if data.type != DataType.STRUCTURE or len(data.value) != 3:
            return DAR_TYPE
        start, interval, factors = data.value
        if (
            start.type != DataType.DATE_TIME_S
            or interval.type != DataType.TI
            or factors.type != DataType.ARRAY
        ):
            return DAR_TYPE
        if any(f.type != item.element_type for f in factors.value):
            return DAR_TYPE
        if ti_timedelta(interval.value) is None or not 1 <= len(factors.value) <= self.model.max_factors:
            return DAR_RANGE
        s = start.value
        try:
            start_local = datetime(s.year, s.month, s.day, s.hour, s.minute, s.second)
        except ValueError:
            return DAR_RANGE
        values = tuple(scaled(f.value, item.scaler) for f in factors.value)
        schedule = FactorSchedule(start_local, interval.value, values)
        now, local = self.true_time(), self.local_time()
        self.forward_carbon.download(schedule, now, local)
        self.reverse_carbon.download(schedule, now, local)
        self.factor_data = data
        return 0

    # -- protocol -----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.catch_up_freezes()  # periodic freezes and the registers count from the moment of switch-on
        self.advance()
        return await super().start(host, port)

    def split_frames(self, buffer: bytearray) -> list[bytes]:
        return split_frames(buffer)

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """Break the FCS (the two bytes before the final 16), not the end byte."""
        return frame[:-3] + bytes([frame[-3] ^ 0xFF]) + frame[-2:] if len(frame) >= 3 else frame

    def _frame(self, control: Control, client: int, apdu: Apdu) -> bytes:
        return Frame(control, self.address, client, apdu.encode()).encode()

    def link_request(self, kind: int = 0) -> bytes:
        """The meter's LINK-Request (0 login, 1 heartbeat, 2 logout) as it sends it when dialling in."""
        apdu = LinkRequest(
            0, kind, self.heartbeat_s, date_time(self.clock.now().astimezone(self.model.timezone))
        )
        control = Control(from_server=True, initiated_by_client=False, function=LinkFunction.LINK_MANAGEMENT)
        return self._frame(control, 0, apdu)

    async def on_connect(self, connection: Connection) -> None:
        if self.login_on_connect:
            await connection.send(self.link_request(0))

    async def handle(self, frame: bytes, connection: Connection) -> bytes | None:
        try:
            request = decode_frame(frame)
        except ProtocolError:
            return None  # a real meter stays silent on a corrupted frame
        if not self.address.matches(request.server):
            return None
        try:
            apdu = decode_apdu(request.apdu)
        except ProtocolError:
            return self._frame(SERVER_RESPONSE, request.client, ErrorResponse(0, 1))
        if isinstance(apdu, LinkResponse | ReportResponseList):
            if isinstance(apdu, LinkResponse):
                self.link_responses.append(apdu)
            connection.state["linked"] = True
            return None
        reply = self.respond(apdu)
        if reply is None:
            return None
        control = SERVER_RESPONSE
        if isinstance(reply, LinkResponse):
            control = Control(
                from_server=True, initiated_by_client=True, function=LinkFunction.LINK_MANAGEMENT
            )
        return self._frame(control, request.client, reply)

    def respond(self, apdu: Apdu) -> Apdu | None:
        """One request APDU -> the reply APDU."""
        self.catch_up_freezes()  # a meter freezes on its own: the records due are taken first
        now = self.advance()
        match apdu:
            case GetRequestNormal():
                data, dar = self.read_attribute(apdu.oad, now)
                return GetResponseNormal(
                    apdu.piid, ResultNormal(apdu.oad, data, dar if data is None else None)
                )
            case GetRequestNormalList():
                results = []
                for oad in apdu.oads:
                    data, dar = self.read_attribute(oad, now)
                    results.append(ResultNormal(oad, data, dar if data is None else None))
                return GetResponseNormalList(apdu.piid, tuple(results))
            case GetRequestRecord():
                return GetResponseRecord(apdu.piid, self._record(apdu))
            case SetRequestNormal():
                return SetResponseNormal(apdu.piid, apdu.oad, self.write_attribute(apdu.oad, apdu.data))
            case SetRequestNormalList():
                results = tuple((oad, self.write_attribute(oad, data)) for oad, data in apdu.items)
                return SetResponseNormalList(apdu.piid, results)
            case ActionRequestNormal():
                dar = DAR_NO_OBJECT
                if (apdu.omd.oi, apdu.omd.method) == (0x4000, BROADCAST_TIME_METHOD):
                    dar = self._set_time(apdu.data)
                return ActionResponseNormal(apdu.piid, apdu.omd, dar)
            case LinkRequest():
                stamp = date_time(self.clock.now().astimezone(self.model.timezone))
                return LinkResponse(apdu.piid_acd, 0x80, apdu.time, stamp, stamp)
            case ReleaseRequest():
                return ReleaseResponse(apdu.piid, 0)
            case RawApdu(raw_tag=0x02):
                return self._connect_response(apdu.payload)
        return ErrorResponse(getattr(apdu, "piid", 0), 2)

    def _record(self, apdu: GetRequestRecord) -> ResultRecord:
        record = apdu.record
        columns = record.columns or (FREEZE_TIME_OAD, Oad(0x0010, 2, 0))
        stores = {DAILY_FROZEN_OI: self.frozen}
        if self.freeze_oi is not None:
            stores[self.freeze_oi] = self.period_frozen
        if record.oad.oi not in stores or record.oad.attribute_id != 2:
            return ResultRecord(record.oad, columns, dar=DAR_NO_OBJECT)
        rows = _select(stores[record.oad.oi], record.rsd.selector, record.rsd.fields)
        if rows is None:
            return ResultRecord(record.oad, columns, dar=DAR_OTHER)
        cells = tuple(
            tuple(row.get(c, Data.null()) if isinstance(c, Oad) else Data.null() for c in columns)
            for row in rows
        )
        return ResultRecord(record.oad, columns, rows=cells)

    def _connect_response(self, payload: bytes) -> Apdu:
        """Accept a public CONNECT by agreeing to what the client proposed (no security)."""
        if len(payload) < 39:
            return ErrorResponse(0, 1)
        piid, proposal = payload[0], payload[1:38]  # version .. connection timeout
        factory = b"\x00" * 32  # vendor code, software/hardware versions and dates, extension
        return RawApdu(raw_tag=0x82, payload=bytes([piid]) + factory + proposal + b"\x00\x00" + b"\x00\x00")


def _moment(data: Any) -> tuple[int, ...] | None:
    """A date_time_s Data as a comparable tuple (None for anything else)."""
    if not isinstance(data, Data) or data.type != DataType.DATE_TIME_S:
        return None
    v = data.value
    return (v.year, v.month, v.day, v.hour, v.minute, v.second)


def _select(records: list[Record], selector: int, fields: tuple[Any, ...]) -> list[Record] | None:
    """Records (oldest first) chosen by an RSD: 9 the n-th last, 1 the ones whose column equals a
    value, 2 the ones whose column lies in [start, end); None for a selector the meter does not serve."""
    if selector == 9:
        last = fields[0]
        return [records[-last]] if 1 <= last <= len(records) else []
    if selector == 1:
        column, value = fields
        return [r for r in records if r.get(column) == value]
    if selector == 2:
        column, start, end = fields[:3]
        low, high = _moment(start), _moment(end)
        chosen = []
        for r in records:
            at = _moment(r.get(column))
            if at is not None and (low is None or at >= low) and (high is None or at < high):
                chosen.append(r)
        return chosen
    return None

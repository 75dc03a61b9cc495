"""Boundary-aligned energy from DL/T 645 and DL/T 698.45 meters: the simulated meters freeze their
counters at the boundaries of their own clock, the collector reads the records back after every boundary
(catching up missed ones) and sends them at the freeze time - corrected and ``estimated`` when the
meter's clock is off by more than its tolerance.  Real TCP on 127.0.0.1; the dlt698 package as a peer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import dlt698
import pytest
from collector_services import FakeTime, config
from dlt698 import codec as peer
from dlt698._native import AddressType as PeerAddressType
from dlt698._native import GetRecord as PeerGetRecord
from dlt698._native import Selector9 as PeerSelector9
from dlt698._native import ServerAddress as PeerServerAddress

from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceRejected, RetryPolicy
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.pollers import make_poller
from carbonflow.collector.validate import RawValue, Validator
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.dlt645_meter import Dlt645Meter, epoch_aligned_start, hourly_freeze_minutes
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.devices.from_map import device_from_entry
from carbonflow.protocols.dlt645.di_table import DEFAULT_TABLE, frozen_di
from carbonflow.protocols.dlt698.apdu import GetRecord, GetRequestRecord
from carbonflow.protocols.dlt698.axdr import encode_data
from carbonflow.protocols.dlt698.objects import freeze_object
from carbonflow.protocols.dlt698.requests import date_time_s
from carbonflow.protocols.dlt698.types import Data, DataType, Oad, Rsd

FAST = RetryPolicy(timeout_s=1.0, retries=1, backoff_s=0.01)
A645, A698 = "110100000001", "220100000001"
T0 = datetime(2026, 6, 1, 4, 7, tzinfo=UTC)  # 12:07 Beijing time
CST = timezone(timedelta(hours=8))


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    """A Beijing wall time of 2026-06-01 as UTC."""
    return datetime(2026, 6, 1, hh - 8, mm, tzinfo=UTC) + timedelta(seconds=ss)


def kwh(kw: float, start: datetime, end: datetime) -> Decimal:
    return Decimal(repr(kw * (end - start).total_seconds() / 3600)).quantize(Decimal("0.01"))


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def meter645(
    time: FakeTime, kw: float = 36.0, offset_s: float = 0.0, period: int | None = 900
) -> Dlt645Meter:
    clock = DeviceClock(offset_s=offset_s, now_fn=time, _epoch=time.now)
    return Dlt645Meter("m645", A645, StaticSource({"p_kw": kw}), clock=clock, freeze_period_s=period)


def meter698(
    time: FakeTime, kw: float = 36.0, offset_s: float = 0.0, period: int | None = 900
) -> Dlt698Meter:
    clock = DeviceClock(offset_s=offset_s, now_fn=time, _epoch=time.now)
    return Dlt698Meter("m698", A698, StaticSource({"p_kw": kw}), clock=clock, freeze_period_s=period)


def start_time() -> FakeTime:
    time = FakeTime()
    time.now = T0
    return time


# -- codec -------------------------------------------------------------------------------------------
def test_freeze_dis_are_in_the_table_as_data():
    assert frozen_di("0504", "01", 1) == "05040101" and frozen_di("0504", "00", 254) == "050400FE"
    assert DEFAULT_TABLE["050400FE"].format == "YYMMDDhhmm"
    assert DEFAULT_TABLE["05040101"].format == "XXXXXX.XX" and not DEFAULT_TABLE["05040101"].is_block
    assert DEFAULT_TABLE["05010203"].is_block  # instant freeze keeps total + tariffs
    assert DEFAULT_TABLE["04001202"].writable and DEFAULT_TABLE["04001201"].writable
    assert "050400FF" not in DEFAULT_TABLE and "05010004" not in DEFAULT_TABLE
    with pytest.raises(ValueError):
        frozen_di("0504", "00", 255)
    item = DEFAULT_TABLE["05040001"]
    assert item.decode(item.encode("2026-06-01 12:15")) == "2026-06-01 12:15"


def test_freeze_periods_each_protocol_can_do():
    assert hourly_freeze_minutes(None) == 0 and hourly_freeze_minutes(60) == 1
    assert hourly_freeze_minutes(900) == 15 and hourly_freeze_minutes(3600) == 60
    for bad in (30, 90, 7200):
        with pytest.raises(ValueError, match=r"1\.\.60 minutes"):
            hourly_freeze_minutes(bad)
    assert freeze_object(60) == (0x5002, 1) and freeze_object(900) == (0x5002, 15)
    assert freeze_object(3600) == (0x5003, 1) and freeze_object(7200) == (0x5003, 2)
    with pytest.raises(ValueError, match="whole number of minutes"):
        freeze_object(90)
    # the default start of the 645 hourly freeze is a multiple of the period since the UTC epoch
    start = epoch_aligned_start(420, CST)
    assert (
        start >= datetime(2000, 1, 1)
        and (start.replace(tzinfo=CST) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % 420 == 0
    )
    assert epoch_aligned_start(900, CST) == datetime(2000, 1, 1)


# -- the simulated meters freeze at the boundaries of their own clock ---------------------------------
def test_dlt645_meter_freezes_at_its_boundaries_and_the_client_reads_them_back():
    async def scenario():
        time = start_time()
        meter = meter645(time)
        async with meter, Dlt645Client("127.0.0.1", meter.port, policy=FAST) as client:
            assert await client.read_frozen(A645, 1, ["01"]) is None  # nothing frozen yet
            time.now = at(12, 50, 17)
            assert await client.read(A645, "04001202") == Decimal("15")
            newest = await client.read_frozen(A645, 1, ["01", "02"])
            oldest = await client.read_frozen(A645, 3, ["01"])
            assert await client.read_frozen(A645, 4, ["01"]) is None
            # the interval and the start are parameters: 5 minutes from 12:50 on
            await client.write(A645, "04001202", Decimal(5))
            await client.write(A645, "04001201", "2026-06-01 12:50")
            with pytest.raises(DeviceRejected, match="other error"):
                await client.write(A645, "04001202", Decimal(61))
            time.now = at(13, 0, 1)
            five = [await client.read_frozen(A645, n, ["01"]) for n in (1, 2)]
            return newest, oldest, five

    newest, oldest, five = asyncio.run(scenario())
    assert newest == (datetime(2026, 6, 1, 12, 45), {"01": kwh(36, T0, at(12, 45)), "02": Decimal("0.00")})
    assert oldest == (datetime(2026, 6, 1, 12, 15), {"01": Decimal("4.80")})  # 8 min at 36 kW
    assert five[0] == (datetime(2026, 6, 1, 13, 0), {"01": kwh(36, T0, at(13, 0))})
    assert five[1] == (datetime(2026, 6, 1, 12, 55), {"01": kwh(36, T0, at(12, 55))})


def test_dlt645_export_freezes_on_the_reverse_register_and_the_instant_freeze_is_separate():
    async def scenario():
        time = start_time()
        meter = meter645(time, kw=-120.0)
        async with meter, Dlt645Client("127.0.0.1", meter.port, policy=FAST) as client:
            time.now = at(12, 20)
            await client.freeze(A645)  # 99999999: instant freeze, its own records
            return (
                await client.read_frozen(A645, 1, ["01", "02"]),
                await client.read_frozen(A645, 1, ["02"], series="0501"),
            )

    hourly, instant = asyncio.run(scenario())
    assert hourly == (datetime(2026, 6, 1, 12, 15), {"01": Decimal("0.00"), "02": Decimal("16.00")})
    assert instant[0] == datetime(2026, 6, 1, 12, 20) and instant[1]["02"][0] == Decimal("26.00")


def test_dlt698_meter_minute_freeze_object_and_its_records():
    async def scenario():
        time = start_time()
        meter = meter698(time, kw=-48.0)
        async with meter, Dlt698Client("127.0.0.1", meter.port, A698, policy=FAST) as client:
            time.now = at(12, 46, 3)
            associations = await client.get("50020300")
            columns = ["00100200", "00200200", "20900200"]
            records = [await client.read_frozen(0x5002, n, columns) for n in (1, 2, 3, 4)]
            return associations, records, meter

    associations, records, meter = asyncio.run(scenario())
    listed = [(s.value[0].value, str(s.value[1].value), s.value[2].value) for s in associations.data.value]
    assert listed == [
        (15, "00100200", 288),
        (15, "00200200", 288),
        (15, "00100400", 288),  # extended precision: what a meter behind CT/VT is read at
        (15, "00200400", 288),
        (15, "20800200", 288),
        (15, "20900200", 288),
    ]
    assert [r[0] for r in records[:3]] == [datetime(2026, 6, 1, 12, m) for m in (45, 30, 15)]
    assert records[3] is None
    _tag, values = records[2]
    assert values["00200200"][0] == Decimal("6.40") and values["00100200"][0] == Decimal("0.00")  # 8 min
    assert records[0][1]["00200200"][0] == kwh(48, T0, at(12, 45))
    # selector 1 (the record of a freeze time) and 2 (freeze times in [start, end)), on the meter itself
    by_time = GetRecord(
        Oad(0x5002, 2, 0),
        Rsd(1, (Oad(0x2021, 2, 0), Data(DataType.DATE_TIME_S, date_time_s(datetime(2026, 6, 1, 12, 30))))),
        (Oad(0x2021, 2, 0), Oad(0x0020, 2, 0)),
    )
    result = meter.respond(GetRequestRecord(1, by_time)).result
    assert len(result.rows) == 1 and result.rows[0][1].value[0].value == 1840  # 23 min x 48 kW, 0.01 kWh
    between = GetRecord(
        Oad(0x5002, 2, 0),
        Rsd(
            2,
            (
                Oad(0x2021, 2, 0),
                Data(DataType.DATE_TIME_S, date_time_s(datetime(2026, 6, 1, 12, 15))),
                Data(DataType.DATE_TIME_S, date_time_s(datetime(2026, 6, 1, 12, 45))),
                Data.null(),
            ),
        ),
        (Oad(0x2021, 2, 0),),
    )
    assert len(meter.respond(GetRequestRecord(2, between)).result.rows) == 2


def test_dlt698_hourly_freeze_for_whole_hours():
    time = start_time()
    meter = meter698(time, period=3600)
    meter.respond(GetRequestRecord(1, GetRecord(Oad(0x5003, 2, 0), Rsd.last(1), (Oad(0x2021, 2, 0),))))
    time.now = at(14, 30)
    result = meter.respond(
        GetRequestRecord(2, GetRecord(Oad(0x5003, 2, 0), Rsd.last(1), (Oad(0x2021, 2, 0),)))
    )
    assert result.result.rows[0][0].value == date_time_s(datetime(2026, 6, 1, 14, 0))
    assert meter.respond(GetRequestRecord(3, GetRecord(Oad(0x5002, 2, 0), Rsd.last(1), ()))).result.dar == 6


def _peer_address(text: str) -> PeerServerAddress:
    return PeerServerAddress(bytes=bytes.fromhex(text)[::-1], logical=0, type=PeerAddressType.single)


def test_the_dlt698_package_reads_our_minute_freeze_record():
    async def main():
        time = start_time()
        meter = meter698(time)
        async with meter:
            options = dlt698.ClientOptions(protocol=dlt698.SessionOptions(server=_peer_address(A698)))
            async with dlt698.AsyncClient(options) as client:
                await client.connect_tcp("127.0.0.1", meter.port, dlt698.ConnectionProfile.local_preset)
                time.now = at(12, 31)
                request = PeerGetRecord(
                    attribute=dlt698.Oad(oi=0x5002, attribute=2),
                    columns=[dlt698.Oad(oi=0x2021, attribute=2), dlt698.Oad(oi=0x0010, attribute=2)],
                    rows=PeerSelector9(previous=1),
                )
                result = await client.get_record(request)
                await client.disconnect()
                return result

    result = asyncio.run(main())
    ((tag, energy),) = result.result
    assert peer.encode_data(tag) == encode_data(
        Data(DataType.DATE_TIME_S, date_time_s(datetime(2026, 6, 1, 12, 30)))
    )
    registers = [1380, 1380, 0, 0, 0]  # total and tariffs: 23 min at 36 kW = 13.80 kWh, all in tariff 1
    assert peer.encode_data(energy) == encode_data(
        Data.array([Data(DataType.DOUBLE_LONG_UNSIGNED, v) for v in registers])
    )


# -- the collector reads the records after every boundary -----------------------------------------------
def _devices(m645: Dlt645Meter, m698: Dlt698Meter, **extra) -> list[dict]:
    """Each meter with a frozen energy counter ``e`` (an OAD index for 698) and a live power ``p``."""
    devices = []
    for name, meter, key, address, energy, power in (
        ("M645", m645, "di", A645, "00010000", "02030000"),
        ("M698", m698, "oad", A698, "00100201", "20040200"),
    ):
        points = [{"name": "e", key: energy, "kind": "counter", "frozen": True}, {"name": "p", key: power}]
        endpoint = f"127.0.0.1:{meter.port}"
        devices.append(
            {
                "id": name,
                "protocol": meter.protocol,
                "endpoint": endpoint,
                "address": address,
                "points": points,
            }
        )
    return [{**d, "freeze_period_s": 900, **extra} for d in devices]


class Rig:
    """Both meters, their pollers on the fake time, and a validator the readings must pass."""

    def __init__(self, tmp_path, offset_s: float = 0.0, **extra) -> None:
        self.time = start_time()
        self.meters = (meter645(self.time, offset_s=offset_s), meter698(self.time, offset_s=offset_s))
        self.tmp_path, self.extra = tmp_path, extra
        self.validator = Validator()

    async def __aenter__(self) -> Rig:
        for meter in self.meters:
            await meter.start()
        cfg = config(_devices(*self.meters, **self.extra), self.tmp_path)
        self.pollers = [make_poller(d, cfg, lambda *_: None, clock=self.time) for d in cfg.devices]
        return self

    async def __aexit__(self, *exc) -> None:
        for poller in self.pollers:
            await poller.close()
        for meter in self.meters:
            await meter.stop()

    async def poll(self, when: datetime, strict: bool = True) -> dict[str, list[RawValue]]:
        self.time.now = when
        out = {}
        for poller in self.pollers:
            values = await poller.poll()
            for value in values:  # what the collector would accept: nothing dropped as out of order
                verdict = self.validator.check(
                    f"{poller.device.id}/{value.point}", poller.device.point(value.point), value
                )
                assert verdict.reading is not None or not strict, verdict.flag
            out[poller.device.id] = values
        return out


def _frozen(values: list[RawValue]) -> list[tuple[datetime, Decimal | None, str]]:
    return [(v.ts, v.value, v.quality) for v in values if v.point == "e" and v.ts.second == 0]


def test_collector_sends_frozen_counters_at_the_boundary_and_catches_up_missed_ones(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            first = await rig.poll(at(12, 10))  # nothing frozen since the meters started
            boundary = await rig.poll(at(12, 15, 0.4))
            missed = await rig.poll(at(13, 20, 30.2))  # four boundaries without a poll in between
            again = await rig.poll(at(13, 20, 40.2))
            return first, boundary, missed, again, rig.pollers

    first, boundary, missed, again, pollers = asyncio.run(scenario())
    for device in ("M645", "M698"):
        assert [v.point for v in first[device]] == ["e", "p"]
        frozen, live = boundary[device][0], boundary[device][1]
        assert (frozen.point, frozen.ts, frozen.value, frozen.quality) == (
            "e",
            at(12, 15),
            Decimal("4.80"),
            "good",
        )
        assert live.point == "e" and live.ts == at(12, 15, 0.4)  # the live read stays, at its true time
        caught = [(v.ts, v.value) for v in missed[device] if v.ts.second == 0 and v.point == "e"]
        assert caught == [
            (at(h, m), kwh(36, T0, at(h, m))) for h, m in ((12, 30), (12, 45), (13, 0), (13, 15))
        ]
        assert not _frozen(again[device])  # nothing new: no record read again
    assert all(p.freezes.note is None for p in pollers)


def test_a_skewed_meter_clock_gives_estimated_readings_at_the_corrected_time(tmp_path):
    async def scenario():
        async with Rig(tmp_path, offset_s=30.0) as rig:
            await rig.poll(at(12, 10))
            before = await rig.poll(at(12, 14, 20))  # the meters' clocks show 12:14:50: not frozen yet
            after = await rig.poll(at(12, 14, 40))  # they show 12:15:10: frozen at true 12:14:30
            return (
                before,
                after,
                [p.clock_offset_s for p in rig.pollers],
                [p.freezes.note for p in rig.pollers],
            )

    before, after, offsets, notes = asyncio.run(scenario())
    assert offsets == [30.5, 30.5]  # whole-second clocks read mid-second (the +0.5 s of _offset)
    for device in ("M645", "M698"):
        assert not _frozen(before[device])
        frozen = after[device][0]
        assert frozen.point == "e" and frozen.quality == "estimated"
        assert abs((frozen.ts - at(12, 14, 30)).total_seconds()) <= 0.5  # corrected, not the meter's 12:15
        # the right value: the register at its freeze (the meter floors its float integral: one digit)
        assert abs(frozen.value - kwh(36, T0, at(12, 14, 30))) <= Decimal("0.01")
    assert all("beyond tolerance 2 s" in note for note in notes)


def test_within_tolerance_the_boundary_stands_and_live_reads_wait_for_the_record(tmp_path):
    async def scenario():
        async with Rig(tmp_path, offset_s=-1.0) as rig:
            await rig.poll(at(12, 10))
            early = await rig.poll(at(12, 15, 0.5))  # meters show 12:14:59.5: no record yet
            late = await rig.poll(at(12, 15, 5))
            return early, late

    early, late = asyncio.run(scenario())
    for device in ("M645", "M698"):
        assert [v.point for v in early[device]] == ["p"]  # the frozen counter's live read is held back
        frozen = late[device][0]
        assert (frozen.point, frozen.ts, frozen.quality) == ("e", at(12, 15), "good")
        assert frozen.value == kwh(36, T0, at(12, 15, 1))  # frozen at true 12:15:01
        assert [v.point for v in late[device][1:]] == ["e", "p"]


def test_a_freeze_that_never_comes_is_noted_and_live_reads_go_on(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            for meter in rig.meters:  # the meters were not configured to freeze
                meter.freeze_period_s = None
            rig.meters[0].settings["04001202"] = Decimal(0)
            await rig.poll(at(12, 10))
            values = await rig.poll(at(12, 15, 30))
            return values, [p.freezes.note for p in rig.pollers]

    values, notes = asyncio.run(scenario())
    for device in ("M645", "M698"):
        assert [v.point for v in values[device]] == ["e", "p"]  # live reads only
    assert all(note and "no freeze record" in note for note in notes), notes


def test_a_freeze_time_from_the_future_is_kept_but_invalid(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            await rig.poll(at(12, 10))
            meter = rig.meters[0]
            meter.frozen["0504"].insert(0, (datetime(2026, 6, 1, 18, 0), [Decimal("99.00")], [Decimal(0)]))
            values = await rig.poll(at(12, 15, 30), strict=False)  # the live read shares "now" with it
            note = rig.pollers[0].freezes.note
            later = await rig.poll(at(12, 30, 30))
            assert rig.pollers[0].freezes.note is None  # the next good record clears it
            return values["M645"], note, later["M645"]

    values, note, later = asyncio.run(scenario())
    future = [v for v in values if v.value == Decimal("99.00")]
    assert len(future) == 1 and future[0].quality == "invalid" and future[0].ts == at(12, 15, 30)
    assert "in the future" in note
    assert _frozen(values) == [(at(12, 15), Decimal("4.80"), "good")]  # the good record is not spoilt
    assert _frozen(later) == [(at(12, 30), Decimal("13.80"), "good")]  # nor are the next ones


def test_freeze_configuration_comes_from_the_device_map():
    entry = {
        "id": "EM-1",
        "protocol": "dlt698",
        "address": {"sa": A698},
        "endpoint": {"host": "127.0.0.1", "port": 1},
        "freeze_period_s": 900,
        "points": [
            {
                "id": "EM-1/e",
                "address": {"oad": "00100200"},
                "element_kind": "generator",
                "element_id": "G1",
                "quantity": "export_energy_kwh",
                "unit": "kWh",
                "frozen": True,
            },
        ],
    }
    mapped = device_from_entry(entry)
    assert mapped.server.freeze_oi == 0x5002 and mapped.server.freeze_every == 15
    as_645 = {**entry, "protocol": "dlt645", "address": {"address": A645}}
    as_645["points"] = [{**entry["points"][0], "address": {"di": "00010000"}}]
    assert device_from_entry(as_645).server.settings["04001202"] == Decimal(15)
    without = device_from_entry({**entry, "freeze_period_s": None}).server
    assert without.freeze_oi is None
    as_645 |= {"id": "EM-2", "points": [{**as_645["points"][0], "id": "EM-2/e"}]}
    document = config_from_device_map({"devices": [entry, as_645]})
    for device in document["devices"]:
        assert device["freeze_period_s"] == 900 and device["points"][0]["frozen"] is True

"""One poller per device, the same few calls for every protocol (over carbonflow/collector/clients):
the polled meters (DL/T 645, DL/T 698.45, Modbus) here, IEC 104 in :mod:`.iec104_poller`, what they
share (time stamps, the :class:`Poller` base) in :mod:`.poller_base`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected
from carbonflow.collector.clients.modbus import ModbusClient
from carbonflow.collector.config import LoadedConfig
from carbonflow.collector.frozen import HOLD_MARGIN_S, FreezeTracker, FrozenRecord, last_boundary, straddles
from carbonflow.collector.iec104_poller import Iec104Poller
from carbonflow.collector.poller_base import (
    DLT645_CARBON_FACTOR,
    DLT645_DATE,
    DLT645_TIME,
    TI_SECONDS,
    Clock,
    Deliver,
    Poller,
    _offset,
    device_time_ts,
    factors_of,
    first_number,
    read_stamp,
    system_clock,
    to_ms,
)
from carbonflow.collector.validate import RawValue
from carbonflow.messages.collector_config import DeviceConfig
from carbonflow.protocols.dlt645.di_table import FROZEN_COLUMN_OF, HOURLY_FREEZE_DEPTH
from carbonflow.protocols.dlt698.objects import freeze_object
from carbonflow.protocols.dlt698.types import Oad, Ti, TimeUnit


class Dlt645Poller(Poller):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        device = self.device
        self.address = device.address or ""
        self.client = Dlt645Client(device.host, device.port, policy=self.policy, name=f"{device.id} (dlt645)")
        self.freezes = FreezeTracker(device, HOURLY_FREEZE_DEPTH)
        unfrozen = [p.name for p in self.freezes.points if p.di not in FROZEN_COLUMN_OF]
        self.freezes.points = [p for p in self.freezes.points if p.di in FROZEN_COLUMN_OF]
        if unfrozen:  # the hourly freeze keeps the active energy totals only
            self.freezes.note = f"{', '.join(unfrozen)}: no frozen record for its DI, read live only"

    async def close(self) -> None:
        await self.client.close()

    async def _frozen_record(self, number: int) -> FrozenRecord | None:
        columns = {p.name: FROZEN_COLUMN_OF[p.di or ""] for p in self.freezes.points}
        record = await self.client.read_frozen(self.address, number, sorted(set(columns.values())))
        if record is None:
            return None
        tag, shown = record
        return FrozenRecord(tag, {name: first_number(shown[column]) for name, column in columns.items()})

    async def poll(self) -> list[RawValue]:
        values = await frozen_values(self, self.freezes, self._frozen_record)
        for point in self.freezes.live_points(self.now(), self.clock_offset_s):
            before = self.now()
            try:
                shown = await self.client.read(self.address, point.di or "")
            except DeviceRejected:  # this DI only: the meter answered, it is online
                values.append(RawValue(point.name, None, to_ms(self.now()), "invalid"))
                continue
            after = self.now()
            if not self.freezes.keeps_live(point, before, after, self.clock_offset_s):
                continue
            number = first_number(shown)
            ts, quality = read_stamp(before, after, self.device.freeze_period_s)
            values.append(RawValue(point.name, number, ts, quality if number is not None else "invalid"))
        return values

    async def read_clock_offset(self) -> float | None:
        before = self.now()
        date = await self.client.read(self.address, DLT645_DATE)
        clock = await self.client.read(self.address, DLT645_TIME)
        after = self.now()
        local = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=self.device.zone)
        self.clock_offset_s = _offset(local, before, after)
        return self.clock_offset_s

    async def time_sync(self) -> str:
        # 645 time sync is a broadcast without an answer: read the clock back to know it took
        await self.client.time_sync(self.now().astimezone(self.device.zone).replace(tzinfo=None))
        offset = await self.read_clock_offset()
        return f"broadcast time sync sent; clock offset now {offset:+.3f} s"

    async def set_carbon_factor(self, params: dict[str, Any]) -> str:
        factor = factors_of(params)[-1]
        di = str(params.get("di", DLT645_CARBON_FACTOR))
        await self.client.write(self.address, di, factor)
        held = await self.client.read(self.address, di)
        if first_number(held) != factor:
            raise DeviceError(f"{self.device.id}: carbon factor {di} read back as {held}, expected {factor}")
        return f"DI {di} = {held} (read back)"


class Dlt698Poller(Poller):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        device = self.device
        self.client = Dlt698Client(
            device.host, device.port, device.address or "", policy=self.policy, timezone=device.zone
        )  # type: ignore[arg-type]
        factor = self.client.carbon.factor
        self.factor_oad = f"{factor.oi:04X}{factor.attribute:02X}00"
        self.freezes = FreezeTracker(
            device, 0xFFFF
        )  # the meter says its depth; we stop at the last delivered
        self.freeze_oi = 0
        if self.freezes.active:
            try:
                self.freeze_oi = freeze_object(device.freeze_period_s or 0)[0]
            except ValueError as error:  # a period the meter cannot freeze at: live reads only
                self.freezes.points, self.freezes.note = [], str(error)

    async def close(self) -> None:
        await self.client.close()

    async def _frozen_record(self, number: int) -> FrozenRecord | None:
        oads = {p.name: Oad.parse(p.oad or "") for p in self.freezes.points}
        columns = sorted({Oad(o.oi, o.attribute, 0) for o in oads.values()}, key=str)
        record = await self.client.read_frozen(self.freeze_oi, number, list(columns))
        if record is None:
            return None
        tag, shown = record
        values = {}
        for name, oad in oads.items():
            cell = shown.get(str(Oad(oad.oi, oad.attribute, 0)))
            if oad.index and isinstance(cell, list):
                cell = cell[oad.index - 1] if oad.index <= len(cell) else None
            values[name] = first_number(cell)
        return FrozenRecord(tag, values)

    async def poll(self) -> list[RawValue]:
        values = await frozen_values(self, self.freezes, self._frozen_record)
        live = self.freezes.live_points(self.now(), self.clock_offset_s)
        plain = [p for p in live if p.oad != self.factor_oad]
        if plain:
            try:
                before = self.now()
                readings = await self.client.get_many([p.oad or "" for p in plain])
                after = self.now()
                ts, quality = read_stamp(before, after, self.device.freeze_period_s)
                for point, reading in zip(plain, readings):
                    if not self.freezes.keeps_live(point, before, after, self.clock_offset_s):
                        continue
                    number = first_number(reading.value)
                    shown = quality if number is not None else "invalid"
                    values.append(RawValue(point.name, number, ts, shown))
            except DeviceRejected:  # one OAD refused spoils the list: read them one by one
                for point in plain:
                    try:
                        number = first_number((await self.client.get(point.oad or "")).value)
                    except DeviceRejected:
                        number = None
                    values.append(
                        RawValue(
                            point.name, number, to_ms(self.now()), "good" if number is not None else "invalid"
                        )
                    )
        for point in live:
            if point.oad == self.factor_oad:
                factor = await self._factor_in_force()
                if factor is not None:
                    values.append(RawValue(point.name, factor, to_ms(self.now())))
        return values

    async def _factor_in_force(self) -> Decimal | None:
        """The downloaded schedule's factor at the meter's clock now (None before its start)."""
        schedule = await self.client.read_carbon_factor()
        if schedule is None or not schedule.factors:
            return None
        seconds = TI_SECONDS.get(TimeUnit(schedule.interval.unit)) if schedule.interval.unit <= 3 else None
        local_now = (self.now() + timedelta(seconds=self.clock_offset_s or 0.0)).astimezone(self.device.zone)
        elapsed = (local_now.replace(tzinfo=None) - schedule.start).total_seconds()
        if elapsed < 0:
            return None
        if not seconds or schedule.interval.interval <= 0:
            return schedule.factors[-1]
        index = int(elapsed // (seconds * schedule.interval.interval))
        return schedule.factors[min(index, len(schedule.factors) - 1)]

    async def read_clock_offset(self) -> float | None:
        before = self.now()
        device_time = await self.client.read_time()
        self.clock_offset_s = _offset(device_time, before, self.now())
        return self.clock_offset_s

    async def time_sync(self) -> str:
        await self.client.sync_time(self.now())
        offset = await self.read_clock_offset()
        return f"SET 40000200 done; clock offset now {offset:+.3f} s"

    async def set_carbon_factor(self, params: dict[str, Any]) -> str:
        """params: ``factors`` (or ``factor``), ``start`` (ISO 8601, default: now to the minute),
        ``interval_s`` (default 900, whole minutes/hours/days as TI)."""
        factors = factors_of(params)
        start_text = params.get("start")
        start = (
            datetime.fromisoformat(start_text) if start_text else self.now().replace(second=0, microsecond=0)
        )
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        interval = _ti(int(params.get("interval_s", 900)))
        echoed = await self.client.set_carbon_factor(start, interval, factors)
        shown = ", ".join(str(f) for f in echoed.factors)
        first = echoed.start.isoformat()
        return f"carbon factor schedule from {first} every {echoed.interval}: {shown} (read back)"


async def frozen_values(poller: Poller, freezes: FreezeTracker, read) -> list[RawValue]:
    """After a boundary of the meter's clock: the readings of the freeze records not delivered yet
    (the clock offset is measured first if it is not known; it decides ts and quality)."""
    if not freezes.due(poller.now(), poller.clock_offset_s):
        return []
    if poller.clock_offset_s is None:
        await poller.read_clock_offset()
    return await freezes.collect(read, poller.now(), poller.clock_offset_s)


def _ti(seconds: int) -> Ti:
    if seconds <= 0:
        raise ValueError("interval_s must be positive")
    for unit, size in ((TimeUnit.DAY, 86400), (TimeUnit.HOUR, 3600), (TimeUnit.MINUTE, 60)):
        if seconds % size == 0:
            return Ti(int(unit), seconds // size)
    return Ti(int(TimeUnit.SECOND), seconds)


class ModbusPoller(Poller):
    """Reads the configured registers; a counter point marked ``frozen`` whose register the map
    snapshots at interval ends is also sent as the snapshot, with ``ts`` = the snapshot time - read in
    one request with the meter's clock, where the map has one.  Modbus has no clock synchronisation:
    without a clock register the snapshot time is trusted as it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        device = self.device
        self.register_map = self.config.register_map(device)
        self.client = ModbusClient(
            device.host,
            device.port,
            self.register_map,
            unit_id=device.unit_id or 0,
            policy=self.policy,
            name=f"{device.id} (modbus unit {device.unit_id})",
        )
        kinds = {p.kind: p.name for p in self.register_map.points}  # one clock / snapshot_time per map
        self.clock_register = kinds.get("clock")
        self.snapshot_time_register = kinds.get("snapshot_time")
        copies = {p.snapshot_of: p.name for p in self.register_map.points if p.kind == "snapshot"}
        self.snapshots = {  # point name -> the snapshot register of its counter
            p.name: copies[p.register_name or ""]
            for p in device.points
            if p.kind == "counter" and p.frozen and p.register_name in copies
        }
        self._last_snapshot: datetime | None = None  # snapshot time (device clock) last sent

    @property
    def has_clock(self) -> bool:
        return self.clock_register is not None

    async def close(self) -> None:
        self.client.close()

    async def poll(self) -> list[RawValue]:
        taken, values = None, []
        if self.snapshots and self.snapshot_time_register:
            taken, values = await self._snapshot()
        names = [p.register_name or "" for p in self.device.points]
        before = self.now()
        read = await self.client.read_points(names)
        after = self.now()
        now, quality = read_stamp(before, after, self.device.freeze_period_s)
        snapshot_ts = {v.point: v.ts for v in values}
        held = self._snapshot_pending(before, after, taken or self._last_snapshot)
        values += [
            RawValue(p.name, read[p.register_name or ""].value, now, quality)
            for p in self.device.points
            if p.name not in self.snapshots
            or (not held and (p.name not in snapshot_ts or snapshot_ts[p.name] < now))  # never behind it
        ]
        if taken is not None:
            self._last_snapshot = taken  # sent: a poll that fails sends it next time
        return values

    def _snapshot_pending(self, before: datetime, after: datetime, delivered: datetime | None) -> bool:
        """Hold back the live values of snapshotted counters read in ``before``..``after`` (collector
        time) when the read straddled a boundary on the meter's clock (see :func:`.frozen.straddles`),
        or when the meter passed a boundary whose snapshot is not delivered yet (shortly: a meter whose
        snapshot register stopped is not held back for good).  The snapshot gives the boundary's value."""
        period_s = self.device.freeze_period_s
        if not (self.snapshots and self.snapshot_time_register and period_s):
            return False
        if straddles(before, after, self.clock_offset_s, period_s):
            return True
        device_now = after + timedelta(seconds=self.clock_offset_s or 0.0)
        boundary = last_boundary(device_now, period_s)
        waiting = delivered is not None and delivered < boundary
        since_s = (device_now - boundary).total_seconds()
        return waiting and since_s < self.device.clock_tolerance_s + HOLD_MARGIN_S

    async def _snapshot(self) -> tuple[datetime | None, list[RawValue]]:
        """The interval snapshot block (and the clock) in one read; values only for a new snapshot."""
        names = [*([self.clock_register] if self.clock_register else []), self.snapshot_time_register or ""]
        names += list(dict.fromkeys(self.snapshots.values()))
        before = self.now()
        read = await self.client.read_points(names)
        if self.clock_register:
            shown = datetime.fromtimestamp(int(read[self.clock_register].value), UTC)
            self.clock_offset_s = _offset(shown, before, self.now())
        seconds = int(read[self.snapshot_time_register or ""].value)
        taken = datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
        if taken is None or taken == self._last_snapshot:
            return None, []
        ts, quality = device_time_ts(taken, self.clock_offset_s, self.device)
        return taken, [RawValue(name, read[reg].value, ts, quality) for name, reg in self.snapshots.items()]

    async def read_clock_offset(self) -> float | None:
        if self.clock_register is None:
            return None
        before = self.now()
        shown = (await self.client.read_points([self.clock_register]))[self.clock_register].value
        self.clock_offset_s = _offset(datetime.fromtimestamp(int(shown), UTC), before, self.now())
        return self.clock_offset_s

    async def set_carbon_factor(self, params: dict[str, Any]) -> str:
        """params: ``factor`` (in the register's unit) and optionally ``point`` (default: the map's only
        writable point that ``carbon`` registers take their factor from)."""
        factor = factors_of(params)[-1]
        name = params.get("point") or next(
            (p.factor_point for p in self.register_map.points if p.kind == "carbon" and p.factor_point), None
        )
        if not name:
            raise DeviceError(f"{self.device.id}: register map {self.register_map.model} has no factor point")
        held = await self.client.write_point(str(name), factor)
        return f"{name} = {held} (read back)"


POLLERS: dict[str, type[Poller]] = {
    "dlt645": Dlt645Poller,
    "dlt698": Dlt698Poller,
    "iec104": Iec104Poller,
    "modbus-tcp": ModbusPoller,
}


def make_poller(
    device: DeviceConfig, config: LoadedConfig, deliver: Deliver, clock: Clock = system_clock
) -> Poller:
    return POLLERS[device.protocol](device, config, deliver, clock)

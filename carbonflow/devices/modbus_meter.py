"""A simulated Modbus TCP meter whose registers follow a register map (data, per meter model).

Instant points show the source's value now; counters integrate their quantity (``-p_kw`` integrates
the negated power, i.e. export); a carbon register accumulates the increase of its energy register
times the carbon factor held in its factor register at that moment — the factor the center downloads.

Interval snapshots: with ``freeze_period_s`` the meter copies its counters into the map's ``snapshot``
registers at every multiple of that period of ITS OWN clock (UTC epoch) and shows that moment in the
``snapshot_time`` register (UNIX seconds) until the next one; the values are the registers at the
boundary itself, however late the meter notices it.  A ``clock`` register shows the meter's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from carbonflow.devices.base import (
    Connection,
    Counter,
    DerivedSource,
    DeviceClock,
    DeviceServer,
    Faults,
    StaticSource,
    ValueSource,
)
from carbonflow.devices.freeze import last_boundary
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus import frame as mb
from carbonflow.protocols.modbus.registers import RegisterMap, RegisterPoint, Table

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4


def corrupt_mbap(frame: bytes) -> bytes:
    """Modbus TCP has no checksum of its own (TCP carries one); the integrity fault breaks the MBAP
    header instead, which a master must reject just as it rejects a bad CRC on RTU."""
    return frame[:2] + b"\xde\xad" + frame[4:]


def split_frames(buffer: bytearray) -> list[bytes]:
    """Cut complete Modbus TCP ADUs from ``buffer``; a stream that is not Modbus is dropped."""
    frames = []
    while (length := mb.frame_length(buffer)) is not None:
        if buffer[2:4] != b"\x00\x00" or not 8 <= length <= mb.MAX_ADU:
            buffer.clear()  # not Modbus: a real server drops the stream
            break
        if len(buffer) < length:
            break
        frames.append(bytes(buffer[:length]))
        del buffer[:length]
    return frames


class ModbusMeter(DeviceServer):
    protocol = "modbus-tcp"

    def __init__(
        self,
        name: str,
        register_map: RegisterMap,
        source: ValueSource | None = None,
        unit_id: int = 1,
        faults: Faults | None = None,
        clock: DeviceClock | None = None,
        derive_phases: bool = False,
        freeze_period_s: int | None = None,
    ) -> None:
        super().__init__(name, faults, clock)
        if freeze_period_s is not None and freeze_period_s <= 0:
            raise ValueError(f"freeze_period_s must be positive, got {freeze_period_s}")
        self.freeze_period_s = freeze_period_s
        self.snapshot_time: datetime | None = None  # device clock; None: no snapshot yet
        self.snapshot: dict[str, Decimal] = {}  # snapshot register name -> value at snapshot_time
        self.map = register_map
        self.derive_phases = derive_phases  # a source with only P, Q, U: derive per-phase U, I, pf, f
        self.source = self._wrapped(source or StaticSource())
        self.unit_id = unit_id
        self.settings: dict[str, Decimal] = {
            p.name: p.initial if p.initial is not None else Decimal(0)
            for p in register_map.points
            if p.writable
        }
        self.counters: dict[str, Counter] = {
            p.name: Counter(self._rate(p.quantity), resolution=p.scale)
            for p in register_map.points
            if p.kind == "counter"
        }
        self.carbon: dict[str, Decimal] = {
            p.name: Decimal(0) for p in register_map.points if p.kind == "carbon"
        }
        self._carbon_base = {
            p.name: self.counters[p.energy_point].exact if p.energy_point in self.counters else Decimal(0)
            for p in register_map.points
            if p.kind == "carbon"
        }

    def _wrapped(self, source: ValueSource) -> ValueSource:
        return DerivedSource(source) if self.derive_phases else source

    def bind(self, source: ValueSource, clock: DeviceClock | None = None) -> None:
        super().bind(self._wrapped(source), clock)

    def counter_registers(self) -> dict[str, Counter]:
        return dict(self.counters)

    def _set_counters(self, counters: Mapping[str, Counter]) -> None:
        self.counters.update(counters)

    def _rate(self, quantity: str):
        sign, name = (-1.0, quantity[1:]) if quantity.startswith("-") else (1.0, quantity)
        return lambda t: sign * self.source.read(name, t)

    # -- interval snapshots -----------------------------------------------------------------------
    def snapshot_due(self, t: datetime) -> None:
        """Take the snapshot of the last interval end at or before ``t`` if not taken yet; call before
        anything reads the registers at ``t``.  Only the newest is kept, as the registers show one."""
        if not self.freeze_period_s:
            return
        boundary = last_boundary(t, self.freeze_period_s)
        if self.snapshot_time is not None and boundary <= self.snapshot_time:
            return  # taken (or the clock went back: keep the one taken until the next boundary)
        self.snapshot = {
            p.name: self.value(self.map.point(p.snapshot_of), boundary)
            for p in self.map.points
            if p.kind == "snapshot"
        }
        self.snapshot_time = boundary

    # -- register values --------------------------------------------------------------------------
    def value(self, point: RegisterPoint, t: datetime) -> Decimal:
        if point.writable:
            return self.settings[point.name]
        if point.kind == "clock":
            return Decimal(math.floor(t.timestamp()))
        if point.kind == "snapshot_time":
            return Decimal(0) if self.snapshot_time is None else Decimal(int(self.snapshot_time.timestamp()))
        if point.kind == "snapshot":
            return self.snapshot.get(point.name, Decimal(0))
        if point.kind == "counter":
            return self.counters[point.name].value(t)
        if point.kind == "carbon":
            return self._carbon_value(point, t)
        quantity = point.quantity or point.name
        sign, name = (-1, quantity[1:]) if quantity.startswith("-") else (1, quantity)
        return sign * Decimal(repr(self.source.read(name, t)))

    def _carbon_value(self, point: RegisterPoint, t: datetime) -> Decimal:
        """Carbon += Δenergy x the factor in force; accumulated at every read, as a meter does per
        sampling period, so a factor change applies from the moment it was written."""
        self._advance_carbon(t)
        steps = (self.carbon[point.name] / point.scale).to_integral_value(rounding=ROUND_FLOOR)
        return steps * point.scale

    def _advance_carbon(self, t: datetime) -> None:
        for point in self.map.points:
            if point.kind != "carbon":
                continue
            energy = self.counters[point.energy_point]
            energy.advance(t)
            delta_kwh = energy.exact - self._carbon_base[point.name]
            factor_g_per_kwh = self.settings.get(point.factor_point, Decimal(0))
            self.carbon[point.name] += delta_kwh * factor_g_per_kwh / 1000  # g -> kg
            self._carbon_base[point.name] = energy.exact

    def registers(self, table: Table, address: int, count: int, t: datetime) -> list[int]:
        """The registers a read returns; an address no point covers -> ILLEGAL_ADDRESS, as meters do."""
        words: list[int] = []
        cursor = address
        while cursor < address + count:
            point = self.map.at(table, cursor)
            if point is None:
                raise _ModbusException(ILLEGAL_ADDRESS)
            encoded = point.encode(self.value(point, t))
            words.extend(encoded[cursor - point.address :])
            cursor = point.address + point.words
        return words[:count]

    def write(self, address: int, values: list[int], t: datetime) -> None:
        self._advance_carbon(t)  # carbon so far was earned at the old factor
        cursor = 0
        while cursor < len(values):
            point = self.map.at(Table.HOLDING, address + cursor)
            if point is None or not point.writable or point.address != address + cursor:
                raise _ModbusException(ILLEGAL_ADDRESS)
            chunk = values[cursor : cursor + point.words]
            if len(chunk) != point.words:
                raise _ModbusException(ILLEGAL_VALUE)
            self.settings[point.name] = point.decode(chunk)
            cursor += point.words

    # -- serving ----------------------------------------------------------------------------------
    def corrupt_checksum(self, frame: bytes) -> bytes:
        return corrupt_mbap(frame)

    def split_frames(self, buffer: bytearray) -> list[bytes]:
        return split_frames(buffer)

    async def handle(self, frame: bytes, connection: Connection) -> bytes | None:
        try:
            request = mb.split_adu(frame)
        except ProtocolError:
            return None
        if request.unit not in (self.unit_id, 0, 0xFF):
            return None  # another device behind the same gateway
        t = self.clock.now()
        try:
            self.snapshot_due(t)
            return self._answer(request, t)
        except _ModbusException as error:
            return mb.exception_response(request, error.code)
        except ProtocolError:
            return mb.exception_response(request, ILLEGAL_VALUE)
        except (KeyError, ValueError):  # the source has no value for a mapped quantity
            return mb.exception_response(request, DEVICE_FAILURE)

    def _answer(self, request: mb.Adu, t: datetime) -> bytes:
        function, data = request.function, request.data
        if function in (3, 4):
            if len(data) != 4:
                raise _ModbusException(ILLEGAL_VALUE)
            address, count = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")
            if not 1 <= count <= 125:
                raise _ModbusException(ILLEGAL_VALUE)
            table = Table.HOLDING if function == 3 else Table.INPUT
            return mb.registers_response(request, self.registers(table, address, count, t))
        if function == 6 and len(data) == 4:
            self.write(int.from_bytes(data[:2], "big"), [int.from_bytes(data[2:], "big")], t)
            return mb.echo_response(request)
        if function == 16 and len(data) >= 5 and len(data) == 5 + data[4]:
            address, count = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
            if data[4] != 2 * count:
                raise _ModbusException(ILLEGAL_VALUE)
            values = [int.from_bytes(data[5 + 2 * i : 7 + 2 * i], "big") for i in range(count)]
            self.write(address, values, t)
            return mb.echo_response(request)
        raise _ModbusException(ILLEGAL_FUNCTION)


class _ModbusException(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code

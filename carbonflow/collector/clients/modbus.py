"""Modbus TCP client (master) reading and writing points of a register map, on pymodbus.

pymodbus frames the MBAP requests itself, so this client is no ``FramedClient``; it shares the retry
policy (``base.with_retries``) and the error mapping of the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from carbonflow.collector.clients.base import with_retries
from carbonflow.collector.clients.errors import DeviceError, DeviceRejected, RetryPolicy
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus.frame import EXCEPTION_NAMES
from carbonflow.protocols.modbus.registers import RegisterMap, Table

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its errors reach callers as DeviceErrors


@dataclass(frozen=True)
class PointValue:
    name: str
    value: Decimal  # exactly as the meter holds it, with the map's scale
    unit: str


class ModbusClient:
    def __init__(
        self,
        host: str,
        port: int,
        register_map: RegisterMap,
        unit_id: int = 1,
        policy: RetryPolicy | None = None,
        name: str | None = None,
    ) -> None:
        self.map = register_map
        self.unit_id = unit_id
        self.policy = policy or RetryPolicy()
        self.name = name or f"modbus {host}:{port} unit {unit_id}"
        # retries and timeouts are ours (with_retries), so pymodbus makes exactly one attempt
        self._client = AsyncModbusTcpClient(
            host,
            port=port,
            timeout=self.policy.timeout_s,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
        )

    async def __aenter__(self) -> ModbusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    async def _ensure_connected(self) -> None:
        if not self._client.connected and not await self._client.connect():
            raise DeviceError(f"{self.name}: cannot connect")

    async def _reset(self) -> None:
        self.close()

    async def _call(self, what: str, request: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """One pymodbus request with the retry policy; an exception reply is a DeviceRejected."""

        async def attempt() -> ModbusPDU:
            await self._ensure_connected()
            try:
                response = await request()
            except ModbusException as error:
                raise DeviceError(f"{what}: {error}") from error
            if response.isError():
                code = getattr(response, "exception_code", 0)
                raise DeviceRejected(f"{what}: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
            return response

        return await with_retries(attempt, what, self.policy, on_failure=self._reset)

    async def read_registers(self, table: Table, address: int, count: int) -> list[int]:
        what = f"{self.name}: read {table.value} {address}+{count}"
        read = (
            self._client.read_holding_registers
            if table is Table.HOLDING
            else self._client.read_input_registers
        )

        async def request() -> ModbusPDU:
            response = await read(address, count=count, device_id=self.unit_id)
            if not response.isError() and len(response.registers) != count:  # a short answer is retried
                raise DeviceError(f"{what}: answer has {len(response.registers)} registers")
            return response

        return list((await self._call(what, request)).registers)

    async def read_points(self, names: Iterable[str] | None = None) -> dict[str, PointValue]:
        """Read the named points (all of the map by default) in as few requests as the map allows."""
        wanted = [p.name for p in self.map.points] if names is None else list(names)
        values: dict[str, PointValue] = {}
        for table, start, count in self.map.read_plan(wanted):
            words = await self.read_registers(table, start, count)
            for name in wanted:
                point = self.map.point(name)
                if point.table is table and start <= point.address < start + count:
                    offset = point.address - start
                    try:
                        value = point.decode(words[offset : offset + point.words])
                    except ProtocolError as error:
                        raise DeviceError(f"{self.name}: {error}") from error
                    values[name] = PointValue(name, value, point.unit)
        return values

    async def write_point(self, name: str, value: Decimal | str) -> Decimal:
        """Write a setting (e.g. the carbon factor), read it back and return what the meter holds."""
        point = self.map.point(name)
        if not point.writable:
            raise DeviceError(f"{self.name}: point {name} is not writable")
        registers = point.encode(value)
        what = f"{self.name}: write {name}={value}"

        await self._call(
            what, lambda: self._client.write_registers(point.address, registers, device_id=self.unit_id)
        )
        held = (await self.read_points([name]))[name].value
        if held != point.decode(registers):
            raise DeviceError(f"{what}: read back {held}")
        return held

"""A Modbus TCP gateway: one port in front of several :class:`ModbusMeter` units, by unit id.

Each meter keeps its own faults and clock.  A unit that is offline or silent gets exception 0Bh
(gateway target device failed to respond), an unknown unit 0Ah (gateway path unavailable), as gateways
answer; a gateway with a single unit also answers the "any unit" ids 0 and FFh with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from carbonflow.devices.base import Connection, DeviceServer, Faults
from carbonflow.devices.modbus_meter import ModbusMeter, corrupt_mbap, split_frames
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus import frame as mb

GATEWAY_PATH_UNAVAILABLE, GATEWAY_TARGET_FAILED = 0x0A, 0x0B


class ModbusGateway(DeviceServer):
    protocol = "modbus-tcp"

    def __init__(self, name: str, units: Mapping[int, ModbusMeter], faults: Faults | None = None) -> None:
        super().__init__(name, faults)
        self.units = dict(units)

    def split_frames(self, buffer: bytearray) -> list[bytes]:
        return split_frames(buffer)

    def corrupt_checksum(self, frame: bytes) -> bytes:
        return corrupt_mbap(frame)

    def _unit(self, unit_id: int) -> ModbusMeter | None:
        meter = self.units.get(unit_id)
        if meter is None and len(self.units) == 1 and unit_id in (0, 0xFF):
            meter = next(iter(self.units.values()))
        return meter

    async def handle(self, frame: bytes, connection: Connection) -> bytes | None:
        try:
            request = mb.split_adu(frame)
        except ProtocolError:
            return None
        meter = self._unit(request.unit)
        if meter is None:
            return mb.exception_response(request, GATEWAY_PATH_UNAVAILABLE)
        faults = meter.faults
        if faults.offline or faults.silent:
            return mb.exception_response(request, GATEWAY_TARGET_FAILED)
        # the unit answers to its own id behind the gateway; the reply goes back under the one asked
        reply = await meter.handle(bytes(frame[:6]) + bytes([meter.unit_id]) + bytes(frame[7:]), connection)
        meter.requests_served += 1
        if reply is None:
            return None
        reply = reply[:6] + bytes([request.unit]) + reply[7:]
        if faults.garbage:
            return meter.garbled(reply)
        return meter.corrupt_checksum(reply) if faults.bad_checksum else reply

"""Modbus TCP application data units (MBAP header + PDU): decode captured frames, build requests and
the responses a simulated device sends.  The live client and the interop peer are pymodbus; this codec
serves `carbonflow frame` and the simulated devices, and is tested against pymodbus byte for byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from carbonflow.protocols.errors import ProtocolError

MBAP_LENGTH = 7  # transaction id (2), protocol id (2), length (2), unit id (1)
MAX_ADU = 260

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
}

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass(frozen=True)
class Adu:
    transaction: int
    unit: int
    function: int
    data: bytes  # the PDU after the function code

    def encode(self) -> bytes:
        pdu = bytes([self.function]) + self.data
        return struct.pack(">HHHB", self.transaction, 0, len(pdu) + 1, self.unit) + pdu


def split_adu(data: bytes) -> Adu:
    """One complete Modbus TCP frame -> its parts; the MBAP length must match exactly."""
    if len(data) < MBAP_LENGTH + 1:
        raise ProtocolError(f"truncated frame: {len(data)} bytes, a Modbus TCP frame has at least 8")
    transaction, protocol, length, unit = struct.unpack(">HHHB", data[:MBAP_LENGTH])
    if protocol != 0:
        raise ProtocolError(f"protocol id is {protocol}, Modbus is 0")
    if length < 2 or length > MAX_ADU - 6:
        raise ProtocolError(f"MBAP length {length} is outside 2..254")
    if len(data) - 6 != length:
        kind = "truncated frame" if len(data) - 6 < length else "length mismatch"
        raise ProtocolError(f"{kind}: MBAP length says {length} bytes follow, got {len(data) - 6}")
    return Adu(transaction, unit, data[MBAP_LENGTH], bytes(data[MBAP_LENGTH + 1 :]))


def frame_length(buffer: bytes | bytearray) -> int | None:
    """Bytes the frame at the start of a stream buffer needs, or None if the header is incomplete."""
    if len(buffer) < 6:
        return None
    return 6 + struct.unpack(">H", bytes(buffer[4:6]))[0]


# -- describing captured frames (C2) ------------------------------------------------------------------


def describe(data: bytes) -> dict:
    """A captured Modbus TCP frame -> the C2 JSON document."""
    adu = split_adu(data)
    doc: dict = {
        "protocol": "modbus-tcp",
        "transaction": adu.transaction,
        "unit": adu.unit,
        "function": adu.function & 0x7F,
        "name": FUNCTION_NAMES.get(adu.function & 0x7F, "unknown function"),
        "error": None,
    }
    if adu.function & 0x80:
        if len(adu.data) != 1:
            raise ProtocolError(f"exception response must carry 1 byte, got {len(adu.data)}")
        code = adu.data[0]
        doc.update(direction="response", error={"code": code, "name": EXCEPTION_NAMES.get(code, "unknown")})
        return doc
    if adu.function not in FUNCTION_NAMES:
        raise ProtocolError(f"unsupported function code {adu.function}")
    doc.update(_describe_pdu(adu.function, adu.data))
    return doc


def _describe_pdu(function: int, data: bytes) -> dict:
    if function in (1, 2, 3, 4):
        if len(data) == 4:
            address, count = struct.unpack(">HH", data)
            return {"direction": "request", "address": address, "count": count}
        if not data or data[0] != len(data) - 1:
            raise ProtocolError(
                f"length mismatch: byte count {data[:1].hex() or 'missing'}, {len(data) - 1} follow"
            )
        payload = data[1:]
        if function in (1, 2):
            bits = [str((payload[i // 8] >> (i % 8)) & 1) for i in range(8 * len(payload))]
            return {"direction": "response", "byte_count": len(payload), "values": bits}
        if len(payload) % 2:
            raise ProtocolError(f"register response has an odd byte count {len(payload)}")
        registers = struct.unpack(f">{len(payload) // 2}H", payload)
        return {
            "direction": "response",
            "byte_count": len(payload),
            "values": [str(r) for r in registers],
            "registers": [f"{r:04X}" for r in registers],
            "unit_of_values": "raw 16-bit registers (scale and type come from the device's register map)",
        }
    if function in (5, 6):
        if len(data) != 4:
            raise ProtocolError(f"write single must carry 4 bytes, got {len(data)}")
        address, value = struct.unpack(">HH", data)
        if function == 5 and value not in (0x0000, 0xFF00):
            raise ProtocolError(f"coil value must be FF00 or 0000, got {value:04X}")
        shown = ("1" if value else "0") if function == 5 else str(value)
        return {"direction": "request or echoed response", "address": address, "value": shown}
    if len(data) == 4:  # 15/16 response: address + quantity written
        address, count = struct.unpack(">HH", data)
        return {"direction": "response", "address": address, "count": count}
    if len(data) < 6 or data[4] != len(data) - 5:
        raise ProtocolError("length mismatch in write-multiple request")
    address, count = struct.unpack(">HH", data[:4])
    payload = data[5:]
    if function == 16:
        if len(payload) != 2 * count:
            raise ProtocolError(f"write of {count} registers carries {len(payload)} bytes")
        values = [str(v) for v in struct.unpack(f">{count}H", payload)]
    else:
        if len(payload) != (count + 7) // 8:
            raise ProtocolError(f"write of {count} coils carries {len(payload)} bytes")
        values = [str((payload[i // 8] >> (i % 8)) & 1) for i in range(count)]
    return {"direction": "request", "address": address, "count": count, "values": values}


# -- building requests (C2 encode) --------------------------------------------------------------------

ENCODE_FUNCTIONS = {
    "read-holding": "unit=ID address=N count=N [transaction=N]",
    "read-input": "unit=ID address=N count=N [transaction=N]",
    "read-coils": "unit=ID address=N count=N [transaction=N]",
    "read-discrete": "unit=ID address=N count=N [transaction=N]",
    "write-register": "unit=ID address=N value=N [transaction=N]",
    "write-registers": "unit=ID address=N values=N,N,... [transaction=N]",
    "write-coil": "unit=ID address=N value=0|1 [transaction=N]",
}
_READS = {"read-coils": 1, "read-discrete": 2, "read-holding": 3, "read-input": 4}


def build_request(function: str, params: dict[str, str]) -> bytes:
    if function not in ENCODE_FUNCTIONS:
        raise ProtocolError(f"unknown function {function!r} (one of {', '.join(ENCODE_FUNCTIONS)})")
    allowed = {word.strip("[]").split("=")[0] for word in ENCODE_FUNCTIONS[function].split()}
    for name in params:
        if name not in allowed:
            raise ProtocolError(
                f"{function}: unknown parameter {name!r} (takes {ENCODE_FUNCTIONS[function]})"
            )
    transaction = _int_param(params, "transaction", 0xFFFF, default=1)
    unit = _int_param(params, "unit", 0xFF)
    address = _int_param(params, "address", 0xFFFF)
    if function in _READS:
        limit = 125 if function in ("read-holding", "read-input") else 2000
        count = _int_param(params, "count", limit, minimum=1)
        return read_request(transaction, unit, _READS[function], address, count)
    if function == "write-register":
        value = _int_param(params, "value", 0xFFFF)
        return Adu(transaction, unit, 6, struct.pack(">HH", address, value)).encode()
    if function == "write-coil":
        value = _int_param(params, "value", 1)
        return Adu(transaction, unit, 5, struct.pack(">HH", address, 0xFF00 if value else 0)).encode()
    text = params.get("values")
    if not text:
        raise ProtocolError(f"{function}: missing parameter 'values'")
    values = [_parse_int(v, "values", 0xFFFF) for v in text.split(",")]
    return write_registers_request(transaction, unit, address, values)


def read_request(transaction: int, unit: int, function: int, address: int, count: int) -> bytes:
    return Adu(transaction, unit, function, struct.pack(">HH", address, count)).encode()


def write_registers_request(transaction: int, unit: int, address: int, values: list[int]) -> bytes:
    if not 1 <= len(values) <= 123:
        raise ProtocolError(f"write-registers takes 1..123 values, got {len(values)}")
    body = struct.pack(">HHB", address, len(values), 2 * len(values)) + struct.pack(
        f">{len(values)}H", *values
    )
    return Adu(transaction, unit, 16, body).encode()


def _int_param(
    params: dict[str, str], name: str, maximum: int, default: int | None = None, minimum: int = 0
) -> int:
    if name not in params:
        if default is None:
            raise ProtocolError(f"missing parameter {name!r}")
        return default
    return _parse_int(params[name], name, maximum, minimum)


def _parse_int(text: str, name: str, maximum: int, minimum: int = 0) -> int:
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise ProtocolError(f"parameter {name}={text!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise ProtocolError(f"parameter {name}={text} is outside {minimum}..{maximum}")
    return value


# -- responses a device sends -------------------------------------------------------------------------


def registers_response(request: Adu, registers: list[int]) -> bytes:
    payload = struct.pack(f">{len(registers)}H", *registers)
    return Adu(request.transaction, request.unit, request.function, bytes([len(payload)]) + payload).encode()


def exception_response(request: Adu, code: int) -> bytes:
    return Adu(request.transaction, request.unit, request.function | 0x80, bytes([code])).encode()


def echo_response(request: Adu) -> bytes:
    """Write-single echoes the request; write-multiple answers address and quantity."""
    data = request.data if request.function in (5, 6) else request.data[:4]
    return Adu(request.transaction, request.unit, request.function, data).encode()

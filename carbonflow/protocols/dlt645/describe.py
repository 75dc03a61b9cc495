"""The ``carbonflow frame decode/encode`` hooks (DESIGN C2): frame -> JSON document, CLI params -> frame."""

from __future__ import annotations

from typing import Any

from carbonflow.protocols.dlt645.di_table import DEFAULT_TABLE
from carbonflow.protocols.dlt645.frame import BROADCAST, Frame, parse_frame
from carbonflow.protocols.dlt645.items import DataItem, DiTable, normalize_di, render_value
from carbonflow.protocols.dlt645.replies import Reply, parse_reply
from carbonflow.protocols.dlt645.requests import (
    DEFAULT_OPERATOR,
    DEFAULT_PASSWORD,
    FREEZE,
    FREEZE_NOW,
    READ,
    READ_ADDRESS,
    READ_FOLLOW_UP,
    TIME_SYNC,
    WRITE,
    Request,
    freeze_request,
    parse_request,
    read_address_request,
    read_follow_up_request,
    read_request,
    time_sync_request,
    write_raw_request,
    write_request,
)
from carbonflow.protocols.errors import ProtocolError


def describe(data: bytes, table: DiTable = DEFAULT_TABLE) -> dict[str, Any]:
    """Decode one captured frame (FE preamble allowed) to a JSON-able document; ProtocolError if broken."""
    frame = parse_frame(bytes(data))
    document: dict[str, Any] = {
        "protocol": "dlt645",
        "address": frame.address,
        "control": f"{frame.control:02X}",
        "function": frame.function_name,
        "direction": "response" if frame.is_reply else "request",
        "preamble": frame.preamble,
        "data": frame.data.hex().upper(),  # DATA minus 33H, wire order
    }
    if frame.is_reply:
        document.update(_describe_reply(parse_reply(frame), table))
    else:
        document.update(_describe_request(parse_request(frame), table))
    return document


def _item_fields(di: str, table: DiTable) -> tuple[DataItem | None, dict[str, Any]]:
    item = table.get(di)
    fields: dict[str, Any] = {"di": di, "name": None if item is None else item.name}
    if item is not None:
        fields["unit"] = item.unit
        if item.vendor:
            fields["vendor"] = True
    return item, fields


def _values(item: DataItem, payload: bytes) -> dict[str, Any]:
    value = item.decode(payload)
    fields: dict[str, Any] = {"values" if item.is_block else "value": render_value(value)}
    weekday = item.weekday(payload)
    if weekday is not None:
        fields["weekday"] = weekday
    return fields


def _describe_reply(reply: Reply, table: DiTable) -> dict[str, Any]:
    fields: dict[str, Any] = {"error": None if reply.error is None else reply.error.to_json()}
    if reply.error is not None:
        return fields
    if reply.function in (READ, READ_FOLLOW_UP):
        item, item_fields = _item_fields(reply.di or "", table)
        fields.update(item_fields)
        fields["follow_up"] = reply.follow_up
        if reply.seq is not None:
            fields["seq"] = reply.seq
        if item is None:
            fields["value"] = None
            fields["payload"] = reply.payload.hex().upper()
        elif reply.follow_up or reply.function == READ_FOLLOW_UP:
            # one piece of a long reply: decode it if it holds whole members, else show the bytes
            try:
                fields.update(_values(item, reply.payload))
            except ProtocolError:
                fields["payload"] = reply.payload.hex().upper()
                fields["partial"] = True
        else:
            fields.update(_values(item, reply.payload))
    elif reply.function == READ_ADDRESS:
        fields["value"] = reply.meter_address
    elif reply.payload:
        fields["payload"] = reply.payload.hex().upper()
    return fields


def _describe_request(request: Request, table: DiTable) -> dict[str, Any]:
    fields: dict[str, Any] = {"error": None}
    if request.function in (READ, READ_FOLLOW_UP, WRITE):
        item, item_fields = _item_fields(request.di or "", table)
        fields.update(item_fields)
        if request.function == READ and request.payload:
            fields["extra"] = request.payload.hex().upper()
        if request.function == READ_FOLLOW_UP:
            fields["seq"] = request.seq
        if request.function == WRITE:
            fields["password"] = request.password
            fields["operator"] = request.operator
            fields["payload"] = request.payload.hex().upper()
            if item is not None:
                try:
                    fields.update(_values(item, request.payload))
                except ProtocolError:
                    fields["value"] = None  # the bytes do not fit this table's format: leave them raw
    elif request.function == TIME_SYNC:
        fields["time"] = request.time
        fields["broadcast"] = request.address == BROADCAST
    elif request.function == FREEZE:
        fields["freeze_at"] = request.freeze_at
        fields["freeze_now"] = request.freeze_at == FREEZE_NOW
        fields["broadcast"] = request.address == BROADCAST
    elif request.function != READ_ADDRESS and request.payload:
        fields["payload"] = request.payload.hex().upper()
    return fields


# -- encode ----------------------------------------------------------------------------------------
ENCODE_FUNCTIONS: dict[str, str] = {
    "read": "read data (11H): address=12 digits di=8 hex digits [preamble=0..16]",
    "read-follow-up": "read follow-up frame (12H): address= di= seq=1..255 [preamble=]",
    "read-address": "read communication address (13H, address AA..AA): [preamble=]",
    "write": (
        "write data (14H): address= di= value= (or data=hex for DIs not in the table) "
        f"[password={DEFAULT_PASSWORD} (level + 6 digits)] [operator={DEFAULT_OPERATOR}] [preamble=]"
    ),
    "time-sync": "broadcast time sync (08H): time='YYYY-MM-DD hh:mm:ss' (meter local time) [preamble=]",
    "freeze": f"freeze (16H): [address={BROADCAST}] [when={FREEZE_NOW} as MMDDhhmm, 99 = any] [preamble=]",
}

_PARAMS: dict[str, tuple[set[str], set[str]]] = {  # function -> (required, optional)
    "read": ({"address", "di"}, {"preamble"}),
    "read-follow-up": ({"address", "di", "seq"}, {"preamble"}),
    "read-address": (set(), {"preamble"}),
    "write": ({"address", "di"}, {"value", "data", "password", "operator", "preamble"}),
    "time-sync": ({"time"}, {"preamble"}),
    "freeze": (set(), {"address", "when", "preamble"}),
}


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    try:
        return int(text, 0)
    except ValueError:
        raise ProtocolError(f"parameter {key}={text!r} is not an integer") from None


def build_request(function: str, params: dict[str, str], table: DiTable = DEFAULT_TABLE) -> bytes:
    """Build a request frame from CLI ``key=value`` parameters; ProtocolError names what is wrong."""
    name = function.strip().lower().replace("_", "-")
    if name not in _PARAMS:
        raise ProtocolError(f"unknown dlt645 function {function!r}; known: {', '.join(ENCODE_FUNCTIONS)}")
    required, optional = _PARAMS[name]
    missing = sorted(required - set(params))
    if missing:
        raise ProtocolError(f"dlt645 {name}: missing parameter {', '.join(missing)}")
    unknown = sorted(set(params) - required - optional)
    if unknown:
        raise ProtocolError(f"dlt645 {name}: unknown parameter {', '.join(unknown)}")
    preamble = _int_param(params, "preamble", 0)
    if name == "read":
        return read_request(params["address"], params["di"], preamble)
    if name == "read-follow-up":
        return read_follow_up_request(params["address"], params["di"], _int_param(params, "seq", 0), preamble)
    if name == "read-address":
        return read_address_request(preamble)
    if name == "time-sync":
        return time_sync_request(params["time"], preamble)
    if name == "freeze":
        return freeze_request(params.get("address", BROADCAST), params.get("when", FREEZE_NOW), preamble)
    return _build_write(params, table, preamble)


def _build_write(params: dict[str, str], table: DiTable, preamble: int) -> bytes:
    di = normalize_di(params["di"])
    password = params.get("password", DEFAULT_PASSWORD)
    operator = params.get("operator", DEFAULT_OPERATOR)
    if ("value" in params) == ("data" in params):
        raise ProtocolError("dlt645 write: give exactly one of value= or data=")
    if "data" in params:
        try:
            payload = bytes.fromhex(params["data"])
        except ValueError:
            raise ProtocolError(f"parameter data={params['data']!r} is not hex") from None
        return write_raw_request(params["address"], di, payload, password, operator, preamble)
    item = table.get(di)
    if item is None:
        raise ProtocolError(f"dlt645 write: DI {di} is not in the DI table; pass data=HEX instead of value=")
    return write_request(
        params["address"], item, item.parse_text(params["value"]), password, operator, preamble
    )


__all__ = ["ENCODE_FUNCTIONS", "Frame", "build_request", "describe"]

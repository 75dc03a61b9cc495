"""C2 hook: one captured DL/T 698.45 frame -> a JSON-able document with engineering values."""

from __future__ import annotations

from typing import Any

from carbonflow.protocols.dlt698.apdu import (
    ERROR_CODES,
    LINK_KINDS,
    ActionRequestNormal,
    ActionResponseNormal,
    Apdu,
    ErrorResponse,
    GetRecord,
    GetRequestNext,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    GetRequestRecordList,
    GetResponseNormal,
    GetResponseNormalList,
    GetResponseRecord,
    GetResponseRecordList,
    LinkRequest,
    LinkResponse,
    ProxyGetRequestList,
    ProxyGetResponseList,
    ProxyTransCommandRequest,
    ProxyTransCommandResponse,
    RawApdu,
    ReleaseRequest,
    ReleaseResponse,
    ReportNotificationList,
    ReportNotificationRecordList,
    ReportResponseList,
    ResultNormal,
    ResultRecord,
    SetRequestNormal,
    SetRequestNormalList,
    SetResponseNormal,
    SetResponseNormalList,
)
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.frame import Frame, LinkFunction, decode_frame
from carbonflow.protocols.dlt698.objects import DEFAULT_OBJECTS, ObjectTable, render
from carbonflow.protocols.dlt698.types import Data, Oad, Road, Rsd
from carbonflow.protocols.errors import ProtocolError

DAR_REASONS = {
    0: "success",
    1: "hardware fault",
    2: "temporarily unavailable",
    3: "read/write refused",
    4: "object undefined",
    5: "class mismatch",
    6: "object does not exist",
    7: "type mismatch",
    8: "out of range",
    9: "data block unavailable",
    10: "fragmented transfer cancelled",
    11: "not in fragmented transfer",
    12: "block write cancelled",
    13: "not in block write",
    14: "invalid block number",
    15: "password error / unauthorised",
    16: "communication rate cannot be changed",
    17: "annual time zone count exceeded",
    18: "daily period count exceeded",
    19: "tariff count exceeded",
    20: "security authentication mismatch",
    21: "duplicate recharge",
    22: "ESAM verification failed",
    23: "security authentication failed",
    24: "customer number mismatch",
    25: "recharge count error",
    26: "purchase exceeds hoarding limit",
    27: "address abnormal",
    28: "symmetric decryption error",
    29: "asymmetric decryption error",
    30: "signature error",
    31: "meter suspended",
    32: "time tag invalid",
    33: "request timed out",
    34: "ESAM P1P2 incorrect",
    35: "ESAM LC error",
    255: "other",
}


def dar_text(code: int) -> str:
    return DAR_REASONS.get(code, f"DAR {code}")


def _dar(code: int | None) -> dict[str, Any] | None:
    return None if code is None or code == 0 else {"dar": code, "reason": dar_text(code)}


def oad_fields(oad: Oad, objects: ObjectTable) -> dict[str, Any]:
    item = objects.find(oad.oi, oad.attribute)
    if oad.attribute_id == 3 and item is None and objects.find(oad.oi, 2) is not None:
        return {"oad": str(oad), "name": f"{objects.find(oad.oi, 2).name} scaler/unit"}  # type: ignore[union-attr]
    return {"oad": str(oad), "name": item.name if item else None}


def value_fields(oad: Oad, data: Data, objects: ObjectTable) -> dict[str, Any]:
    """The engineering value of one attribute: "value" or "values", "unit", plus the A-XDR type."""
    item = objects.find(oad.oi, oad.attribute)
    scaler = item.scaler if item is not None and oad.attribute_id != 3 else 0
    rendered = render(data, scaler)
    key = "values" if isinstance(rendered, list) else "value"
    unit = item.unit if item is not None and oad.attribute_id != 3 else ""
    return {key: rendered, "unit": unit or None, "type": data.type.label}


def _result(result: ResultNormal, objects: ObjectTable) -> dict[str, Any]:
    fields = oad_fields(result.oad, objects)
    if result.data is not None:
        fields.update(value_fields(result.oad, result.data, objects))
    fields["error"] = _dar(result.dar)
    return fields


def _csd_text(csd: Oad | Road) -> str:
    if isinstance(csd, Road):
        return f"{csd.oad}:" + ",".join(str(c) for c in csd.columns)
    return str(csd)


def _record(result: ResultRecord, objects: ObjectTable) -> dict[str, Any]:
    fields = oad_fields(result.oad, objects)
    fields["columns"] = [_csd_text(c) for c in result.columns]
    rows = []
    for row in result.rows or ():
        cells = []
        for column, cell in zip(result.columns, row):
            cells.append(render(cell, _column_scaler(column, objects)))
        rows.append(cells)
    fields["rows"] = rows if result.rows is not None else None
    fields["error"] = _dar(result.dar)
    return fields


def _column_scaler(column: Oad | Road, objects: ObjectTable) -> int:
    if isinstance(column, Oad):
        item = objects.find(column.oi, column.attribute)
        return item.scaler if item else 0
    return 0


def _rsd_text(rsd: Rsd) -> str:
    if rsd.selector == 9:
        return f"selector 9: last record #{rsd.fields[0]}"
    return f"selector {rsd.selector}: " + ", ".join(str(f) for f in rsd.fields)


def _record_request(record: GetRecord, objects: ObjectTable) -> dict[str, Any]:
    fields = oad_fields(record.oad, objects)
    fields["rsd"] = _rsd_text(record.rsd)
    fields["columns"] = [_csd_text(c) for c in record.columns]
    return fields


def apdu_fields(apdu: Apdu, objects: ObjectTable, depth: int = 0) -> dict[str, Any]:
    """The service-specific part of the document."""
    doc: dict[str, Any] = {}
    match apdu:
        case GetRequestNormal():
            doc.update(oad_fields(apdu.oad, objects))
        case GetRequestNormalList():
            doc["oads"] = [oad_fields(oad, objects) for oad in apdu.oads]
        case GetRequestRecord():
            doc.update(_record_request(apdu.record, objects))
        case GetRequestRecordList():
            doc["records"] = [_record_request(r, objects) for r in apdu.records]
        case GetRequestNext():
            doc["last_block"] = apdu.last_block
        case GetResponseNormal():
            doc.update(_result(apdu.result, objects))
        case GetResponseNormalList() | ReportNotificationList():
            doc["results"] = [_result(r, objects) for r in apdu.results]
            errors = [r["error"] for r in doc["results"] if r["error"]]
            doc["error"] = errors[0] if len(errors) == 1 else (errors or None)
        case GetResponseRecord():
            doc.update(_record(apdu.result, objects))
        case GetResponseRecordList() | ReportNotificationRecordList():
            doc["records"] = [_record(r, objects) for r in apdu.results]
        case SetRequestNormal():
            doc.update(oad_fields(apdu.oad, objects))
            doc.update(value_fields(apdu.oad, apdu.data, objects))
        case SetRequestNormalList():
            doc["items"] = [oad_fields(o, objects) | value_fields(o, d, objects) for o, d in apdu.items]
        case SetResponseNormal():
            doc.update(oad_fields(apdu.oad, objects))
            doc["dar"] = apdu.dar
            doc["error"] = _dar(apdu.dar)
        case SetResponseNormalList():
            doc["results"] = [oad_fields(o, objects) | {"dar": d, "error": _dar(d)} for o, d in apdu.results]
        case ActionRequestNormal():
            doc["omd"] = str(apdu.omd)
            doc["parameter"] = render(apdu.data)
        case ActionResponseNormal():
            doc["omd"] = str(apdu.omd)
            doc["dar"] = apdu.dar
            doc["error"] = _dar(apdu.dar)
            doc["return_value"] = None if apdu.data is None else render(apdu.data)
        case LinkRequest():
            doc["link"] = LINK_KINDS.get(apdu.kind, f"type {apdu.kind}")
            doc["heartbeat_s"] = apdu.heartbeat_s
            doc["time"] = str(apdu.time)
        case LinkResponse():
            doc["result"] = apdu.result & 0x07
            doc["clock_trusted"] = bool(apdu.result & 0x80)
            doc["request_time"] = str(apdu.request_time)
            doc["received_time"] = str(apdu.received_time)
            doc["response_time"] = str(apdu.response_time)
        case ReleaseRequest() | ReleaseResponse():
            pass
        case ReportResponseList():
            doc["oads"] = [str(oad) for oad in apdu.oads]
        case ProxyGetRequestList():
            doc["timeout_s"] = apdu.timeout_s
            doc["targets"] = [
                {"tsa": t.tsa.hex().upper(), "oads": [oad_fields(o, objects) for o in t.oads]}
                for t in apdu.targets
            ]
        case ProxyGetResponseList():
            doc["targets"] = [
                {"tsa": tsa.hex().upper(), "results": [_result(r, objects) for r in results]}
                for tsa, results in apdu.results
            ]
        case ProxyTransCommandRequest():
            doc["port"] = str(apdu.port)
            doc["comdcb"] = vars(apdu.comdcb)
            doc["frame_timeout_s"] = apdu.frame_timeout_s
            doc["byte_timeout_ms"] = apdu.byte_timeout_ms
            doc["inner"] = _inner(apdu.command, objects, depth)
        case ProxyTransCommandResponse():
            doc["port"] = str(apdu.port)
            doc["error"] = _dar(apdu.dar)
            doc["inner"] = None if apdu.command is None else _inner(apdu.command, objects, depth)
        case ErrorResponse():
            doc["error"] = {"code": apdu.error, "reason": ERROR_CODES.get(apdu.error, "unknown")}
        case RawApdu():
            doc["payload"] = apdu.payload.hex().upper()
            doc["note"] = "APDU carried but not decoded"
    return doc


MAX_PROXY_NESTING = 3


def _inner(command: bytes, objects: ObjectTable, depth: int) -> dict[str, Any]:
    """A forwarded frame: decoded when it is a 698 frame, otherwise shown as hex with the reason."""
    if depth >= MAX_PROXY_NESTING:
        return {"raw": command.hex().upper(), "decode_error": "proxy nesting too deep"}
    try:
        return describe(command, objects, _depth=depth + 1)
    except ProtocolError as error:
        return {"raw": command.hex().upper(), "decode_error": str(error)}


def frame_fields(frame: Frame) -> dict[str, Any]:
    control = frame.control
    try:
        function = LinkFunction(control.function).name.lower().replace("_", " ")
    except ValueError:
        function = f"function {control.function}"
    return {
        "protocol": "dlt698",
        "direction": "request" if control.is_request else "response",
        "sender": "server" if control.from_server else "client",
        "control": f"{control.to_byte():02X}",
        "function": function,
        "address": frame.server.address,
        "address_type": frame.server.type.name.lower(),
        "logical_address": frame.server.logical,
        "client_address": f"{frame.client:02X}",
    }


def describe(data: bytes, objects: ObjectTable = DEFAULT_OBJECTS, _depth: int = 0) -> dict[str, Any]:
    """Decode ONE frame (HCS/FCS/L checked) to the C2 document; ProtocolError on any defect."""
    frame = decode_frame(data)
    doc = frame_fields(frame)
    apdu_bytes = frame.apdu
    if frame.control.fragmented:
        if len(apdu_bytes) < 2:
            raise ProtocolError("fragmented frame without fragment header")
        word = int.from_bytes(apdu_bytes[:2], "little")
        kinds = {0: "first", 1: "last", 2: "acknowledge", 3: "middle"}
        doc.update(
            apdu="fragment",
            fragment={
                "number": word & 0x0FFF,
                "kind": kinds[word >> 14],
                "payload": apdu_bytes[2:].hex().upper(),
            },
            error=None,
        )
        return doc
    if frame.control.scrambled:
        doc.update(apdu="scrambled", payload=apdu_bytes.hex().upper(), error=None)
        return doc
    apdu = decode_apdu(apdu_bytes)
    doc["apdu"] = apdu.name
    doc["service"] = apdu.service
    for key in ("piid", "piid_acd"):
        if hasattr(apdu, key):
            doc[key] = getattr(apdu, key)
    doc["error"] = None
    doc.update(apdu_fields(apdu, objects, _depth))
    return doc

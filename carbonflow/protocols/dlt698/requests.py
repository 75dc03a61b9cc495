"""Building request frames: typed helpers for the client, and the C2 ``build_request`` for the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from carbonflow.protocols.dlt698.apdu import (
    ActionRequestNormal,
    Apdu,
    GetRecord,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    LinkResponse,
    ProxyGetRequestList,
    ProxyTarget,
    ProxyTransCommandRequest,
    ReleaseRequest,
    ReportResponseList,
    ReportResponseRecordList,
    SetRequestNormal,
)
from carbonflow.protocols.dlt698.axdr import Reader, decode_data
from carbonflow.protocols.dlt698.frame import (
    CLIENT_REQUEST,
    AddressType,
    Control,
    Frame,
    LinkFunction,
    ServerAddress,
)
from carbonflow.protocols.dlt698.objects import DEFAULT_OBJECTS, ObjectTable, unscaled
from carbonflow.protocols.dlt698.types import (
    INTEGER_TYPES,
    Comdcb,
    Data,
    DataType,
    DateTime,
    DateTimeS,
    Oad,
    Omd,
    Rsd,
    Ti,
    TimeUnit,
)
from carbonflow.protocols.errors import ProtocolError

CARBON_FACTOR_OAD = Oad(0x4120, 2, 0)
DATE_TIME_OAD = Oad(0x4000, 2, 0)
BAUD_CODES = {
    300: 0,
    600: 1,
    1200: 2,
    2400: 3,
    4800: 4,
    7200: 5,
    9600: 6,
    19200: 7,
    38400: 8,
    57600: 9,
    115200: 10,
}
PARITY_CODES = {"none": 0, "odd": 1, "even": 2}


def server_address(text: str, logical: int = 0) -> ServerAddress:
    """'012503200001' -> single address; digits 'A' make it a wildcard (e.g. 'AAAAAAAAAAAA')."""
    cleaned = text.replace(" ", "").upper()
    kind = AddressType.WILDCARD if "A" in cleaned else AddressType.SINGLE
    return ServerAddress(cleaned, kind, logical)


def client_frame(address: ServerAddress, apdu: Apdu, client: int = 0) -> bytes:
    """A client request frame (C = 43) carrying ``apdu``."""
    return Frame(CLIENT_REQUEST, address, client, apdu.encode()).encode()


def link_answer_frame(address: ServerAddress, apdu: Apdu, client: int = 0) -> bytes:
    """The client's answer to a meter-initiated frame: LINK-Response (C = 01) or REPORT-Response (C = 03)."""
    function = LinkFunction.LINK_MANAGEMENT if isinstance(apdu, LinkResponse) else LinkFunction.USER_DATA
    control = Control(from_server=False, initiated_by_client=False, function=function)
    return Frame(control, address, client, apdu.encode()).encode()


def date_time_s(moment: datetime) -> DateTimeS:
    return DateTimeS(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def date_time(moment: datetime) -> DateTime:
    """date_time with weekday 0 = Sunday as DL/T 698.45 counts it, and milliseconds."""
    weekday = moment.isoweekday() % 7
    fields = (moment.hour, moment.minute, moment.second, moment.microsecond // 1000)
    return DateTime(moment.year, moment.month, moment.day, weekday, *fields)


def carbon_factor_data(start: datetime, interval: Ti, factors: list[Decimal | str], scaler: int) -> Data:
    """The 4120 download: structure{date_time_s start, TI interval, array long-unsigned factors}."""
    raw = []
    for factor in factors:
        value = unscaled(factor, scaler)
        if not 0 <= value <= 0xFFFF:
            raise ProtocolError(f"carbon factor {factor} out of range for long-unsigned at scaler {scaler}")
        raw.append(Data(DataType.LONG_UNSIGNED, value))
    return Data.structure(
        [Data(DataType.DATE_TIME_S, date_time_s(start)), Data(DataType.TI, interval), Data.array(raw)]
    )


# -- build_request (C2) ---------------------------------------------------------------------------
def _int(params: dict[str, str], key: str, default: int | None = None, low: int = 0, high: int = 0xFF) -> int:
    if key not in params:
        if default is None:
            raise ProtocolError(f"missing parameter {key}")
        return default
    try:
        value = int(params[key], 0)
    except ValueError:
        raise ProtocolError(f"parameter {key}={params[key]!r} is not an integer (use 30 or 0x1E)") from None
    if not low <= value <= high:
        raise ProtocolError(f"parameter {key}={value} out of range {low}..{high}")
    return value


def _required(params: dict[str, str], key: str) -> str:
    if key not in params or not params[key].strip():
        raise ProtocolError(f"missing parameter {key}")
    return params[key].strip()


def _oads(text: str, key: str = "oad") -> list[Oad]:
    try:
        return [Oad.parse(part) for part in text.split(",") if part.strip()]
    except ProtocolError as error:
        raise ProtocolError(f"parameter {key}: {error}") from None


def _moment(text: str, key: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ProtocolError(f"parameter {key}={text!r} is not a date-time like 2026-10-07 14:16:26") from None


def _interval(text: str) -> Ti:
    """'15 minute', '1 day', '15min' -> TI."""
    cleaned = text.strip().lower()
    digits = "".join(ch for ch in cleaned if ch.isdigit())
    unit_text = cleaned[len(digits) :].strip().rstrip("s") or "minute"
    aliases = {"min": "minute", "h": "hour", "d": "day", "sec": "second", "s": "second"}
    unit_text = aliases.get(unit_text, unit_text)
    try:
        return Ti(TimeUnit[unit_text.upper()], int(digits))
    except (KeyError, ValueError):
        raise ProtocolError(f"parameter interval={text!r}: use e.g. '15 minute' or '1 day'") from None


def typed_data(type_label: str, text: str) -> Data:
    """A CLI value with its A-XDR type name (``long-unsigned``, ``date-time-s``, ``octet-string``...)."""
    try:
        data_type = DataType[type_label.strip().upper().replace("-", "_")]
    except KeyError:
        raise ProtocolError(f"parameter type={type_label!r} is not an A-XDR type name") from None
    if data_type in INTEGER_TYPES:
        try:
            return Data(data_type, int(text, 0))
        except ValueError:
            raise ProtocolError(f"parameter value={text!r} is not an integer") from None
    converters: dict[DataType, Callable[[str], object]] = {
        DataType.NULL: lambda _: None,
        DataType.BOOL: lambda t: t.strip().lower() in ("1", "true", "yes"),
        DataType.OCTET_STRING: bytes.fromhex,
        DataType.VISIBLE_STRING: str,
        DataType.UTF8_STRING: str,
        DataType.DATE_TIME_S: lambda t: date_time_s(_moment(t, "value")),
        DataType.DATE_TIME: lambda t: date_time(_moment(t, "value")),
        DataType.OAD: Oad.parse,
    }
    if data_type not in converters:
        raise ProtocolError(f"type {data_type.label} cannot be given as text; pass data=<A-XDR hex>")
    try:
        return Data(data_type, converters[data_type](text))
    except ValueError as error:
        raise ProtocolError(f"parameter value={text!r}: {error}") from None


def _data_param(params: dict[str, str]) -> Data:
    if "data" in params:
        try:
            reader = Reader(bytes.fromhex(params["data"].replace(" ", "")))
        except ValueError:
            raise ProtocolError("parameter data is not hex") from None
        data = decode_data(reader)
        reader.done()
        return data
    if "type" in params:
        return typed_data(params["type"], params.get("value", ""))
    raise ProtocolError("missing parameter data (A-XDR hex) or type + value")


def _get(params: dict[str, str]) -> Apdu:
    oads = _oads(_required(params, "oad"))
    piid = _int(params, "piid", 0, high=0xFF)
    return GetRequestNormal(piid, oads[0]) if len(oads) == 1 else GetRequestNormalList(piid, tuple(oads))


def _get_record(params: dict[str, str]) -> Apdu:
    oad = _oads(_required(params, "oad"))[0]
    columns = tuple(_oads(params.get("columns", ""), "columns"))
    rsd = Rsd.last(_int(params, "last", 1, high=255))
    return GetRequestRecord(_int(params, "piid", 0), GetRecord(oad, rsd, columns))


def _set(params: dict[str, str]) -> Apdu:
    return SetRequestNormal(_int(params, "piid", 0), _oads(_required(params, "oad"))[0], _data_param(params))


def _set_time(params: dict[str, str]) -> Apdu:
    data = Data(DataType.DATE_TIME_S, date_time_s(_moment(_required(params, "time"), "time")))
    return SetRequestNormal(_int(params, "piid", 0), DATE_TIME_OAD, data)


def _set_carbon_factor(params: dict[str, str], objects: ObjectTable = DEFAULT_OBJECTS) -> Apdu:
    oad = _oads(params.get("oad", str(CARBON_FACTOR_OAD)))[0]
    item = objects.find(oad.oi, oad.attribute)
    scaler = _int(params, "scaler", item.scaler if item else -4, low=-128, high=127)
    factors = [part.strip() for part in _required(params, "factors").split(",") if part.strip()]
    start = _moment(_required(params, "start"), "start")
    data = carbon_factor_data(start, _interval(params.get("interval", "1 day")), factors, scaler)
    return SetRequestNormal(_int(params, "piid", 0), oad, data)


def _action(params: dict[str, str]) -> Apdu:
    omd = Omd.parse(_required(params, "omd"))
    data = _data_param(params) if ("data" in params or "type" in params) else Data.null()
    return ActionRequestNormal(_int(params, "piid", 0), omd, data)


def _release(params: dict[str, str]) -> Apdu:
    return ReleaseRequest(_int(params, "piid", 0))


def _proxy(params: dict[str, str]) -> Apdu:
    if "inner" in params:
        try:
            inner = bytes.fromhex(params["inner"].replace(" ", ""))
        except ValueError:
            raise ProtocolError("parameter inner is not hex") from None
    else:
        target = server_address(_required(params, "target"))
        inner_apdu = _get({"oad": _required(params, "oad"), "piid": params.get("inner_piid", "0")})
        inner = client_frame(target, inner_apdu, _int(params, "inner_client", 0))
    baud = _int(params, "baud", 9600, high=115200)
    if baud not in BAUD_CODES:
        raise ProtocolError(f"parameter baud={baud} is not a DL/T 698 baud rate")
    parity = params.get("parity", "even").lower()
    if parity not in PARITY_CODES:
        raise ProtocolError(f"parameter parity={parity!r}: use none, odd or even")
    return ProxyTransCommandRequest(
        _int(params, "piid", 0),
        _oads(params.get("port", "F2010201"), "port")[0],
        Comdcb(BAUD_CODES[baud], PARITY_CODES[parity], 8, 1, 0),
        _int(params, "frame_timeout", 10, high=0xFFFF),
        _int(params, "byte_timeout", 100, high=0xFFFF),
        inner,
    )


def _proxy_get(params: dict[str, str]) -> Apdu:
    target = server_address(_required(params, "target"))
    timeout = _int(params, "timeout", 10, high=0xFFFF)
    tsa = target.encode()
    oads = tuple(_oads(_required(params, "oad")))
    return ProxyGetRequestList(_int(params, "piid", 0), timeout, (ProxyTarget(tsa, timeout, oads),))


def _link_response(params: dict[str, str]) -> Apdu:
    times = [
        date_time(_moment(_required(params, key), key)) for key in ("request_time", "received", "response")
    ]
    return LinkResponse(_int(params, "piid", 0), _int(params, "result", 0), *times)


def _report_response(params: dict[str, str]) -> Apdu:
    oads = tuple(_oads(_required(params, "oad")))
    kind = (
        ReportResponseRecordList if params.get("record", "1") in ("1", "true", "yes") else ReportResponseList
    )
    return kind(_int(params, "piid", 0), oads)


_COMMON = "address=METER [client=CA piid=N]"
ENCODE_FUNCTIONS: dict[str, str] = {
    "get": f"GET attribute(s): {_COMMON} oad=00100200[,00200200,...]",
    "get_record": f"GET record (selector 9, last N): {_COMMON} oad=50040200 [last=1] [columns=OAD,...]",
    "set": f"SET attribute: {_COMMON} oad=OAD (data=A-XDR-hex | type=long-unsigned value=123)",
    "set_time": f"SET date-time 40000200: {_COMMON} time='2026-10-07 14:16:26'",
    "set_carbon_factor": f"SET carbon factor 41200200: {_COMMON} start='2026-10-07 00:00:00' "
    "interval='1 day'|'15 minute' factors=0.5366[,...] [scaler=-4] [oad=41200200]",
    "action": f"ACTION method: {_COMMON} omd=OMD [data=A-XDR-hex | type=... value=...]",
    "release": f"RELEASE the association: {_COMMON}",
    "proxy": f"PROXY transparent forward: {_COMMON} (target=METER oad=OAD | inner=FRAME-HEX) "
    "[port=F2010201 baud=9600 parity=even frame_timeout=10 byte_timeout=100]",
    "proxy_get": f"PROXY GET list: {_COMMON} target=METER oad=OAD[,...] [timeout=10]",
    "link_response": f"answer a meter's LINK-Request: {_COMMON} request_time=ISO received=ISO "
    "response=ISO [result=0]",
    "report_response": f"answer a REPORT-Notification: {_COMMON} oad=OAD[,...] [record=1]",
}
_BUILDERS: dict[str, Callable[[dict[str, str]], Apdu]] = {
    "get": _get,
    "get_record": _get_record,
    "set": _set,
    "set_time": _set_time,
    "set_carbon_factor": _set_carbon_factor,
    "action": _action,
    "release": _release,
    "proxy": _proxy,
    "proxy_get": _proxy_get,
    "link_response": _link_response,
    "report_response": _report_response,
}
_KNOWN_PARAMS = {
    "address", "client", "piid", "logical", "oad", "last", "columns", "data", "type", "value", "time",
    "start", "interval", "factors", "scaler", "omd", "inner", "target", "inner_piid", "inner_client", "baud",
    "parity", "port", "frame_timeout", "byte_timeout", "timeout", "request_time", "received", "response",
    "result", "record",
}  # fmt: skip


def build_request(function: str, params: dict[str, str]) -> bytes:
    """``carbonflow frame encode --protocol dlt698 FUNCTION key=value ...`` -> request frame bytes."""
    builder = _BUILDERS.get(function.strip().lower().replace("-", "_"))
    if builder is None:
        raise ProtocolError(f"unknown function {function!r}; known: {', '.join(ENCODE_FUNCTIONS)}")
    unknown = sorted(set(params) - _KNOWN_PARAMS)
    if unknown:
        raise ProtocolError(f"unknown parameter {unknown[0]} for {function}")
    address = server_address(_required(params, "address"), _int(params, "logical", 0, high=3))
    client = _int(params, "client", 0)
    apdu = builder(params)
    if isinstance(apdu, LinkResponse | ReportResponseList):
        return link_answer_frame(address, apdu, client)
    return client_frame(address, apdu, client)

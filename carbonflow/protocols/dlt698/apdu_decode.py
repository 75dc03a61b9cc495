"""Decoding DL/T 698.45 APDUs: bytes -> the dataclasses of :mod:`apdu` (every byte must be used)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from carbonflow.protocols.dlt698.apdu import (
    RAW_TAGS,
    ActionRequestNormal,
    ActionResponseNormal,
    Apdu,
    ClientApdu,
    ErrorResponse,
    FollowReport,
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
    ProxyTarget,
    ProxyTransCommandRequest,
    ProxyTransCommandResponse,
    RawApdu,
    ReleaseRequest,
    ReleaseResponse,
    ReportNotificationList,
    ReportNotificationRecordList,
    ReportResponseList,
    ReportResponseRecordList,
    ResultNormal,
    ResultRecord,
    ServerApdu,
    SetRequestNormal,
    SetRequestNormalList,
    SetResponseNormal,
    SetResponseNormalList,
    TimeTag,
)
from carbonflow.protocols.dlt698.axdr import (
    Reader,
    decode_body,
    decode_data,
    decode_oad,
    decode_omd,
    decode_rcsd,
    decode_rsd,
)
from carbonflow.protocols.dlt698.types import DataType
from carbonflow.protocols.errors import ProtocolError


def _decode_result_normal(reader: Reader) -> ResultNormal:
    oad = decode_oad(reader)
    choice = reader.u8("Get-Result choice")
    if choice == 0:
        return ResultNormal(oad, dar=reader.u8("DAR"))
    if choice == 1:
        return ResultNormal(oad, data=decode_data(reader))
    raise ProtocolError(f"Get-Result choice {choice} for {oad} at byte {reader.position - 1}, expected 0/1")


def _decode_result_record(reader: Reader) -> ResultRecord:
    oad = decode_oad(reader)
    columns = decode_rcsd(reader)
    choice = reader.u8("record result choice")
    if choice == 0:
        return ResultRecord(oad, columns, dar=reader.u8("DAR"))
    if choice != 1:
        raise ProtocolError(f"record result choice {choice} for {oad}, expected 0/1")
    count = reader.count("record rows", max(1, len(columns)))
    rows = tuple(tuple(decode_data(reader) for _ in columns) for _ in range(count))
    return ResultRecord(oad, columns, rows=rows)


def _decode_get_record(reader: Reader) -> GetRecord:
    return GetRecord(decode_oad(reader), decode_rsd(reader), decode_rcsd(reader))


def _sequence(reader: Reader, what: str, item: Callable[[Reader], object], minimum: int = 1) -> tuple:
    return tuple(item(reader) for _ in range(reader.count(what, minimum)))


def _decode_time_tag(reader: Reader) -> TimeTag | None:
    if not reader.optional("TimeTag"):
        return None
    return TimeTag(decode_body(reader, DataType.DATE_TIME_S), decode_body(reader, DataType.TI))


def _decode_follow_report(reader: Reader) -> FollowReport | None:
    if not reader.optional("FollowReport"):
        return None
    choice = reader.u8("FollowReport choice")
    if choice == 1:
        return FollowReport(results=_sequence(reader, "FollowReport", _decode_result_normal, 6))
    if choice == 2:
        return FollowReport(records=_sequence(reader, "FollowReport", _decode_result_record, 7))
    raise ProtocolError(f"FollowReport choice {choice}, expected 1/2")


def _get_request(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID")
    match choice:
        case 1:
            apdu: ClientApdu = GetRequestNormal(piid, decode_oad(reader))
        case 2:
            apdu = GetRequestNormalList(piid, _sequence(reader, "OAD list", decode_oad, 4))
        case 3:
            apdu = GetRequestRecord(piid, _decode_get_record(reader))
        case 4:
            apdu = GetRequestRecordList(piid, _sequence(reader, "record list", _decode_get_record, 6))
        case 5:
            apdu = GetRequestNext(piid, reader.u16())
        case _:
            raise ProtocolError(f"GET-Request choice {choice} not supported")
    return _with_client_trailer(reader, apdu)


def _get_response(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID-ACD")
    match choice:
        case 1:
            apdu: ServerApdu = GetResponseNormal(piid, _decode_result_normal(reader))
        case 2:
            apdu = GetResponseNormalList(piid, _sequence(reader, "results", _decode_result_normal, 6))
        case 3:
            apdu = GetResponseRecord(piid, _decode_result_record(reader))
        case 4:
            apdu = GetResponseRecordList(piid, _sequence(reader, "records", _decode_result_record, 7))
        case _:
            raise ProtocolError(f"GET-Response choice {choice} not supported")
    return _with_server_trailer(reader, apdu)


def _set_request(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID")
    if choice == 1:
        return _with_client_trailer(reader, SetRequestNormal(piid, decode_oad(reader), decode_data(reader)))
    if choice == 2:
        items = _sequence(reader, "SET list", lambda r: (decode_oad(r), decode_data(r)), 5)
        return _with_client_trailer(reader, SetRequestNormalList(piid, items))
    raise ProtocolError(f"SET-Request choice {choice} not supported")


def _set_response(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID-ACD")
    if choice == 1:
        return _with_server_trailer(reader, SetResponseNormal(piid, decode_oad(reader), reader.u8("DAR")))
    if choice == 2:
        results = _sequence(reader, "SET results", lambda r: (decode_oad(r), r.u8("DAR")), 5)
        return _with_server_trailer(reader, SetResponseNormalList(piid, results))
    raise ProtocolError(f"SET-Response choice {choice} not supported")


def _action_request(reader: Reader, choice: int) -> Apdu:
    if choice != 1:
        raise ProtocolError(f"ACTION-Request choice {choice} not supported")
    piid = reader.u8("PIID")
    return _with_client_trailer(reader, ActionRequestNormal(piid, decode_omd(reader), decode_data(reader)))


def _action_response(reader: Reader, choice: int) -> Apdu:
    if choice != 1:
        raise ProtocolError(f"ACTION-Response choice {choice} not supported")
    piid, omd, dar = reader.u8("PIID-ACD"), decode_omd(reader), reader.u8("DAR")
    data = decode_data(reader) if reader.optional("ACTION return data") else None
    return _with_server_trailer(reader, ActionResponseNormal(piid, omd, dar, data))


def _report_notification(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID-ACD")
    if choice == 1:
        apdu: ServerApdu = ReportNotificationList(piid, _sequence(reader, "report", _decode_result_normal, 6))
    elif choice == 2:
        apdu = ReportNotificationRecordList(piid, _sequence(reader, "report", _decode_result_record, 7))
    else:
        raise ProtocolError(f"REPORT-Notification choice {choice} not supported")
    return _with_server_trailer(reader, apdu)


def _report_response(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID")
    if choice not in (1, 2):
        raise ProtocolError(f"REPORT-Response choice {choice} not supported")
    kind = ReportResponseList if choice == 1 else ReportResponseRecordList
    return _with_client_trailer(reader, kind(piid, _sequence(reader, "OAD list", decode_oad, 4)))


def _proxy_request(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID")
    if choice == 1:
        timeout = reader.u16("proxy timeout")

        def target(r: Reader) -> ProxyTarget:
            tsa = decode_body(r, DataType.TSA)
            return ProxyTarget(tsa, r.u16("target timeout"), _sequence(r, "OAD list", decode_oad, 4))

        return _with_client_trailer(
            reader, ProxyGetRequestList(piid, timeout, _sequence(reader, "targets", target, 4))
        )
    if choice == 7:
        port = decode_oad(reader)
        comdcb = decode_body(reader, DataType.COMDCB)
        frame_timeout, byte_timeout = reader.u16("frame timeout"), reader.u16("byte timeout")
        command = decode_body(reader, DataType.OCTET_STRING)
        apdu = ProxyTransCommandRequest(piid, port, comdcb, frame_timeout, byte_timeout, command)
        return _with_client_trailer(reader, apdu)
    raise ProtocolError(f"PROXY-Request choice {choice} not supported")


def _proxy_response(reader: Reader, choice: int) -> Apdu:
    piid = reader.u8("PIID-ACD")
    if choice == 1:

        def target(r: Reader) -> tuple[bytes, tuple[ResultNormal, ...]]:
            return decode_body(r, DataType.TSA), _sequence(r, "results", _decode_result_normal, 6)

        return _with_server_trailer(
            reader, ProxyGetResponseList(piid, _sequence(reader, "targets", target, 2))
        )
    if choice == 7:
        port = decode_oad(reader)
        result = reader.u8("proxy result choice")
        if result == 0:
            apdu = ProxyTransCommandResponse(piid, port, dar=reader.u8("DAR"))
        elif result == 1:
            apdu = ProxyTransCommandResponse(piid, port, command=decode_body(reader, DataType.OCTET_STRING))
        else:
            raise ProtocolError(f"proxy result choice {result}, expected 0/1")
        return _with_server_trailer(reader, apdu)
    raise ProtocolError(f"PROXY-Response choice {choice} not supported")


def _with_client_trailer(reader: Reader, apdu: ClientApdu) -> ClientApdu:
    time_tag = _decode_time_tag(reader)
    return apdu if time_tag is None else replace(apdu, time_tag=time_tag)


def _with_server_trailer(reader: Reader, apdu: ServerApdu) -> ServerApdu:
    follow = _decode_follow_report(reader)
    time_tag = _decode_time_tag(reader)
    if follow is None and time_tag is None:
        return apdu
    return replace(apdu, follow_report=follow, time_tag=time_tag)


_CHOICE_DECODERS: dict[int, Callable[[Reader, int], Apdu]] = {
    0x05: _get_request,
    0x85: _get_response,
    0x06: _set_request,
    0x86: _set_response,
    0x07: _action_request,
    0x87: _action_response,
    0x88: _report_notification,
    0x08: _report_response,
    0x09: _proxy_request,
    0x89: _proxy_response,
}


def decode_apdu(data: bytes) -> Apdu:
    """An APDU (without fragment header) -> its dataclass; every byte must be used."""
    reader = Reader(bytes(data))
    tag = reader.u8("APDU tag")
    if tag in RAW_TAGS:
        return RawApdu(raw_tag=tag, payload=reader.take(reader.remaining))
    if tag in _CHOICE_DECODERS:
        apdu = _CHOICE_DECODERS[tag](reader, reader.u8("service choice"))
    elif tag == 0x01:
        piid, kind, heartbeat = reader.u8("PIID-ACD"), reader.u8("request type"), reader.u16("heartbeat")
        apdu = LinkRequest(piid, kind, heartbeat, decode_body(reader, DataType.DATE_TIME))
    elif tag == 0x81:
        piid, result = reader.u8("PIID"), reader.u8("result")
        times = [decode_body(reader, DataType.DATE_TIME) for _ in range(3)]
        apdu = LinkResponse(piid, result, *times)
    elif tag == 0x03:
        apdu = _with_client_trailer(reader, ReleaseRequest(reader.u8("PIID")))
    elif tag == 0x83:
        apdu = _with_server_trailer(reader, ReleaseResponse(reader.u8("PIID-ACD"), reader.u8("result")))
    elif tag == 0xEE:
        apdu = ErrorResponse(reader.u8("PIID-ACD"), reader.u8("error"))
        if reader.remaining:  # some servers omit the optional trailer on errors
            apdu = _with_server_trailer(reader, apdu)
    else:
        raise ProtocolError(f"unknown APDU tag {tag:02X}")
    reader.done()
    return apdu

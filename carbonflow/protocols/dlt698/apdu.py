"""DL/T 698.45 application layer: APDU dataclasses <-> bytes.

Client APDUs end with an optional TimeTag, server APDUs with optional FollowReport and TimeTag; LINK
APDUs carry neither.  CONNECT and SECURITY are kept as :class:`RawApdu` (not decoded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from carbonflow.protocols.dlt698.axdr import (
    encode_body,
    encode_data,
    encode_length,
    encode_rcsd,
    encode_rsd,
)
from carbonflow.protocols.dlt698.types import (
    Comdcb,
    Csd,
    Data,
    DataType,
    DateTime,
    DateTimeS,
    Oad,
    Omd,
    Rsd,
    Ti,
)
from carbonflow.protocols.errors import ProtocolError

APDU_NAMES = {
    0x01: "LINK-Request",
    0x81: "LINK-Response",
    0x02: "CONNECT-Request",
    0x82: "CONNECT-Response",
    0x03: "RELEASE-Request",
    0x83: "RELEASE-Response",
    0x84: "RELEASE-Notification",
    0x05: "GET-Request",
    0x85: "GET-Response",
    0x06: "SET-Request",
    0x86: "SET-Response",
    0x07: "ACTION-Request",
    0x87: "ACTION-Response",
    0x08: "REPORT-Response",
    0x88: "REPORT-Notification",
    0x09: "PROXY-Request",
    0x89: "PROXY-Response",
    0x10: "SECURITY-Request",
    0x90: "SECURITY-Response",
    0xEE: "ERROR-Response",
}
RAW_TAGS = {0x02, 0x82, 0x84, 0x10, 0x90}


_NO_OAD = Oad(0)
_NO_OMD = Omd(0, 0)
_NULL = Data(DataType.NULL)
_EPOCH = DateTime(2000, 1, 1, 6, 0, 0, 0, 0)
_RS485 = Oad(0xF201, 2, 1)
_SERIAL_9600_8E1 = Comdcb()


@dataclass(frozen=True)
class TimeTag:
    sent: DateTimeS
    valid_for: Ti


# -- results shared by several APDUs -----------------------------------------------------------------
@dataclass(frozen=True)
class ResultNormal:
    """A-ResultNormal: an attribute and either its Data or a DAR error code."""

    oad: Oad
    data: Data | None = None
    dar: int | None = None


@dataclass(frozen=True)
class ResultRecord:
    """A-ResultRecord: a record object, its columns and the rows (each one Data per column) or a DAR."""

    oad: Oad
    columns: tuple[Csd, ...]
    rows: tuple[tuple[Data, ...], ...] | None = None
    dar: int | None = None


@dataclass(frozen=True)
class GetRecord:
    oad: Oad
    rsd: Rsd
    columns: tuple[Csd, ...]


def _encode_result_normal(result: ResultNormal) -> bytes:
    if result.data is not None:
        return result.oad.encode() + b"\x01" + encode_data(result.data)
    return result.oad.encode() + b"\x00" + bytes([result.dar or 0])


def _encode_result_record(result: ResultRecord) -> bytes:
    head = result.oad.encode() + encode_rcsd(result.columns)
    if result.rows is None:
        return head + b"\x00" + bytes([result.dar or 0])
    for row in result.rows:
        if len(row) != len(result.columns):
            raise ProtocolError(f"record row of {len(row)} values for {len(result.columns)} columns")
    cells = b"".join(encode_data(value) for row in result.rows for value in row)
    return head + b"\x01" + encode_length(len(result.rows)) + cells


def _encode_get_record(record: GetRecord) -> bytes:
    return record.oad.encode() + encode_rsd(record.rsd) + encode_rcsd(record.columns)


def _encode_sequence(items: tuple | list, encode: Callable[[object], bytes]) -> bytes:
    return encode_length(len(items)) + b"".join(encode(item) for item in items)


# -- APDU base -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Apdu(ABC):
    tag: ClassVar[int]
    choice: ClassVar[int | None] = None  # the service choice byte after the tag, if any

    @property
    def name(self) -> str:
        return APDU_NAMES.get(self.tag, f"APDU {self.tag:02X}")

    @property
    def service(self) -> str:
        return type(self).__name__

    @abstractmethod
    def body(self) -> bytes:
        """The encoded service data after the tag (and choice)."""

    def trailer(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        head = bytes([self.tag]) if self.choice is None else bytes([self.tag, self.choice])
        return head + self.body() + self.trailer()


def _encode_time_tag(tag: TimeTag | None) -> bytes:
    if tag is None:
        return b"\x00"
    return b"\x01" + encode_body(DataType.DATE_TIME_S, tag.sent) + encode_body(DataType.TI, tag.valid_for)


@dataclass(frozen=True)
class ClientApdu(Apdu):
    piid: int = 0
    time_tag: TimeTag | None = field(default=None, kw_only=True)

    def trailer(self) -> bytes:
        return _encode_time_tag(self.time_tag)


@dataclass(frozen=True)
class FollowReport:
    results: tuple[ResultNormal, ...] = ()
    records: tuple[ResultRecord, ...] = ()


@dataclass(frozen=True)
class ServerApdu(Apdu):
    piid_acd: int = 0
    follow_report: FollowReport | None = field(default=None, kw_only=True)
    time_tag: TimeTag | None = field(default=None, kw_only=True)

    def trailer(self) -> bytes:
        follow = b"\x00"
        if self.follow_report is not None:
            if self.follow_report.records:
                follow = b"\x01\x02" + _encode_sequence(self.follow_report.records, _encode_result_record)
            else:
                follow = b"\x01\x01" + _encode_sequence(self.follow_report.results, _encode_result_normal)
        return follow + _encode_time_tag(self.time_tag)


# -- GET ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GetRequestNormal(ClientApdu):
    tag, choice = 0x05, 1
    oad: Oad = _NO_OAD

    def body(self) -> bytes:
        return bytes([self.piid]) + self.oad.encode()


@dataclass(frozen=True)
class GetRequestNormalList(ClientApdu):
    tag, choice = 0x05, 2
    oads: tuple[Oad, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid]) + _encode_sequence(self.oads, Oad.encode)


@dataclass(frozen=True)
class GetRequestRecord(ClientApdu):
    tag, choice = 0x05, 3
    record: GetRecord = GetRecord(Oad(0), Rsd(0), ())

    def body(self) -> bytes:
        return bytes([self.piid]) + _encode_get_record(self.record)


@dataclass(frozen=True)
class GetRequestRecordList(ClientApdu):
    tag, choice = 0x05, 4
    records: tuple[GetRecord, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid]) + _encode_sequence(self.records, _encode_get_record)


@dataclass(frozen=True)
class GetRequestNext(ClientApdu):
    tag, choice = 0x05, 5
    last_block: int = 0

    def body(self) -> bytes:
        return bytes([self.piid]) + self.last_block.to_bytes(2, "big")


@dataclass(frozen=True)
class GetResponseNormal(ServerApdu):
    tag, choice = 0x85, 1
    result: ResultNormal = ResultNormal(Oad(0), dar=255)

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_result_normal(self.result)


@dataclass(frozen=True)
class GetResponseNormalList(ServerApdu):
    tag, choice = 0x85, 2
    results: tuple[ResultNormal, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_sequence(self.results, _encode_result_normal)


@dataclass(frozen=True)
class GetResponseRecord(ServerApdu):
    tag, choice = 0x85, 3
    result: ResultRecord = ResultRecord(Oad(0), (), dar=255)

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_result_record(self.result)


@dataclass(frozen=True)
class GetResponseRecordList(ServerApdu):
    tag, choice = 0x85, 4
    results: tuple[ResultRecord, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_sequence(self.results, _encode_result_record)


# -- SET / ACTION ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetRequestNormal(ClientApdu):
    tag, choice = 0x06, 1
    oad: Oad = _NO_OAD
    data: Data = _NULL

    def body(self) -> bytes:
        return bytes([self.piid]) + self.oad.encode() + encode_data(self.data)


@dataclass(frozen=True)
class SetRequestNormalList(ClientApdu):
    tag, choice = 0x06, 2
    items: tuple[tuple[Oad, Data], ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid]) + _encode_sequence(self.items, lambda i: i[0].encode() + encode_data(i[1]))


@dataclass(frozen=True)
class SetResponseNormal(ServerApdu):
    tag, choice = 0x86, 1
    oad: Oad = _NO_OAD
    dar: int = 0

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + self.oad.encode() + bytes([self.dar])


@dataclass(frozen=True)
class SetResponseNormalList(ServerApdu):
    tag, choice = 0x86, 2
    results: tuple[tuple[Oad, int], ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_sequence(
            self.results, lambda r: r[0].encode() + bytes([r[1]])
        )


@dataclass(frozen=True)
class ActionRequestNormal(ClientApdu):
    tag, choice = 0x07, 1
    omd: Omd = _NO_OMD
    data: Data = _NULL

    def body(self) -> bytes:
        return bytes([self.piid]) + self.omd.encode() + encode_data(self.data)


@dataclass(frozen=True)
class ActionResponseNormal(ServerApdu):
    tag, choice = 0x87, 1
    omd: Omd = _NO_OMD
    dar: int = 0
    data: Data | None = None

    def body(self) -> bytes:
        result = b"\x00" if self.data is None else b"\x01" + encode_data(self.data)
        return bytes([self.piid_acd]) + self.omd.encode() + bytes([self.dar]) + result


# -- LINK / RELEASE / ERROR --------------------------------------------------------------------------
LINK_KINDS = {0: "login", 1: "heartbeat", 2: "logout"}


@dataclass(frozen=True)
class LinkRequest(Apdu):
    """Sent by the meter: login / heartbeat / logout, with its heartbeat period and its clock."""

    tag = 0x01
    piid_acd: int = 0
    kind: int = 0
    heartbeat_s: int = 0
    time: DateTime = _EPOCH

    def body(self) -> bytes:
        return (
            bytes([self.piid_acd, self.kind])
            + self.heartbeat_s.to_bytes(2, "big")
            + encode_body(DataType.DATE_TIME, self.time)
        )


@dataclass(frozen=True)
class LinkResponse(Apdu):
    """The platform's answer; result bit 7 = clock trusted, bits 0-2: 0 ok, 1 duplicate, 2 illegal, 3 full."""

    tag = 0x81
    piid: int = 0
    result: int = 0
    request_time: DateTime = _EPOCH
    received_time: DateTime = _EPOCH
    response_time: DateTime = _EPOCH

    def body(self) -> bytes:
        times = (self.request_time, self.received_time, self.response_time)
        return bytes([self.piid, self.result]) + b"".join(encode_body(DataType.DATE_TIME, t) for t in times)


@dataclass(frozen=True)
class ReleaseRequest(ClientApdu):
    tag = 0x03

    def body(self) -> bytes:
        return bytes([self.piid])


@dataclass(frozen=True)
class ReleaseResponse(ServerApdu):
    tag = 0x83
    result: int = 0

    def body(self) -> bytes:
        return bytes([self.piid_acd, self.result])


ERROR_CODES = {1: "APDU cannot be parsed", 2: "service not supported", 255: "other"}


@dataclass(frozen=True)
class ErrorResponse(ServerApdu):
    tag = 0xEE
    error: int = 255

    def body(self) -> bytes:
        return bytes([self.piid_acd, self.error])


# -- REPORT --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportNotificationList(ServerApdu):
    tag, choice = 0x88, 1
    results: tuple[ResultNormal, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_sequence(self.results, _encode_result_normal)


@dataclass(frozen=True)
class ReportNotificationRecordList(ServerApdu):
    tag, choice = 0x88, 2
    results: tuple[ResultRecord, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid_acd]) + _encode_sequence(self.results, _encode_result_record)


@dataclass(frozen=True)
class ReportResponseList(ClientApdu):
    tag, choice = 0x08, 1
    oads: tuple[Oad, ...] = ()

    def body(self) -> bytes:
        return bytes([self.piid]) + _encode_sequence(self.oads, Oad.encode)


@dataclass(frozen=True)
class ReportResponseRecordList(ReportResponseList):
    tag, choice = 0x08, 2


# -- PROXY -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyTarget:
    tsa: bytes  # AF + address, as in a TSA
    timeout_s: int
    oads: tuple[Oad, ...]


@dataclass(frozen=True)
class ProxyGetRequestList(ClientApdu):
    tag, choice = 0x09, 1
    timeout_s: int = 0
    targets: tuple[ProxyTarget, ...] = ()

    def body(self) -> bytes:
        def target(t: ProxyTarget) -> bytes:
            head = encode_body(DataType.TSA, t.tsa) + t.timeout_s.to_bytes(2, "big")
            return head + _encode_sequence(t.oads, Oad.encode)

        return bytes([self.piid]) + self.timeout_s.to_bytes(2, "big") + _encode_sequence(self.targets, target)


@dataclass(frozen=True)
class ProxyGetResponseList(ServerApdu):
    tag, choice = 0x89, 1
    results: tuple[tuple[bytes, tuple[ResultNormal, ...]], ...] = ()

    def body(self) -> bytes:
        def target(item: tuple[bytes, tuple[ResultNormal, ...]]) -> bytes:
            return encode_body(DataType.TSA, item[0]) + _encode_sequence(item[1], _encode_result_normal)

        return bytes([self.piid_acd]) + _encode_sequence(self.results, target)


@dataclass(frozen=True)
class ProxyTransCommandRequest(ClientApdu):
    """Transparent forwarding: send ``command`` (usually a whole inner frame) out of a port, e.g. RS-485."""

    tag, choice = 0x09, 7
    port: Oad = _RS485
    comdcb: Comdcb = _SERIAL_9600_8E1
    frame_timeout_s: int = 10
    byte_timeout_ms: int = 100
    command: bytes = b""

    def body(self) -> bytes:
        return (
            bytes([self.piid])
            + self.port.encode()
            + encode_body(DataType.COMDCB, self.comdcb)
            + self.frame_timeout_s.to_bytes(2, "big")
            + self.byte_timeout_ms.to_bytes(2, "big")
            + encode_body(DataType.OCTET_STRING, self.command)
        )


@dataclass(frozen=True)
class ProxyTransCommandResponse(ServerApdu):
    tag, choice = 0x89, 7
    port: Oad = _RS485
    command: bytes | None = None
    dar: int | None = None

    def body(self) -> bytes:
        head = bytes([self.piid_acd]) + self.port.encode()
        if self.command is None:
            return head + b"\x00" + bytes([self.dar or 0])
        return head + b"\x01" + encode_body(DataType.OCTET_STRING, self.command)


@dataclass(frozen=True)
class RawApdu(Apdu):
    """An APDU this codec carries but does not decode (CONNECT, SECURITY, RELEASE-Notification)."""

    raw_tag: int = 0
    payload: bytes = b""

    @property
    def name(self) -> str:
        return APDU_NAMES.get(self.raw_tag, f"APDU {self.raw_tag:02X}")

    def body(self) -> bytes:
        return self.payload

    def encode(self) -> bytes:
        return bytes([self.raw_tag]) + self.payload

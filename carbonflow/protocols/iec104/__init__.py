"""IEC 60870-5-104: APCI (I/S/U frames), ASDU codec for measured values, integrated totals and the
station commands, CP56Time2a, a sans-IO link state machine, and the C2 ``describe``/``build_request``.

Pure codecs: no sockets, no asyncio; the device (``carbonflow.devices.iec104_rtu``) and the client
(``carbonflow.collector.clients.iec104``) feed bytes and time into :class:`~.link.Link`.
"""

from carbonflow.protocols.iec104.apci import IFrame, SFrame, UFrame, UFunction
from carbonflow.protocols.iec104.asdu import TYPE_IDS, TYPES, Asdu, Cause, InformationObject
from carbonflow.protocols.iec104.cp56time import CP56Time2a
from carbonflow.protocols.iec104.document import ENCODE_FUNCTIONS, build_request, decimal_text, describe

__all__ = [
    "ENCODE_FUNCTIONS",
    "TYPES",
    "TYPE_IDS",
    "Asdu",
    "CP56Time2a",
    "Cause",
    "IFrame",
    "InformationObject",
    "SFrame",
    "UFrame",
    "UFunction",
    "build_request",
    "decimal_text",
    "describe",
]

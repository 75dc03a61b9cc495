"""The C2 hook: ``describe`` a captured IEC 104 frame as a JSON-able document, ``build_request`` a
master's request frame from CLI parameters (``carbonflow frame encode --protocol iec104 gi ca=1``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.iec104 import apci, asdu, cp56time
from carbonflow.protocols.iec104.apci import IFrame, SFrame, UFrame, UFunction
from carbonflow.protocols.iec104.asdu import TYPES, Asdu, Cause, InformationObject, cause_name

PROTOCOL = "iec104"

# Causes that a controlling station (master) sends; everything else travels towards the master.
_REQUEST_CAUSES = {Cause.ACTIVATION, Cause.DEACTIVATION}


def decimal_text(value: Decimal) -> str:
    """A value as the device gives it: positional notation, its own digits ("100.0", "0.5")."""
    return format(value, "f") if value.is_finite() else str(value)


def _object_document(obj: InformationObject, kind: str) -> dict[str, object]:
    doc: dict[str, object] = {"ioa": obj.ioa}
    if obj.value is not None:
        doc["value"] = decimal_text(obj.value)
        doc["kind"] = kind
        doc["unit"] = None  # 104 carries no unit: the point list of the station defines it
        doc["quality"] = sorted(obj.quality)
    if obj.sequence is not None:
        doc["sequence"] = obj.sequence
    if obj.qualifier is not None:
        doc["qualifier"] = obj.qualifier
    if obj.time is not None:
        doc["time"] = obj.time.isoformat()
        doc["time_invalid"] = obj.time.invalid
        doc["summer_time"] = obj.time.summer_time
        doc["day_of_week"] = obj.time.day_of_week
    return doc


def _asdu_document(unit: Asdu) -> dict[str, object]:
    info = TYPES.get(unit.type_id)
    doc: dict[str, object] = {
        "type_id": unit.type_id,
        "type": unit.type_name,
        "name": info.description if info else "unsupported type (objects kept raw)",
        "sq": unit.sequence,
        "count": unit.count,
        "cot": unit.cot,
        "cause": cause_name(unit.cot),
        "negative": unit.negative,
        "test": unit.test,
        "originator": unit.originator,
        "common_address": unit.common_address,
    }
    if info is None:
        doc["objects"] = None
        doc["raw_objects"] = unit.raw_objects.hex(" ").upper()
        return doc
    objects = [_object_document(obj, info.kind) for obj in unit.objects]
    doc["objects"] = objects
    if len(objects) == 1 and "value" in objects[0]:
        doc.update({key: objects[0][key] for key in ("ioa", "value", "unit")})
    elif any("value" in obj for obj in objects):
        doc["values"] = [obj.get("value") for obj in objects]
        doc["unit"] = None
    if info.kind == "command" and unit.type_id in (100, 101):
        doc["qualifier"] = unit.objects[0].qualifier
        if unit.type_id == 101:
            qcc = unit.objects[0].qualifier or 0
            doc["request"], doc["freeze"] = qcc & 0x3F, qcc >> 6
    return doc


def _error(unit: Asdu) -> dict[str, object] | None:
    flags = []
    if unit.negative:
        flags.append("negative confirmation")
    if unit.cot in (Cause.UNKNOWN_TYPE, Cause.UNKNOWN_CAUSE, Cause.UNKNOWN_COMMON_ADDRESS, Cause.UNKNOWN_IOA):
        flags.append(cause_name(unit.cot))
    return {"code": unit.cot, "flags": flags} if flags else None


def describe_apdu(frame: bytes) -> dict[str, object]:
    apdu = apci.decode(frame)
    doc: dict[str, object] = {
        "protocol": PROTOCOL,
        "format": apdu.format,
        "control": bytes(frame[2:6]).hex().upper(),
    }
    if isinstance(apdu, UFrame):
        doc["direction"] = "request" if apdu.function.is_activation else "response"
        doc["function"] = apdu.function.label
        doc["error"] = None
        return doc
    if isinstance(apdu, SFrame):
        doc["direction"] = "response"  # an S-frame answers received I-frames
        doc["function"] = "S acknowledge"
        doc["recv_seq"] = apdu.recv_seq
        doc["error"] = None
        return doc
    unit = asdu.decode(apdu.asdu)
    doc["direction"] = "request" if unit.cot in _REQUEST_CAUSES else "response"
    doc["function"] = unit.type_name
    doc["send_seq"], doc["recv_seq"] = apdu.send_seq, apdu.recv_seq
    doc.update(_asdu_document(unit))
    doc["error"] = _error(unit)
    return doc


def describe(data: bytes) -> dict[str, object]:
    """Decode one captured APDU; several concatenated APDUs give ``{"protocol", "frames": [...]}``."""
    buffer = bytearray(data)
    if not buffer:
        raise ProtocolError("empty frame")
    frames = apci.split(buffer)
    if buffer:
        raise ProtocolError(f"truncated APDU: {len(buffer)} trailing bytes do not make a whole APDU")
    if len(frames) == 1:
        return describe_apdu(frames[0])
    return {"protocol": PROTOCOL, "frames": [describe_apdu(frame) for frame in frames]}


# -- build_request --------------------------------------------------------------------------------
_SEQ_HELP = "send=N(S) recv=N(R) (default 0)"
_ASDU_HELP = "ca=common address (default 1) originator=0 cot=6"
ENCODE_FUNCTIONS: dict[str, str] = {
    "startdt": "U-frame STARTDT; con=1 for the confirmation",
    "stopdt": "U-frame STOPDT; con=1 for the confirmation",
    "testfr": "U-frame TESTFR; con=1 for the confirmation",
    "s-frame": "S-frame acknowledging up to recv=N(R)",
    "gi": f"general interrogation C_IC_NA_1: qoi=20 (21..36 = group) {_ASDU_HELP} {_SEQ_HELP}",
    "ci": f"counter interrogation C_CI_NA_1: rqt=5 (1..4 = group) frz=0 (1 freeze, 2 freeze+reset, "
    f"3 reset) {_ASDU_HELP} {_SEQ_HELP}",
    "clock-sync": f"clock sync C_CS_NA_1: time=ISO-8601 wall clock of the station {_ASDU_HELP} {_SEQ_HELP}",
}


def _int_param(params: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    try:
        value = int(text, 0)
    except ValueError:
        raise ProtocolError(f"parameter {key}={text!r} is not an integer") from None
    if not low <= value <= high:
        raise ProtocolError(f"parameter {key}={value} outside {low}..{high}")
    return value


def _check_keys(function: str, params: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed))
        raise ProtocolError(f"{function}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed_text}")


_COMMON_KEYS = {"ca", "originator", "cot", "send", "recv"}
_OWN_KEYS = {"gi": {"qoi"}, "ci": {"rqt", "frz"}, "clock-sync": {"time"}}


def _i_frame(function: str, params: dict[str, str], type_id: int, obj: InformationObject) -> bytes:
    _check_keys(function, params, _COMMON_KEYS | _OWN_KEYS[function])
    unit = Asdu(
        type_id=type_id,
        cot=_int_param(params, "cot", Cause.ACTIVATION, 1, 63),
        common_address=_int_param(params, "ca", 1, 0, 0xFFFF),
        objects=(obj,),
        originator=_int_param(params, "originator", 0, 0, 255),
    )
    send = _int_param(params, "send", 0, 0, apci.SEQUENCE_MODULUS - 1)
    recv = _int_param(params, "recv", 0, 0, apci.SEQUENCE_MODULUS - 1)
    return apci.encode(IFrame(send, recv, asdu.encode(unit)))


def build_request(function: str, params: dict[str, str]) -> bytes:
    """Build a master's frame; unknown function or bad parameter -> :class:`ProtocolError`."""
    name = function.lower().replace("_", "-")
    if name in ("startdt", "stopdt", "testfr"):
        _check_keys(name, params, {"con"})
        kind = "CON" if _int_param(params, "con", 0, 0, 1) else "ACT"
        return apci.encode_u(UFunction[f"{name.upper()}_{kind}"])
    if name == "s-frame":
        _check_keys(name, params, {"recv"})
        return apci.encode_s(_int_param(params, "recv", 0, 0, apci.SEQUENCE_MODULUS - 1))
    if name == "gi":
        _check_keys(name, params, _COMMON_KEYS | _OWN_KEYS[name])
        qoi = _int_param(params, "qoi", 20, 0, 255)
        return _i_frame(name, params, 100, InformationObject(ioa=0, qualifier=qoi))
    if name == "ci":
        _check_keys(name, params, _COMMON_KEYS | _OWN_KEYS[name])
        rqt = _int_param(params, "rqt", 5, 0, 63)
        frz = _int_param(params, "frz", 0, 0, 3)
        return _i_frame(name, params, 101, InformationObject(ioa=0, qualifier=rqt | frz << 6))
    if name == "clock-sync":
        _check_keys(name, params, _COMMON_KEYS | _OWN_KEYS[name])
        if "time" not in params:
            raise ProtocolError("clock-sync: missing parameter time (ISO 8601, e.g. 2026-01-02T03:04:05.678)")
        try:
            when = datetime.fromisoformat(params["time"])
        except ValueError:
            raise ProtocolError(f"clock-sync: parameter time={params['time']!r} is not ISO 8601") from None
        tag = cp56time.CP56Time2a.from_datetime(when)
        return _i_frame(name, params, 103, InformationObject(ioa=0, time=tag))
    raise ProtocolError(f"unknown iec104 function {function!r}; known: {', '.join(ENCODE_FUNCTIONS)}")

"""BCD fields of DL/T 645-2007 data items, driven by the format strings of the standard's tables.

A format names every digit of a field, most significant first, e.g. ``XXXXXX.XX`` (energy, 4 bytes),
``XX.XXXX`` (power, 3 bytes), ``YYMMDDWW`` (date and weekday), ``hhmmss``, ``NNNNNNNNNNNN`` (an address
or meter number as a digit string) or ``HHHH`` (a status word shown in hex).  Two letters make one byte;
on the wire the field is little-endian (lowest byte first).  Several fields of one item are separated by
a space (``XX.XXXX YYMMDDhhmm``: max demand and its time) and follow each other on the wire in that order.

Numeric fields decode to :class:`~decimal.Decimal` carrying the format's scale (``Decimal("1206.42")``),
signed numeric fields carry the sign in the top bit of their highest byte, a field of all ``FF`` bytes is
"absent" (``None``: a phase the meter does not have), date/time fields decode to ISO-like strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from carbonflow.protocols.errors import ProtocolError

FieldValue = Decimal | str | None

_DATE_TOKENS = ("YY", "MM", "DD")
_TIME_TOKENS = ("hh", "mm", "ss")
_CLOCK_TOKENS = {*_DATE_TOKENS, "WW", *_TIME_TOKENS}


@dataclass(frozen=True)
class FieldFormat:
    """One field of a data item: how many bytes and how its digits read."""

    pattern: str  # e.g. "XXX.XXX", "YYMMDDhhmm", "NNNNNNNNNNNN", "HHHH"
    kind: str  # "number" | "clock" | "digits" | "hex"
    size: int  # bytes
    scale: int  # digits after the point (numbers only)
    tokens: tuple[str, ...]  # two-letter tokens of a clock field, most significant first

    @property
    def digits(self) -> int:
        return 2 * self.size


def parse_format(fmt: str) -> tuple[FieldFormat, ...]:
    """Split an item format into its fields; raises ProtocolError for a format we cannot read."""
    fields = tuple(_parse_field(part) for part in fmt.split())
    if not fields:
        raise ProtocolError(f"empty data format {fmt!r}")
    return fields


def _parse_field(pattern: str) -> FieldFormat:
    letters = pattern.replace(".", "")
    if not letters or len(letters) % 2:
        raise ProtocolError(f"data format {pattern!r} must have an even, non-zero number of digits")
    size = len(letters) // 2
    if set(letters) == {"X"}:
        if pattern.count(".") > 1 or pattern.startswith(".") or pattern.endswith("."):
            raise ProtocolError(f"data format {pattern!r} has a misplaced decimal point")
        scale = len(pattern) - pattern.index(".") - 1 if "." in pattern else 0
        return FieldFormat(pattern, "number", size, scale, ())
    if "." in pattern:
        raise ProtocolError(f"data format {pattern!r}: only X digits may carry a decimal point")
    if set(letters) == {"N"}:
        return FieldFormat(pattern, "digits", size, 0, ())
    if set(letters) == {"H"}:
        return FieldFormat(pattern, "hex", size, 0, ())
    tokens = tuple(letters[i : i + 2] for i in range(0, len(letters), 2))
    if not set(tokens) <= _CLOCK_TOKENS or len(set(tokens)) != len(tokens):
        raise ProtocolError(f"unknown data format {pattern!r}")
    return FieldFormat(pattern, "clock", size, 0, tokens)


# -- wire <-> digit strings -------------------------------------------------------------------------
def _digit_string(raw: bytes) -> str:
    """The field's digits most significant first (bytes reversed), as upper-case hex."""
    return raw[::-1].hex().upper()


def _check_bcd(digits: str, what: str) -> None:
    if not digits.isdigit():
        raise ProtocolError(f"{what}: non-BCD digits {digits}")


def is_absent(raw: bytes) -> bool:
    return bool(raw) and all(byte == 0xFF for byte in raw)


def decode_field(field: FieldFormat, raw: bytes, signed: bool = False) -> FieldValue:
    """One field's bytes (already minus 33H, little-endian) to its value."""
    if len(raw) != field.size:
        raise ProtocolError(f"field {field.pattern} needs {field.size} bytes, got {len(raw)}")
    if field.kind == "hex":
        return _digit_string(raw)
    if is_absent(raw):
        return None
    if field.kind == "number":
        negative = False
        if signed and raw[-1] & 0x80:
            negative = True
            raw = raw[:-1] + bytes([raw[-1] & 0x7F])
        digits = _digit_string(raw)
        _check_bcd(digits, field.pattern)
        if field.scale:
            digits = digits[: -field.scale] + "." + digits[-field.scale :]
        return Decimal(("-" if negative else "") + digits)
    digits = _digit_string(raw)
    _check_bcd(digits, field.pattern)
    if field.kind == "digits":
        return digits
    rendered = _render_clock(field.tokens, digits)
    if "WW" in field.tokens:  # the weekday is derived from the date, which must therefore exist
        _weekday_from_text({t: digits[2 * i : 2 * i + 2] for i, t in enumerate(field.tokens)}, rendered)
    return rendered


def _render_clock(tokens: tuple[str, ...], digits: str) -> str:
    by_token = {token: digits[2 * i : 2 * i + 2] for i, token in enumerate(tokens)}
    date_part = "-".join(
        ("20" + by_token[t]) if t == "YY" else by_token[t] for t in _DATE_TOKENS if t in by_token
    )
    time_part = ":".join(by_token[t] for t in _TIME_TOKENS if t in by_token)
    return " ".join(part for part in (date_part, time_part) if part)


def weekday_of(field: FieldFormat, raw: bytes) -> int | None:
    """The ``WW`` digits of a clock field (0 = Sunday), or None when the field has none."""
    if field.kind != "clock" or "WW" not in field.tokens or is_absent(raw) or len(raw) != field.size:
        return None
    digits = _digit_string(raw)
    position = field.tokens.index("WW")
    ww = digits[2 * position : 2 * position + 2]
    return int(ww) if ww.isdigit() else None


def encode_field(field: FieldFormat, value: object, signed: bool = False) -> bytes:
    """A value (Decimal/str/int, a datetime for clock fields, None for absent) to the field's bytes."""
    if value is None:
        return b"\xff" * field.size
    if field.kind == "number":
        return _encode_number(field, value, signed)
    if field.kind == "clock":
        digits = _clock_digits(field, value)
    else:
        digits = str(value).strip().upper()
        if len(digits) < field.digits and digits.isdigit():
            digits = digits.rjust(field.digits, "0")
        valid = digits.isdigit() if field.kind == "digits" else re.fullmatch(r"[0-9A-F]+", digits)
        if len(digits) != field.digits or not valid:
            raise ProtocolError(f"value {value!r} does not fit format {field.pattern}")
    return bytes.fromhex(digits)[::-1]


def _encode_number(field: FieldFormat, value: object, signed: bool) -> bytes:
    if isinstance(value, float):
        raise ProtocolError(f"value {value!r} for {field.pattern}: pass a Decimal or a string, not a float")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ProtocolError(f"value {value!r} is not a number (format {field.pattern})") from None
    if not number.is_finite():
        raise ProtocolError(f"value {value!r} is not a finite number (format {field.pattern})")
    step = Decimal(1).scaleb(-field.scale)
    try:
        quantized = number.quantize(step)
    except InvalidOperation:  # more digits than the decimal context holds: far beyond any field
        raise ProtocolError(f"value {value} does not fit format {field.pattern}") from None
    if quantized != number:
        raise ProtocolError(f"value {value} has more decimals than format {field.pattern} allows")
    negative = quantized.is_signed()
    if negative and not signed:
        raise ProtocolError(f"value {value} is negative but this item is unsigned ({field.pattern})")
    magnitude = int(abs(quantized).scaleb(field.scale))
    digits = str(magnitude).rjust(field.digits, "0")
    limit_first_digit = 7 if signed else 9  # a signed field's top bit is the sign
    if len(digits) > field.digits or int(digits[0]) > limit_first_digit:
        raise ProtocolError(f"value {value} does not fit format {field.pattern}")
    raw = bytearray(bytes.fromhex(digits)[::-1])
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)


def _clock_digits(field: FieldFormat, value: object) -> str:
    """Digits of a clock field from a datetime/date or from the string :func:`decode_field` renders."""
    if isinstance(value, datetime | date):
        moment = value
        parts = {
            "YY": moment.year % 100,
            "MM": moment.month,
            "DD": moment.day,
            "WW": (moment.weekday() + 1) % 7,
        }
        if isinstance(moment, datetime):
            parts |= {"hh": moment.hour, "mm": moment.minute, "ss": moment.second}
        missing = [t for t in field.tokens if t not in parts]
        if missing:
            raise ProtocolError(f"value {value!r} has no {''.join(missing)} for format {field.pattern}")
        return "".join(f"{parts[t]:02d}" for t in field.tokens)
    numbers = re.findall(r"\d+", str(value))
    order = [t for t in _DATE_TOKENS if t in field.tokens] + [t for t in _TIME_TOKENS if t in field.tokens]
    if len(numbers) != len(order):
        raise ProtocolError(f"value {value!r} does not match format {field.pattern}")
    parts_text: dict[str, str] = {}
    for token, number in zip(order, numbers):
        if token == "YY" and len(number) == 4:
            if not number.startswith("20"):
                raise ProtocolError(f"year {number} is outside 2000-2099 (format {field.pattern})")
            number = number[2:]
        if len(number) > 2:
            raise ProtocolError(f"value {value!r} does not match format {field.pattern}")
        parts_text[token] = number.rjust(2, "0")
    if "WW" in field.tokens:
        parts_text["WW"] = f"{_weekday_from_text(parts_text, value):02d}"
    return "".join(parts_text[t] for t in field.tokens)


def _weekday_from_text(parts: dict[str, str], value: object) -> int:
    try:
        day = date(2000 + int(parts["YY"]), int(parts["MM"]), int(parts["DD"]))
    except (KeyError, ValueError):
        raise ProtocolError(f"value {value!r} is not a valid date") from None
    return (day.weekday() + 1) % 7  # DL/T 645 counts 0 = Sunday


def render(value: FieldValue) -> str | None:
    """A field value as the meter shows it (``Decimal('0.2512')`` -> ``"0.2512"``), for JSON."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value

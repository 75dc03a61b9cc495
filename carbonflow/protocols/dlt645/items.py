"""Data items (DI) as data: what a DI is called, how its bytes read, its unit, sign, block size, access.

A :class:`DiTable` is built from plain rows (dicts, as loaded from JSON/TOML), so a meter model's vendor
DIs are added with :meth:`DiTable.extended` or :meth:`DiTable.from_json` without touching code::

    {"di": "F0030000", "name": "carbon factor in use", "format": "X.XXXX", "unit": "kgCO2/kWh",
     "access": "rw", "vendor": true}

Values: a single-field item decodes to one :data:`~carbonflow.protocols.dlt645.bcd.FieldValue`, a
multi-field item (``"XX.XXXX YYMMDDhhmm"``) to a tuple of them, a block item (``0001FF00``: total and
tariffs) to a list of those, one per member, with ``None`` for an absent member (``FF..``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from carbonflow.protocols.dlt645.bcd import (
    FieldFormat,
    FieldValue,
    decode_field,
    encode_field,
    parse_format,
    render,
    weekday_of,
)
from carbonflow.protocols.errors import ProtocolError

ItemValue = FieldValue | tuple[FieldValue, ...]
Value = ItemValue | list[ItemValue]

ACCESS_MODES = ("r", "w", "rw")


def normalize_di(di: str | int | bytes) -> str:
    """A DI as 8 upper-case hex digits, most significant (DI3) first; accepts ``"0001 0000"``, ints."""
    if isinstance(di, int) and not isinstance(di, bool):
        if not 0 <= di <= 0xFFFFFFFF:
            raise ProtocolError(f"DI {di} is not a 4-byte identifier")
        return f"{di:08X}"
    text = str(di).strip().upper().replace(" ", "").replace("_", "")
    if len(text) != 8 or any(ch not in "0123456789ABCDEF" for ch in text):
        raise ProtocolError(f"DI {di!r} must be 8 hex digits (DI3 DI2 DI1 DI0)")
    return text


def di_to_wire(di: str) -> bytes:
    """DI0 first, as the frame carries it (before the 33H offset)."""
    return bytes.fromhex(normalize_di(di))[::-1]


def di_from_wire(wire: bytes) -> str:
    return wire[:4][::-1].hex().upper()


@dataclass(frozen=True)
class DataItem:
    di: str
    name: str
    format: str
    unit: str = ""
    signed: bool = False
    block: int | None = 1  # members in the reply; None = any number (e.g. total + however many tariffs)
    access: str = "r"
    vendor: bool = False  # not in DL/T 645-2007: a manufacturer's own DI (e.g. carbon registers)
    fields: tuple[FieldFormat, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "di", normalize_di(self.di))
        object.__setattr__(self, "fields", parse_format(self.format))
        if self.access not in ACCESS_MODES:
            raise ProtocolError(f"DI {self.di}: access must be one of {ACCESS_MODES}, not {self.access!r}")
        if self.block is not None and self.block < 1:
            raise ProtocolError(f"DI {self.di}: block must be a positive count or None")

    @property
    def member_size(self) -> int:
        return sum(f.size for f in self.fields)

    @property
    def is_block(self) -> bool:
        return self.block != 1

    @property
    def writable(self) -> bool:
        return "w" in self.access

    @property
    def readable(self) -> bool:
        return "r" in self.access

    # -- values -----------------------------------------------------------------------------------
    def decode(self, payload: bytes) -> Value:
        """The reply payload after the DI (minus 33H) to the item's value(s)."""
        size = self.member_size
        if not self.is_block:
            if len(payload) != size:
                raise ProtocolError(f"DI {self.di} ({self.format}) needs {size} bytes, got {len(payload)}")
            return self._decode_member(payload)
        if not payload or len(payload) % size:
            raise ProtocolError(f"block DI {self.di} needs a multiple of {size} bytes, got {len(payload)}")
        count = len(payload) // size
        if self.block is not None and count != self.block:
            raise ProtocolError(f"block DI {self.di} has {self.block} members, got {count}")
        return [self._decode_member(payload[i * size : (i + 1) * size]) for i in range(count)]

    def _decode_member(self, raw: bytes) -> ItemValue:
        values: list[FieldValue] = []
        offset = 0
        for fmt in self.fields:
            values.append(decode_field(fmt, raw[offset : offset + fmt.size], self.signed))
            offset += fmt.size
        return values[0] if len(values) == 1 else tuple(values)

    def weekday(self, payload: bytes) -> int | None:
        """The weekday digits of a single date item (``04000101``), which the value string leaves out."""
        if self.is_block or len(self.fields) != 1 or len(payload) != self.member_size:
            return None
        return weekday_of(self.fields[0], payload)

    def encode(self, value: Any) -> bytes:
        """Value(s) to the payload after the DI; a block takes a list, a multi-field item a tuple."""
        if not self.is_block:
            return self._encode_member(value)
        if not isinstance(value, list | tuple) or not value:
            raise ProtocolError(f"block DI {self.di} takes a non-empty list of values")
        if self.block is not None and len(value) != self.block:
            raise ProtocolError(f"block DI {self.di} takes {self.block} values, got {len(value)}")
        return b"".join(self._encode_member(member) for member in value)

    def _encode_member(self, value: Any) -> bytes:
        if len(self.fields) == 1:
            return encode_field(self.fields[0], value, self.signed)
        if not isinstance(value, tuple | list) or len(value) != len(self.fields):
            raise ProtocolError(f"DI {self.di} ({self.format}) takes {len(self.fields)} values")
        return b"".join(encode_field(f, v, self.signed) for f, v in zip(self.fields, value))

    def parse_text(self, text: str) -> Any:
        """A value typed on a command line: ``"0.5703"``; fields by ``;`` and block members by ``,``."""
        members = [m.strip() for m in text.split(",")] if self.is_block else [text.strip()]
        parsed: list[Any] = []
        for member in members:
            parts = [p.strip() for p in member.split(";")]
            value: Any = parts[0] if len(self.fields) == 1 else tuple(parts)
            if len(self.fields) == 1 and len(parts) != 1:
                raise ProtocolError(f"DI {self.di} takes one field, got {member!r}")
            parsed.append(value)
        return parsed if self.is_block else parsed[0]

    def to_row(self) -> dict[str, Any]:
        return {
            "di": self.di,
            "name": self.name,
            "format": self.format,
            "unit": self.unit,
            "signed": self.signed,
            "block": self.block,
            "access": self.access,
            "vendor": self.vendor,
        }


def render_value(value: Value) -> Any:
    """A decoded value as JSON-able strings (Decimal -> "1206.42"), keeping list/tuple shape as lists."""
    if isinstance(value, list | tuple):
        return [render_value(v) for v in value]
    return render(value)


_ROW_KEYS = {"di", "name", "format", "unit", "signed", "block", "access", "vendor"}


def item_from_row(row: Mapping[str, Any]) -> DataItem:
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise ProtocolError(f"DI row {dict(row)!r}: unknown keys {sorted(unknown)}")
    missing = {"di", "name", "format"} - set(row)
    if missing:
        raise ProtocolError(f"DI row {dict(row)!r}: missing {sorted(missing)}")
    block = row.get("block", 1)
    if block not in (None, "n") and not isinstance(block, int):
        raise ProtocolError(f"DI row {row['di']}: block must be an integer, null or 'n'")
    return DataItem(
        di=row["di"],
        name=str(row["name"]),
        format=str(row["format"]),
        unit=str(row.get("unit", "")),
        signed=bool(row.get("signed", False)),
        block=None if block in (None, "n") else block,
        access=str(row.get("access", "r")),
        vendor=bool(row.get("vendor", False)),
    )


class DiTable:
    """Data items by DI; later rows replace earlier ones with the same DI (a model overriding a default)."""

    def __init__(self, items: Iterable[DataItem] = ()) -> None:
        self._items: dict[str, DataItem] = {}
        for item in items:
            self._items[item.di] = item

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> DiTable:
        return cls(item_from_row(row) for row in rows)

    @classmethod
    def from_json(cls, text: str) -> DiTable:
        """Rows from a JSON list (or ``{"items": [...]}``), e.g. a meter model's vendor point map."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ProtocolError(f"DI table is not valid JSON: {error}") from None
        rows = document.get("items") if isinstance(document, dict) else document
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ProtocolError("DI table JSON must be a list of objects (or {'items': [...]})")
        return cls.from_rows(rows)

    def extended(self, items: Iterable[DataItem | Mapping[str, Any]] | DiTable) -> DiTable:
        extra = [i if isinstance(i, DataItem) else item_from_row(i) for i in items]
        return DiTable([*self._items.values(), *extra])

    def get(self, di: str) -> DataItem | None:
        try:
            return self._items.get(normalize_di(di))
        except ProtocolError:
            return None

    def __getitem__(self, di: str) -> DataItem:
        item = self.get(di)
        if item is None:
            raise KeyError(f"DI {di} is not in the table")
        return item

    def __contains__(self, di: object) -> bool:
        return isinstance(di, str) and self.get(di) is not None

    def __iter__(self) -> Iterator[DataItem]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

"""What every contract model shares: strictness, a schema version, the document form, one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
# a record list's name -> what one record is called in an error line
RECORD_NAMES = {
    "devices": "device",
    "cameras": "camera",
    "buses": "bus",
    "generators": "generator",
    "loads": "load",
    "storage": "storage",
    "branches": "branch",
    "regions": "region",
    "plants": "plant",
}


class ContractError(ValueError):
    """A document that breaks its contract, as one line naming the offending record and field."""


class Contract(BaseModel):
    """A model whose producer is ours: unknown fields are mistakes, not extensions."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def document(self) -> dict[str, Any]:
        """The JSON-ready form, exactly the fields that were given (so a document round-trips as is)."""
        return self.model_dump(mode="python", by_alias=True, exclude_unset=True)


class Document(Contract):
    """A whole document: its ``schema_version`` is one this carbonflow reads; :meth:`parse` turns any
    problem into one :class:`ContractError` line naming the record."""

    SCHEMA_VERSION: ClassVar[int] = 1  # the newest this carbonflow reads (and writes)
    TITLE: ClassVar[str] = "document"  # how an error line names the document
    RECORDS: ClassVar[tuple[str, ...]] = tuple(RECORD_NAMES)  # record lists an error line names by id
    schema_version: int

    @model_validator(mode="after")
    def _supported_version(self) -> Self:
        version, newest = self.schema_version, self.SCHEMA_VERSION
        if version > newest:
            raise ValueError(f"schema_version {version} is newer than this carbonflow reads ({newest})")
        return self

    @classmethod
    def parse(cls, data: Any, origin: str | None = None) -> Self:
        origin = origin or cls.TITLE
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ContractError(f"{origin}: expected an object")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            raise ContractError(error_line(origin, dict(data), error, cls.RECORDS)) from None


def inherit(model: BaseModel, name: str, value: Any) -> None:
    """Fill a field from an enclosing default without marking it given: the document keeps its form."""
    model.__dict__[name] = value


def error_line(
    origin: str, data: Any, error: ValidationError, records: Iterable[str] = tuple(RECORD_NAMES)
) -> str:
    """``origin: device 'EM-U01' (devices[3]): points[1].oad: message`` from the first error."""
    first = error.errors()[0]
    loc = list(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    where = ""
    if len(loc) >= 2 and loc[0] in set(records) and isinstance(loc[1], int):
        listed, index = str(loc[0]), loc[1]
        rows = data.get(listed) if isinstance(data, dict) else None
        raw = rows[index] if isinstance(rows, list) and index < len(rows) else None
        name = raw.get("id") if isinstance(raw, dict) else None
        label = RECORD_NAMES.get(listed, listed)
        where = (f"{label} {name!r} " if name else f"{label} ") + f"({listed}[{index}])"
        loc = loc[2:]
    field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    if first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "extra_forbidden":
        message = "unknown field"
    return ": ".join(part for part in (origin, where, field, message) if part)

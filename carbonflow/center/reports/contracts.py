"""Contractual instruments for market-based Scope 2 emissions: green electricity certificates, power
purchase agreements and green tariffs a user (load) holds, and the residual mix for the rest.

The file (``green_contracts_file`` in the center settings, TOML)::

    residual_mix_g_per_kwh = 612.5          # optional; default: the user's location-based intensity

    [[instrument]]
    id = "GEC-2026-12-0001"                 # the certificate / contract reference
    user = "U01"                             # a load id of the topology
    kind = "certificate"                     # certificate | ppa | green_tariff
    month = "2026-12"                        # the consumption month it is claimed for (local calendar)
    energy_kwh = "1200000"                   # decimal string, as on the certificate
    intensity_g_per_kwh = "0"                # the instrument's emission factor (0 for wind, solar, hydro)
    source = "wind"                          # informative

Instruments are dated by consumption month, as certificates are retired against a period's
consumption (GHG Protocol Scope 2 Guidance, quality criteria 5: vintage close to the consumption
period); an export of a month or a year uses the instruments of the months it covers, an export of a
day cannot claim them (it says so).  A bad file is one :class:`ContractsError` line naming the
instrument and the field.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

INSTRUMENT_KINDS = ("certificate", "ppa", "green_tariff")


class ContractsError(ValueError):
    """A contracts file that cannot be used; the message names the instrument and field."""


class Instrument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=100)
    user: str = Field(min_length=1, max_length=100)
    kind: Literal["certificate", "ppa", "green_tariff"]
    month: str
    energy_kwh: Decimal = Field(ge=0)
    intensity_g_per_kwh: Decimal = Field(ge=0)
    source: str | None = Field(default=None, max_length=50)

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError(f"a consumption month is written like 2026-12, not {value!r}")
        return value

    @field_validator("energy_kwh", "intensity_g_per_kwh", mode="before")
    @classmethod
    def _decimal_text(cls, value: object) -> object:
        if isinstance(value, float):  # a TOML float has already lost the certificate's digits
            raise ValueError('write the number as a string ("1200000"), as the certificate shows it')
        return value


class Contracts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    residual_mix_g_per_kwh: Decimal | None = Field(default=None, ge=0)
    instrument: tuple[Instrument, ...] = ()

    def for_user(self, user: str, months: set[str]) -> list[Instrument]:
        return [i for i in self.instrument if i.user == user and i.month in months]


NO_CONTRACTS = Contracts()


def _location(error: dict, data: dict) -> str:
    loc = list(error.get("loc", ()))
    if len(loc) >= 2 and loc[0] == "instrument" and isinstance(loc[1], int):
        items = data.get("instrument") or []
        ident = items[loc[1]].get("id") if loc[1] < len(items) and isinstance(items[loc[1]], dict) else None
        name = f"instrument {ident!r}" if ident else f"instrument #{loc[1] + 1}"
        return ".".join([name, *(str(part) for part in loc[2:])])
    return ".".join(str(part) for part in loc) or "file"


def parse_contracts(data: dict, *, origin: str = "contracts") -> Contracts:
    try:
        contracts = Contracts.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ContractsError(f"{origin}: {_location(first, data)}: {first['msg']}") from None
    seen: set[str] = set()
    for item in contracts.instrument:
        if item.id in seen:
            raise ContractsError(f"{origin}: instrument {item.id!r}: the id is used twice")
        seen.add(item.id)
    return contracts


def load_contracts(path: str | None, known_users: set[str] | None = None) -> Contracts:
    """The contracts file at ``path`` (None: no instruments); instruments of unknown users refused."""
    if not path:
        return NO_CONTRACTS
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ContractsError(f"{path}: cannot read the contracts file ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ContractsError(f"{path}: not TOML ({error})") from None
    contracts = parse_contracts(data, origin=path)
    if known_users is not None:
        for item in contracts.instrument:
            if item.user not in known_users:
                raise ContractsError(f"{path}: instrument {item.id!r}: user: no user (load) {item.user!r}")
    return contracts

"""A center's tie lines with neighbouring regions, as data (TOML): who it is, its key, its neighbours
(whom it trusts, where it pushes) and each tie (the branch of its topology, both ends, which neighbour).

```toml
[ties]
center_id = "hf"
private_key_file = "/etc/carbonflow/hf-ties.key"   # or private_key = "base64 of the Ed25519 seed"
interval_s = 900
losses = "receiving"
default_import_intensity_g_per_kwh = 581.0         # a neighbour late and nothing known of it
outbox_path = "/var/lib/carbonflow/ties-outbox.db"

[[ties.neighbours]]
id = "wh"
url = "https://wh.center.example"                   # empty: we do not push, it pulls or we wait
public_key = "base64 of wh's 32-byte Ed25519 public key"

[[ties.ties]]
id = "L120"                 # the branch id in this center's topology (the same at the neighbour)
local_bus = "S017"
neighbour = "wh"
neighbour_bus = "S041"
```
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from carbonflow.center.cascade.config import _raw, load_signing_key
from carbonflow.messages.base import ID_PATTERN, error_line


class TieError(ValueError):
    """A tie configuration or a neighbour's document that does not fit (one line, names the record)."""


class NeighbourConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    region: str = ""  # informative: the neighbour's region path
    url: str = ""  # base URL of the neighbour's API; empty: nothing is pushed to it
    public_key: str

    @model_validator(mode="after")
    def _key(self) -> NeighbourConfig:
        _raw(self.public_key, f"neighbour {self.id}: public_key")
        return self

    def verifying_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(_raw(self.public_key, f"neighbour {self.id}: public_key"))


class TieConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    local_bus: str = Field(min_length=1)
    neighbour: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    neighbour_bus: str = Field(min_length=1)


class TiesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    center_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    private_key: str | None = None
    private_key_file: str | None = None
    interval_s: int = Field(default=900, gt=0)
    losses: Literal["receiving", "consumer"] = "receiving"
    # a neighbour late and no value of it known within last_known_max_age_s: this intensity
    default_import_intensity_g_per_kwh: float = Field(default=581.0, ge=0)
    last_known_max_age_s: float = Field(default=86_400.0, ge=0)
    # an arrived value this far from the one an interval used: the interval is metered again
    remeter_threshold_g_per_kwh: float = Field(default=1e-9, ge=0)
    remeter_threshold_mw: float = Field(default=1e-9, ge=0)
    max_clock_skew_s: float = Field(default=120.0, ge=0)  # a document ending later than now + this: refused
    outbox_path: str = "ties-outbox.db"
    outbox_durable: bool = True
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    ca_file: str | None = None
    neighbours: list[NeighbourConfig] = Field(default_factory=list)
    ties: list[TieConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> TiesConfig:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of private_key and private_key_file")
        if self.private_key is not None:
            _raw(self.private_key, "private_key")
        ids = [n.id for n in self.neighbours]
        if len(set(ids)) != len(ids) or self.center_id in ids:
            raise ValueError("neighbours: ids must be unique and differ from center_id")
        tie_ids = [t.id for t in self.ties]
        if len(set(tie_ids)) != len(tie_ids):
            raise ValueError("ties: ids must be unique")
        for tie in self.ties:
            if tie.neighbour not in ids:
                raise ValueError(f"tie {tie.id}: neighbour {tie.neighbour} is not configured")
        return self

    def signing_key(self) -> Ed25519PrivateKey:
        return load_signing_key(self.private_key, self.private_key_file)

    def neighbour(self, neighbour_id: str) -> NeighbourConfig | None:
        return next((n for n in self.neighbours if n.id == neighbour_id), None)

    def ties_of(self, neighbour_id: str) -> list[TieConfig]:
        return [t for t in self.ties if t.neighbour == neighbour_id]

    def check_topology(self, topology: Mapping[str, Any]) -> None:
        """Every tie is a branch of the topology joining its two buses; else one :class:`TieError` line."""
        branches = {str(b["id"]): b for b in topology.get("branches", [])}
        for tie in self.ties:
            branch = branches.get(tie.id)
            if branch is None:
                raise TieError(f"tie {tie.id}: no branch {tie.id!r} in the topology")
            ends = {str(branch["from_bus"]), str(branch["to_bus"])}
            if ends != {tie.local_bus, tie.neighbour_bus}:
                raise TieError(
                    f"tie {tie.id}: branch joins {' and '.join(sorted(ends))}, "
                    f"not {tie.local_bus} and {tie.neighbour_bus}"
                )

    @classmethod
    def load(cls, path: str | Path) -> TiesConfig:
        """From a TOML file (a ``[ties]`` table, or the table's keys at the top); one line on error."""
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise TieError(f"{path}: {error}") from None
        data = data.get("ties", data) if isinstance(data.get("ties"), dict) else data
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise TieError(error_line(f"{path}: ties", data, error)) from None

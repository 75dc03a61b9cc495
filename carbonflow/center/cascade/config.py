"""A center's place in the cascade, as data (TOML): who it is, its key, its peers and whom it trusts.

```toml
[cascade]
center_id = "hf"
region = "AH/HF"
level = "city"
private_key = "base64 of the 32-byte Ed25519 seed"   # or private_key_file = "hf.key"
interval_s = 900
losses = "receiving"
outbox_path = "hf-cascade-outbox.db"

[[cascade.peers]]
id = "ah"
region = "AH"
level = "province"
direction = "upper"
url = "https://ah.example:8000"
public_key = "base64 of the peer's 32-byte Ed25519 public key"
previous_public_keys = []   # its keys before a rotation, trusted until it has moved to the new one
```
"""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from carbonflow.center.cascade.split import CascadeError
from carbonflow.messages.base import ID_PATTERN, error_line

Level = Literal["province", "city", "county"]


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def load_signing_key(private_key: str | None, private_key_file: str | None) -> Ed25519PrivateKey:
    """A center's Ed25519 key, given inline (base64 seed) or in a file."""
    text = private_key if private_key is not None else Path(str(private_key_file)).read_text("ascii")
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "private_key"))


def private_key_text(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization as s

    raw = key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization as s

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)).decode("ascii")


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes (Ed25519), got {len(raw)}")
    return raw


class PeerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    region: str = Field(min_length=1)
    level: Level
    direction: Literal["upper", "lower"]
    url: str = ""  # base URL of the peer's API; empty: nothing is sent (it sends to us)
    public_key: str
    # the peer's keys before a rotation, still trusted while it moves to the new one (docs/cascade.md)
    previous_public_keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _key(self) -> PeerConfig:
        self.verifying_keys()
        return self

    def verifying_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(_raw(self.public_key, f"peer {self.id}: public_key"))

    def verifying_keys(self) -> list[Ed25519PublicKey]:
        """The current key, then each previous one: a message signed by any of them is the peer's."""
        previous = [
            Ed25519PublicKey.from_public_bytes(_raw(key, f"peer {self.id}: previous_public_keys[{n}]"))
            for n, key in enumerate(self.previous_public_keys)
        ]
        return [self.verifying_key(), *previous]


class CascadeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    center_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    region: str = Field(min_length=1)
    level: Level
    private_key: str | None = None
    private_key_file: str | None = None
    interval_s: int = Field(default=900, gt=0)
    losses: Literal["receiving", "consumer"] = "receiving"
    outbox_path: str = "cascade-outbox.db"
    outbox_durable: bool = True  # fsync each queued message (survives a power cut, not only a crash)
    # the region's balance may stay open by this share of its generation + imports: metered data keeps
    # the residual of its meters (the demo's devices: < 1e-4); exact data closes to 1e-6
    balance_share: float = Field(default=1e-6, ge=0)
    max_clock_skew_s: float = Field(default=120.0, ge=0)  # an interval ending later than now + this: refused
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    ca_file: str | None = None  # https:// peers: the CA that signed their certificates (default: system CAs)
    peers: list[PeerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> CascadeConfig:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of private_key and private_key_file")
        uppers = [p for p in self.peers if p.direction == "upper"]
        if len(uppers) > 1:
            raise ValueError(f"peers: at most one upper center, got {', '.join(p.id for p in uppers)}")
        ids = [p.id for p in self.peers]
        if len(set(ids)) != len(ids) or self.center_id in ids:
            raise ValueError("peers: ids must be unique and differ from center_id")
        for peer in self.peers:
            inside = peer.region.startswith(self.region + "/")
            above = self.region.startswith(peer.region + "/")
            if (peer.direction == "lower" and not inside) or (peer.direction == "upper" and not above):
                raise ValueError(
                    f"peer {peer.id}: region {peer.region} is not {peer.direction} of {self.region}"
                )
        return self

    def signing_key(self) -> Ed25519PrivateKey:
        return load_signing_key(self.private_key, self.private_key_file)

    @property
    def upper(self) -> PeerConfig | None:
        return next((p for p in self.peers if p.direction == "upper"), None)

    @property
    def lowers(self) -> list[PeerConfig]:
        return [p for p in self.peers if p.direction == "lower"]

    def peer(self, peer_id: str) -> PeerConfig | None:
        return next((p for p in self.peers if p.id == peer_id), None)

    @classmethod
    def load(cls, path: str | Path) -> CascadeConfig:
        """From a TOML file (a ``[cascade]`` table, or the table's keys at the top); one line on error."""
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CascadeError(f"{path}: {error}") from None
        data = data.get("cascade", data)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise CascadeError(error_line(f"{path}: cascade", data, error)) from None

"""The center's checkpoint signing key (Ed25519), as files: ``carbonflow audit keygen`` writes them, the
center makes one on first start when none exists (docs/tamper-evidence.md).

Private key file: one line, base64 of the 32-byte seed, mode 0600 (created so — never world-readable,
not even for an instant).  Public key file (``<key>.pub``): base64 of the 32-byte public key, one per
line — the current key first, then keys retired by ``keygen --rotate`` (their checkpoints stay
verifiable); it is what an auditor passes to ``carbonflow audit verify --public-key``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import make_url

from carbonflow.center.store.checkpoints import public_key_text

DEFAULT_KEY_FILE = "carbonflow-audit.key"


class AuditKeyError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key; the message names the file."""


def _key_lines(path: Path, what: str) -> list[str]:
    try:
        lines = path.read_text(encoding="ascii").split()
    except FileNotFoundError:
        raise AuditKeyError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AuditKeyError(f"{path}: cannot read the {what} ({error})") from None
    if not lines:
        raise AuditKeyError(f"{path}: not an Ed25519 {what} (one line of base64, 32 bytes)")
    return lines


def _raw32(path: Path, what: str, text: str | None = None) -> bytes:
    if text is None:
        lines = _key_lines(path, what)
        if len(lines) != 1:
            raise AuditKeyError(f"{path}: not an Ed25519 {what} (one line of base64, 32 bytes)")
        text = lines[0]
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise AuditKeyError(f"{path}: not an Ed25519 {what} (one line of base64, 32 bytes)")
    return raw


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw32(Path(path), "private key"))


def load_public_keys(path: str | Path) -> list[Ed25519PublicKey]:
    """Every key of a public key file: the current one, then the retired ones."""
    path = Path(path)
    return [
        Ed25519PublicKey.from_public_bytes(_raw32(path, "public key", line))
        for line in _key_lines(path, "public key")
    ]


def public_key_path(path: str | Path) -> Path:
    return Path(f"{path}.pub")


def write_key(path: str | Path, *, overwrite: bool = False, rotate: bool = False) -> Ed25519PrivateKey:
    """A new key in ``path`` (0600) and its public half in ``path.pub``; ``rotate`` replaces an existing
    key and keeps the public halves of the old ones in ``path.pub`` after the new one, so checkpoints
    signed before the rotation stay verifiable with that one file."""
    path = Path(path)
    retired: list[str] = []
    if rotate:
        if not path.exists():
            raise AuditKeyError(f"{path}: no key to rotate (make one with keygen)")
        old_public = public_key_text(load_private_key(path))
        pub = public_key_path(path)
        retired = [old_public] + [
            line for line in (_key_lines(pub, "public key") if pub.exists() else []) if line != old_public
        ]
        overwrite = True
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise AuditKeyError(
            f"{path}: a key file exists already (keep it, or replace it with --force)"
        ) from None
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(base64.b64encode(seed).decode("ascii") + "\n")
    os.chmod(path, 0o600)  # an existing file replaced with --force keeps its old mode otherwise
    public_key_path(path).write_text("\n".join([public_key_text(key), *retired]) + "\n", encoding="ascii")
    return key


def key_file(settings: Any) -> Path:
    """``audit_key_file``, else ``carbonflow-audit.key`` next to an SQLite database (else here)."""
    if settings.audit_key_file:
        return Path(settings.audit_key_file)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / DEFAULT_KEY_FILE
    return Path(DEFAULT_KEY_FILE)


def signing_key(settings: Any) -> Ed25519PrivateKey:
    """The center's checkpoint key, made on first start."""
    path = key_file(settings)
    return load_private_key(path) if path.exists() else write_key(path)

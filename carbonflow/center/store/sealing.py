"""Secrets at rest: sealed (Fernet: AES-128-CBC + HMAC-SHA256) under keys given by the environment.

``CARBONFLOW_SECRETS_KEY`` holds one or more Fernet keys separated by commas (or
``CARBONFLOW_SECRETS_KEY_FILE`` names a file with one key per line): the **first** seals, every one
unseals, so the key itself rotates without downtime — put the new key first, keep the old one after it,
run ``carbonflow center secrets rewrap``, then drop the old key.  A sealed value is stored as
``fernet:<token>``; a value without the prefix is a clear one (a database from before sealing, or a
center run without a key), read as is and sealed by ``rewrap``.

The keys are read from the environment at the center's edge (its process), never from the database:
whoever copies the database alone gets tokens, not secrets.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from carbonflow.center.store.errors import StoreError

__all__ = [
    "SEALED_PREFIX",
    "SECRETS_KEY_ENV",
    "SECRETS_KEY_FILE_ENV",
    "SecretsKeyError",
    "is_sealed",
    "new_secrets_key",
    "reseal",
    "seal",
    "sealing_configured",
    "unseal",
]

SECRETS_KEY_ENV = "CARBONFLOW_SECRETS_KEY"
SECRETS_KEY_FILE_ENV = "CARBONFLOW_SECRETS_KEY_FILE"
SEALED_PREFIX = "fernet:"


class SecretsKeyError(StoreError):
    """The secrets key is missing, malformed, or does not open a sealed secret."""


def new_secrets_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _key_text() -> str:
    text = os.environ.get(SECRETS_KEY_ENV, "").strip()
    if text:
        return text
    path = os.environ.get(SECRETS_KEY_FILE_ENV, "").strip()
    if not path:
        return ""
    try:
        return ",".join(Path(path).read_text("ascii").split())
    except (OSError, UnicodeDecodeError) as error:
        raise SecretsKeyError(f"{SECRETS_KEY_FILE_ENV}={path}: cannot read the key: {error}") from None


@lru_cache(maxsize=8)
def _box(key_text: str) -> MultiFernet | None:
    keys = [key.strip() for key in key_text.split(",") if key.strip()]
    if not keys:
        return None
    boxes = []
    for position, key in enumerate(keys, 1):
        try:
            boxes.append(Fernet(key))
        except ValueError:
            raise SecretsKeyError(
                f"secrets key {position}: not a Fernet key (32 url-safe base64 bytes; "
                "`carbonflow center secrets keygen` makes one)"
            ) from None
    return MultiFernet(boxes)


def _current_box() -> MultiFernet | None:
    return _box(_key_text())


def sealing_configured() -> bool:
    return _current_box() is not None


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def seal(secret: str) -> str:
    """The secret as stored: sealed under the first key, or clear when no key is configured."""
    box = _current_box()
    if box is None:
        return secret
    return SEALED_PREFIX + box.encrypt(secret.encode("utf-8")).decode("ascii")


def unseal(stored: str, what: str) -> str:
    """The clear secret of a stored value; ``what`` names its owner in the error."""
    if not is_sealed(stored):
        return stored
    box = _current_box()
    if box is None:
        raise SecretsKeyError(
            f"{what}: sealed at rest but neither {SECRETS_KEY_ENV} nor {SECRETS_KEY_FILE_ENV} is set"
        )
    try:
        return box.decrypt(stored[len(SEALED_PREFIX) :].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretsKeyError(f"{what}: sealed under a key not among the configured secrets keys") from None


def reseal(stored: str, what: str) -> str:
    """The stored value sealed under the current first key (``rewrap``)."""
    if _current_box() is None:
        raise SecretsKeyError(f"no secrets key: set {SECRETS_KEY_ENV} or {SECRETS_KEY_FILE_ENV} first")
    return seal(unseal(stored, what))

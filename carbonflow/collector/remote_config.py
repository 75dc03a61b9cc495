"""Configuration pushed by the center: fetch a version, validate it, write it atomically.

On a ``reload_config`` command with ``params = {"version": "7", "url": "/api/v1/collectors/C1/config/7"}``
the collector GETs the URL (relative URLs are resolved against its HTTP center URL; the request is
signed like every collector request: HMAC of the path), validates the TOML with the same loader as a
local file (:func:`carbonflow.collector.config.config_from_dict`), refuses a file for another
collector or of another version, keeps the current file as ``<name>.previous`` and replaces the file
atomically (temporary file in the same folder, fsync, ``os.replace``) — a crash leaves either the old
or the new file, never half of one.  Only then does the usual reload read it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from carbonflow.collector.config import LoadedConfig, config_from_dict
from carbonflow.messages.c4 import sign
from carbonflow.messages.collector_config import ConfigError

SIGNATURE_HEADER = "X-Carbonflow-Signature"


def config_url(config: LoadedConfig, version: str, url: str | None) -> str:
    url = url or f"/api/v1/collectors/{config.id}/config/{version}"
    if urlsplit(url).scheme in ("http", "https"):
        return url
    if config.center.transport != "http":
        raise ConfigError(f"configuration {version}: a relative URL {url!r} needs an HTTP(S) center URL")
    return urljoin(config.center.url + "/", url.lstrip("/"))


async def fetch_config_text(config: LoadedConfig, version: str, url: str | None = None) -> str:
    target = config_url(config, version, url)
    path = urlsplit(target).path
    headers = {SIGNATURE_HEADER: sign(path.encode("utf-8"), config.secret_bytes)}
    try:
        verify = config.tls_context if config.tls_context is not None else True  # the center's own CA
        async with httpx.AsyncClient(timeout=config.center.request_timeout_s, verify=verify) as client:
            response = await client.get(target, headers=headers)
    except httpx.HTTPError as error:
        raise OSError(f"configuration {version}: GET {path}: {type(error).__name__}: {error}") from None
    if response.status_code != 200:
        raise ConfigError(
            f"configuration {version}: GET {path}: HTTP {response.status_code}: {response.text[:200]}"
        )
    return response.text


def validate_config_text(text: str, version: str, current: LoadedConfig, path: Path) -> LoadedConfig:
    origin = f"{path.name} version {version}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{origin}: TOML syntax: {error}") from None
    config = config_from_dict(data, origin, path.resolve().parent)
    config.secret_bytes  # noqa: B018 - a missing secret file is found now, before anything is written
    config.tls_context  # noqa: B018 - so is a missing or bad TLS file (the collector would lose its center)
    if config.id != current.id:
        raise ConfigError(f"{origin}: is for collector {config.id!r}, this is {current.id!r}")
    if config.config_version != version:
        raise ConfigError(f"{origin}: says config_version {config.config_version!r}, expected {version!r}")
    return config


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``; the old file is kept as ``<name>.previous``."""
    path = Path(path)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".previous"))
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def install_pushed_config(
    current: LoadedConfig, path: Path, version: str, url: str | None = None
) -> LoadedConfig:
    text = await fetch_config_text(current, version, url)
    config = validate_config_text(text, version, current, path)
    write_atomically(path, text)
    return config

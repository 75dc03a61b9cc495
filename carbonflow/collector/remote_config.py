"""Configuration pushed by the center: fetch a version, validate it, write it atomically.

On a ``reload_config`` command with ``params = {"version": "7", "url": "/api/v1/collectors/C1/config/7",
"text": "..."}`` the collector takes the text that came inside the center's signed command (over HTTP
polling and over MQTT alike).  Without a text (an older center) it GETs the URL — only a path on its
own center: a relative path under
``/api/v1/collectors/{its id}/config/``, resolved against its HTTP center URL, or an absolute URL to that
very scheme, host and port; anything else (another host, another endpoint) is refused without a request
(the signed request must not be sent, nor the configuration taken, from anywhere else).  The request is
signed like every collector request; the answer must carry the center's fresh signature of the
collector id, version and text (:class:`~carbonflow.collector.from_center.FromCenter`), else nothing is
written.  Then it validates the TOML with the same loader as a local file
(:func:`carbonflow.collector.config.config_from_dict`), refuses a file for another collector or of
another version, keeps the current file as ``<name>.previous`` and replaces the file
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
from carbonflow.collector.from_center import FromCenter
from carbonflow.messages.collector_config import ConfigError
from carbonflow.messages.signing import config_body, request_headers


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower() or None, port


def config_url(config: LoadedConfig, version: str, url: str | None) -> str:
    """The absolute URL to fetch, or ConfigError when ``url`` is not a configuration path of this
    collector on its own center."""
    url = url or f"/api/v1/collectors/{config.id}/config/{version}"
    parts = urlsplit(url)
    if config.center.transport != "http":
        raise ConfigError(f"configuration {version}: fetching {url!r} needs an HTTP(S) center URL")
    if (parts.scheme or parts.netloc) and _origin(url) != _origin(config.center.url):
        raise ConfigError(
            f"configuration {version}: refused to fetch {url!r}: not on this collector's center "
            f"{config.center.url}"
        )
    if not parts.path.startswith(f"/api/v1/collectors/{config.id}/config/") or ".." in parts.path:
        raise ConfigError(f"configuration {version}: refused to fetch {url!r}: not a configuration path")
    target = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    return urljoin(config.center.url + "/", target)


async def fetch_config_text(config: LoadedConfig, version: str, url: str | None = None) -> str:
    target = config_url(config, version, url)
    parts = urlsplit(target)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = request_headers(config.secret_bytes, "GET", path)
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
    # a fetch is our own request: a fresh guard per fetch suffices (signature and window), since an
    # old answer of the same version would be the same text
    body = config_body(config.id, version, response.text)
    if not FromCenter(config.secret_bytes).config_ok(body, response.headers, f"configuration {version}"):
        raise ConfigError(f"configuration {version}: not signed by the center (or not fresh): ignored")
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
    current: LoadedConfig, path: Path, version: str, url: str | None = None, text: str | None = None
) -> LoadedConfig:
    """``text`` came inside a command whose center signature was checked (FromCenter.command): taken as
    is; without it the version is fetched from the own center (HTTP only)."""
    if text is None:
        text = await fetch_config_text(current, version, url)
    config = validate_config_text(text, version, current, path)
    write_atomically(path, text)
    return config

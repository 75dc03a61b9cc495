"""Loading the collector's configuration file (the model is :mod:`carbonflow.messages.collector_config`).

What only the collector resolves lives here: relative paths against the file's folder, the secret file,
and Modbus register maps (built-in name, a map JSON next to the file, or the inline table) turned into
codec :class:`RegisterMap` objects whose point names the configuration's points must use.
:func:`load_config` turns any problem into one :class:`ConfigError` line, e.g.
``collector.toml: device 'EM-U01' (devices[3]): points[1].oad: OAD 'zz' must be 8 hex digits``.
"""

from __future__ import annotations

import json
import ssl
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field

from carbonflow.delivery.tls import TlsError, client_context
from carbonflow.messages.collector_config import CollectorConfig, ConfigError, DeviceConfig
from carbonflow.protocols.errors import ProtocolError
from carbonflow.protocols.modbus.registers import RegisterMap, builtin_map, register_map_from_dict


class LoadedConfig(CollectorConfig):
    """A configuration as this collector loaded it: the contract plus where it came from."""

    # where the file was (relative paths resolve against it); not part of the file
    base_dir: Path = Field(default=Path("."), exclude=True)
    origin: str = Field(default="<config>", exclude=True)

    @cached_property
    def secret_bytes(self) -> bytes:
        if self.secret is not None:
            return self.secret.encode("utf-8")
        path = self.resolve(self.secret_file or "")
        try:
            text = path.read_text("utf-8").strip()
        except OSError as error:
            raise ConfigError(f"{self.origin}: secret_file {path}: {error.strerror or error}") from None
        if len(text) < 8:
            raise ConfigError(f"{self.origin}: secret_file {path}: the secret must have 8 characters or more")
        return text.encode("utf-8")

    @cached_property
    def tls_context(self) -> ssl.SSLContext | None:
        """The context of an https:// or mqtts:// center (files resolved against the file's folder);
        None for plain http:// or mqtt://.  An unusable file is one ConfigError line."""
        center = self.center
        if not center.tls:
            return None
        files = [
            None if f is None else self.resolve(f)
            for f in (center.ca_file, center.cert_file, center.key_file)
        ]
        try:
            return client_context(*files)
        except TlsError as error:
            raise ConfigError(f"{self.origin}: center: {error}") from None

    @property
    def outbox_path(self) -> Path:
        return self.resolve(self.outbox.path)

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def register_map(self, device: DeviceConfig) -> RegisterMap:
        """The register map of a Modbus device (inline, a JSON file next to the config, or built-in)."""
        if device.register_map is not None:
            data = device.register_map.model_dump(mode="json")
            return register_map_from_dict(data, origin=f"device {device.id} register_map")
        model = device.model or ""
        if model.endswith(".json"):
            path = self.resolve(model)
            try:
                return register_map_from_dict(json.loads(path.read_text("utf-8")), origin=str(path))
            except (OSError, ValueError) as error:
                raise ConfigError(f"{self.origin}: device {device.id!r}: model: {error}") from None
        return builtin_map(model)


def config_from_dict(data: Any, origin: str = "<config>", base_dir: Path | None = None) -> LoadedConfig:
    config = LoadedConfig.from_document(data, origin)
    config.origin = origin
    config.base_dir = base_dir or Path(".")
    for device in config.devices:
        if device.protocol == "modbus-tcp":
            _check_registers(config, device)
    return config


def _check_registers(config: LoadedConfig, device: DeviceConfig) -> None:
    where = f"{config.origin}: device {device.id!r}"
    try:
        register_map = config.register_map(device)
    except ProtocolError as error:
        field = "register_map" if device.register_map is not None else "model"
        raise ConfigError(f"{where}: {field}: {error}") from None
    names = {p.name for p in register_map.points}
    for index, point in enumerate(device.points):
        if point.register_name not in names:
            raise ConfigError(
                f"{where}: points[{index}].register: {point.register_name!r} is not in register map "
                f"{register_map.model} (has: {', '.join(sorted(names))})"
            )


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a collector configuration file; any problem -> one ConfigError line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: {(error.strerror or str(error)).lower()}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax: {error}") from None
    config = config_from_dict(data, str(path), path.resolve().parent)
    config.secret_bytes  # noqa: B018 - a missing secret file is a configuration error, found now
    config.tls_context  # noqa: B018 - so is a missing or bad TLS file
    return config

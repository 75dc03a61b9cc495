"""Configuration of the collector's site cameras (``[[cameras]]``) and image forwarding (``[images]``).

A camera is fetched like a real IP camera's snapshot URL (``http://endpoint/path``) every ``period_s``
seconds; the images go to a bounded outbox table and on to the center (see docs/collector.md,
"Cameras").  Example::

    [images]
    period_s = 60            # default snapshot period of every camera
    max_bytes = 268435456    # outbox bound for images; beyond it the oldest are dropped (counted)

    [[cameras]]
    id = "CAM-P01"
    protocol = "camera-http"
    endpoint = "127.0.0.1:28080"
    path = "/snapshot.png"
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    protocol: Literal["camera-http"] = "camera-http"
    endpoint: str  # host:port
    path: str = "/snapshot.png"
    scheme: Literal["http", "https"] = "http"
    period_s: float | None = Field(default=None, gt=0)  # default: [images] period_s
    timeout_s: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"{value!r}: the snapshot path must start with '/' and have no spaces")
        return value

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}{self.path}"


class ImagesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period_s: float = Field(default=60.0, gt=0)  # snapshot period of a camera without its own
    timeout_s: float = Field(default=10.0, gt=0)  # per snapshot request
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)  # image outbox bound (oldest dropped)
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # a bigger snapshot is refused

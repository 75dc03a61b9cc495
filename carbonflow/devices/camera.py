"""A simulated site camera at a plant's metering point, served like an IP camera's snapshot URL.

``GET /snapshot.png`` (the path is configurable; ``/snapshot`` answers too) returns a PNG rendered on
request: what the camera sees of the metering cabinet — the plant's name, each unit's current output
(MW) and on-grid energy register (kWh) read from the camera's value source, and the camera's own
timestamp overlay in local time (its :class:`~carbonflow.devices.base.DeviceClock`, shown in the
camera's zone, default Asia/Shanghai), as real cameras burn in their OSD clock.

The server is a :class:`~carbonflow.devices.base.DeviceServer` speaking minimal HTTP/1.1 (keep-alive,
``Content-Length``; GET and HEAD), so the faults work as for every device: ``offline`` closes every
connection at once, ``delay_s`` answers late, ``silent`` never answers, ``garbage`` sends random bytes,
``bad_checksum`` breaks the PNG's last CRC.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

from carbonflow.devices.base import Connection, DeviceClock, DeviceServer, Faults, StaticSource, ValueSource
from carbonflow.devices.snapshot import Canvas

MAX_REQUEST_BYTES = 16_384
WIDTH, HEIGHT = 640, 360
BACKGROUND, CABINET, LCD, INK, OSD = (
    (28, 33, 38),
    (70, 78, 86),
    (160, 190, 140),
    (20, 32, 20),
    (255, 255, 255),
)
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass(frozen=True)
class CameraView:
    """One unit's display as the camera sees it: a label and the source quantities of its output (MW)
    and on-grid energy register (kWh); None = not shown."""

    label: str
    power: str | None = None
    energy: str | None = None


class SiteCamera(DeviceServer):
    protocol = "camera-http"

    def __init__(
        self,
        name: str,
        views: Iterable[CameraView] = (),
        source: ValueSource | None = None,
        *,
        title: str = "",
        path: str = "/snapshot.png",
        zone: str | tzinfo = "Asia/Shanghai",
        size: tuple[int, int] = (WIDTH, HEIGHT),
        faults: Faults | None = None,
        clock: DeviceClock | None = None,
    ) -> None:
        super().__init__(name, faults, clock)
        self.views = list(views)
        self.source: ValueSource = source or StaticSource()
        self.title = title or name
        self.path = path if path.startswith("/") else "/" + path
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        self.size = size
        self.snapshots_served = 0

    # -- the picture --------------------------------------------------------------------------------
    def _value(self, quantity: str | None, t: datetime) -> float | None:
        if quantity is None:
            return None
        with contextlib.suppress(KeyError, LookupError, ValueError, ArithmeticError):
            value = float(self.source.read(quantity, t))
            return value if math.isfinite(value) else None
        return None

    def snapshot(self, at: datetime | None = None) -> bytes:
        """The PNG the camera shows now (device clock), or at device time ``at``."""
        t = at or self.clock.now()
        width, height = self.size
        canvas = Canvas(width, height, BACKGROUND)
        canvas.rect(30, 52, width - 60, height - 84, CABINET)
        canvas.rect(50, 66, width - 100, height - 112, LCD)
        canvas.text(64, 78, self.title[:30], INK, scale=3)
        canvas.text(64, 110, f"{'UNIT':<8}{'OUTPUT MW':>10}  {'ON-GRID KWH':>14}", INK, scale=2)
        y = 134
        for view in self.views[: max(0, (height - 170) // 22)]:
            power = self._value(view.power, t)
            energy = self._value(view.energy, t)
            p_text = "----" if power is None else f"{power:.1f}"
            e_text = (
                "-------"
                if energy is None
                else str(Decimal(repr(energy)).quantize(Decimal("0.01"), rounding=ROUND_FLOOR))
            )
            canvas.text(64, y, f"{view.label[:8]:<8}{p_text:>10}  {e_text:>14}", INK, scale=2)
            y += 22
        local = t.astimezone(self.zone)
        osd = local.strftime("%Y-%m-%d %H:%M:%S") + " " + _offset(local)
        canvas.rect(8, 8, Canvas.text_width(osd, 2) + 12, 26, (0, 0, 0))
        canvas.text(14, 14, osd, OSD, scale=2)
        label = self.name[:24]
        canvas.text(width - Canvas.text_width(label, 2) - 14, height - 26, label, OSD, scale=2)
        return canvas.png()

    # -- HTTP -----------------------------------------------------------------------------------------
    def split_frames(self, buffer: bytearray) -> list[bytes]:
        requests = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_REQUEST_BYTES:
                    buffer.clear()
                    requests.append(b"")  # answered with 400
                return requests
            head = bytes(buffer[: end + 4])
            length = _content_length(head)
            if len(buffer) < end + 4 + length:
                return requests
            del buffer[: end + 4 + length]
            requests.append(head)

    async def handle(self, frame: bytes, connection: Connection) -> bytes:
        try:
            method, target, _version = frame.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return self._response(400, b"bad request\n")
        path = target.split("?", 1)[0]
        if path not in (self.path, "/snapshot"):
            return self._response(404, b"no such path; the snapshot is at " + self.path.encode() + b"\n")
        if method not in ("GET", "HEAD"):
            return self._response(405, b"GET only\n", extra={"Allow": "GET, HEAD"})
        body = self.snapshot()
        self.snapshots_served += 1
        return self._response(200, body, "image/png", head_only=method == "HEAD")

    def _response(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        head_only: bool = False,
        extra: dict[str, str] | None = None,
    ) -> bytes:
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Date": email.utils.format_datetime(self.clock.now(), usegmt=True),
            "Server": "carbonflow-camera",
            **(extra or {}),
        }
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        return head.encode("ascii") + b"\r\n" + (b"" if head_only else body)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            with contextlib.suppress(ValueError):
                return max(0, min(int(value.strip()), MAX_REQUEST_BYTES))
    return 0


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    minutes = 0 if offset is None else int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

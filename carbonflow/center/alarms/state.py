"""The field state the alarm rules look at, kept in memory: devices, collectors, cameras' latest images.

Loaded from the store when the engine starts (so a restarted center judges the same rows), then kept up
to date by the events that change those rows — never read again per evaluation:

* a collector message stored by ingest (a batch of readings and statuses, or a live status): the rows
  of the devices it named and of its collector are read back after the commit (``changed``);
* a site image stored (``image_stored``): the camera's latest image time;
* anything else (a caller that cannot say what changed): ``reload`` reads every row again.

Rows read back by id pick up a device or collector registered while the center runs (by
``carbonflow center load`` in another process) as soon as one of its messages is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from carbonflow.center.alarms.checks import CAMERA_KINDS
from carbonflow.center.store import Store
from carbonflow.center.store import alarms as alarm_store


class FieldState:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}
        self._collectors: dict[str, dict[str, Any]] = {}
        self._images: dict[str, datetime] = {}  # camera -> its latest image's time
        self._views: dict[str, Any] = {}  # lists and maps handed to evaluations, until the next change
        self.reload()

    def reload(self) -> None:
        """Every device and collector row and every camera's latest image, from the store."""
        devices = alarm_store.device_states(self.store)
        collectors = alarm_store.collector_states(self.store)
        cameras = [d["id"] for d in devices if d.get("kind") in CAMERA_KINDS]
        images = alarm_store.latest_images(self.store, cameras)
        with self._lock:
            self._devices = {d["id"]: d for d in devices}
            self._collectors = {c["id"]: c for c in collectors}
            self._images = images
            self._views = {}

    def changed(self, devices: Iterable[str] = (), collectors: Iterable[str] = ()) -> None:
        """Rows the store has just changed (after the commit): read back by id.  Read and applied under
        the lock, so a slower reader never puts an older row over a newer one."""
        device_ids, collector_ids = sorted(set(devices)), sorted(set(collectors))
        with self._lock:
            if device_ids:
                rows = {d["id"]: d for d in alarm_store.device_states(self.store, device_ids)}
                for device_id in device_ids:
                    row = rows.get(device_id)
                    if row is None:
                        self._devices.pop(device_id, None)
                        continue
                    if row.get("kind") in CAMERA_KINDS and device_id not in self._devices:
                        self._images.update(alarm_store.latest_images(self.store, [device_id]))
                    self._devices[device_id] = row
            if collector_ids:
                rows = {c["id"]: c for c in alarm_store.collector_states(self.store, collector_ids)}
                for collector_id in collector_ids:
                    if collector_id in rows:
                        self._collectors[collector_id] = rows[collector_id]
                    else:
                        self._collectors.pop(collector_id, None)
            if device_ids or collector_ids:
                self._views = {}

    def image_stored(self, camera_id: str, ts: datetime) -> None:
        with self._lock:
            held = self._images.get(camera_id)
            if held is None or ts > held:
                self._images[camera_id] = ts
                self._views = {}

    # -- what an evaluation sees (the same shapes as the store's queries) ---------------------------
    def devices(self) -> list[dict[str, Any]]:
        return self._view("devices", lambda: list(self._devices.values()))

    def device_region(self) -> dict[str, str | None]:
        return self._view("region", lambda: {i: d.get("region") for i, d in self._devices.items()})

    def collectors(self) -> list[dict[str, Any]]:
        return self._view("collectors", lambda: list(self._collectors.values()))

    def camera_images(self) -> dict[str, datetime]:
        """The latest image of each camera device (``store.alarms.latest_images`` of the cameras)."""

        def cameras() -> dict[str, datetime]:
            kinds = {i: d.get("kind") for i, d in self._devices.items()}
            return {c: ts for c, ts in self._images.items() if kinds.get(c) in CAMERA_KINDS}

        return self._view("images", cameras)

    def _view(self, name: str, build: Any) -> Any:
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = build()
            return view

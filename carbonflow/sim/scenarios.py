"""Scriptable faults and scenarios as data: a list of events with a start and an end in simulated time.

A scenario file (JSON: a list, or ``{"events": [...]}``; TOML: ``[[events]]`` tables) holds events::

    [[events]]
    kind = "offline"          # offline | drift | clock_skew | stuck | tamper | camera_offline | line_outage
    device = "EM-U07"         # a device id of the device map; shell wildcards allowed ("MB-S07*")
    start = "00:10"           # after the simulation start: seconds, "H:MM[:SS]", "90s", "15m", "2h", "1d",
    end = "00:20"             #   or an ISO 8601 time with a zone; no end = until the end of the run

Kinds and their parameters:

* ``offline`` (``device``): the device refuses connections and drops open ones (``Faults.offline``);
* ``drift`` (``device``, ``percent``, optional ``point``): the device measures ``percent`` % high
  (negative: low); instantaneous values are scaled, counters advance ``percent`` % faster in the window
  (the excess stays in the register afterwards, as with a real meter);
* ``clock_skew`` (``device``, ``seconds``): the device's clock runs ``seconds`` ahead (negative: behind)
  until the window ends or a time sync sets the clock; measurements are unaffected (time tags are not);
* ``stuck`` (``device``, optional ``point``): values freeze at their value at the start; counters stop
  counting (the energy of the window is lost);
* ``tamper`` (``device``, ``offset``, optional ``point``): the register shows ``offset`` (device units)
  more than it should during the window;
* ``camera_offline`` (``camera``, a camera id or shell pattern): the site camera drops every connection
  (:class:`CameraFaults`), as ``offline`` does for a meter;
* ``line_outage`` (``branch``): the branch is out of service in the AC power flow for every interval
  that starts inside the window (the topology changes; the branch carries 0).

``point`` names a point of the device: its id in the device map (``"EM-U07/1"``), the truth quantity
(``"import_energy_kwh"``) or the device's own quantity (``"p_kw"``); without it the event hits every
value of the device.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandapower as pp

from carbonflow.devices.base import DeviceClock, Faults
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.powerflow import FastPowerFlow, PandapowerFlow, power_flow_for
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

DEVICE_KINDS = ("offline", "drift", "clock_skew", "stuck", "tamper")
REQUIRED = {
    "offline": ("device",),
    "drift": ("device", "percent"),
    "clock_skew": ("device", "seconds"),
    "stuck": ("device",),
    "tamper": ("device", "offset"),
    "camera_offline": ("camera",),
    "line_outage": ("branch",),
}
_FIELDS = {
    "kind",
    "start",
    "end",
    "device",
    "point",
    "percent",
    "seconds",
    "offset",
    "branch",
    "camera",
    "note",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd])\s*$")
_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ScenarioError(SimulationError):
    """A scenario file or event that cannot be used; the message names the event."""


@dataclass(frozen=True)
class Event:
    kind: str
    start: datetime
    end: datetime | None = None  # None: until the end of the run
    device: str | None = None  # device id or shell pattern
    point: str | None = None
    percent: float = 0.0
    seconds: float = 0.0
    offset: float = 0.0
    branch: str | None = None
    camera: str | None = None
    note: str = ""
    number: int = 0  # position in the scenario file (1-based), for messages

    def active(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def hits_device(self, device_id: str) -> bool:
        return self.device is not None and fnmatch.fnmatchcase(device_id, self.device)

    def hits_point(self, names: Iterable[str]) -> bool:
        return self.point is None or any(fnmatch.fnmatchcase(name, self.point) for name in names)

    def describe(self) -> str:
        target = self.device or self.branch or self.camera or "?"
        detail = {
            "drift": f" {self.percent:+g} %",
            "clock_skew": f" {self.seconds:+g} s",
            "tamper": f" offset {self.offset:+g}",
        }.get(self.kind, "")
        point = f" point {self.point}" if self.point else ""
        return f"{self.kind} {target}{point}{detail}" + (f" ({self.note})" if self.note else "")


def parse_time(value: Any, start: datetime, what: str) -> datetime:
    """Seconds after ``start`` (number), ``"H:MM[:SS]"``, ``"90s"``/``"15m"``/``"2h"``/``"1d"``, or an
    ISO 8601 time with a zone (TOML datetimes too)."""
    if isinstance(value, bool):
        raise ScenarioError(f"{what}: not a time: {value!r}")
    if isinstance(value, int | float):
        return start + timedelta(seconds=float(value))
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if match := _DURATION.match(text):
            return start + timedelta(seconds=float(match[1]) * _UNITS_S[match[2]])
        if re.fullmatch(r"\d+:\d{1,2}(:\d{1,2}(\.\d+)?)?", text):
            parts = [float(p) for p in text.split(":")]
            return start + timedelta(
                hours=parts[0], minutes=parts[1], seconds=parts[2] if len(parts) > 2 else 0
            )
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(f"{what}: not a time: {value!r}") from None
    else:
        raise ScenarioError(f"{what}: not a time: {value!r}")
    if moment.tzinfo is None:
        raise ScenarioError(f"{what}: give the time zone of {value!r}")
    return moment


def _number(record: Mapping[str, Any], key: str, what: str) -> float:
    value = record.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{what}: {key} must be a number, got {value!r}")
    return float(value)


def event_from_dict(record: Mapping[str, Any], start: datetime, number: int = 1) -> Event:
    what = f"scenario event {number}"
    if not isinstance(record, Mapping):
        raise ScenarioError(f"{what}: expected a table/object, got {type(record).__name__}")
    kind = record.get("kind")
    if kind not in REQUIRED:
        raise ScenarioError(f"{what}: kind must be one of {', '.join(REQUIRED)}, got {kind!r}")
    what = f"{what} ({kind})"
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise ScenarioError(f"{what}: unknown field(s) {', '.join(unknown)}")
    missing = [key for key in REQUIRED[kind] if record.get(key) in (None, "")]
    if missing:
        raise ScenarioError(f"{what}: missing {', '.join(missing)}")
    begin = parse_time(record.get("start", 0), start, f"{what} start")
    end = None if record.get("end") is None else parse_time(record["end"], start, f"{what} end")
    if end is not None and end <= begin:
        raise ScenarioError(f"{what}: end {end.isoformat()} is not after start {begin.isoformat()}")
    percent = _number(record, "percent", what)
    if kind == "drift" and percent <= -100:
        raise ScenarioError(f"{what}: percent must be above -100")
    text = {
        key: None if record.get(key) is None else str(record[key]) for key in ("device", "point", "branch")
    }
    return Event(
        kind,
        begin,
        end,
        text["device"],
        text["point"],
        percent,
        _number(record, "seconds", what),
        _number(record, "offset", what),
        text["branch"],
        None if record.get("camera") is None else str(record["camera"]),
        str(record.get("note", "")),
        number,
    )


class Scenario:
    """Events of one run, looked up by device, branch, camera and time."""

    def __init__(self, events: Sequence[Event] = ()) -> None:
        self.events = tuple(sorted(events, key=lambda e: e.start))

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def from_data(cls, data: Any, start: datetime) -> Scenario:
        if isinstance(data, Mapping):
            data = data.get("events", data.get("event"))
        if not isinstance(data, list):
            raise ScenarioError("scenario: expected a list of events (JSON list, or 'events' / [[events]])")
        return cls([event_from_dict(record, start, k + 1) for k, record in enumerate(data)])

    @classmethod
    def load(cls, path: str | Path, start: datetime) -> Scenario:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise ScenarioError(f"{path}: {error}") from None
        return cls.from_data(data, start)

    def for_device(self, device_id: str) -> list[Event]:
        return [e for e in self.events if e.kind in DEVICE_KINDS and e.hits_device(device_id)]

    def outages_at(self, t: datetime) -> frozenset[str]:
        return frozenset(e.branch for e in self.events if e.kind == "line_outage" and e.active(t))  # type: ignore[misc]

    def cameras_offline(self, t: datetime) -> frozenset[str]:
        return frozenset(e.camera for e in self.events if e.kind == "camera_offline" and e.active(t))  # type: ignore[misc]

    def check(self, device_ids: Iterable[str] | None = None, branch_ids: Iterable[str] | None = None) -> None:
        """Every device pattern must match a device, every branch must exist (those given)."""
        devices = None if device_ids is None else list(device_ids)
        branches = None if branch_ids is None else set(branch_ids)
        for event in self.events:
            number = event.number
            if event.device is not None and devices is not None and not any(map(event.hits_device, devices)):
                raise ScenarioError(f"scenario event {number} ({event.kind}): no device {event.device!r}")
            if event.branch is not None and branches is not None and event.branch not in branches:
                raise ScenarioError(f"scenario event {number} ({event.kind}): no branch {event.branch!r}")

    def transitions(self, after: datetime, until: datetime) -> list[tuple[datetime, str]]:
        """Starts and ends in ``(after, until]``, as journal lines."""
        lines = []
        for event in self.events:
            if after < event.start <= until:
                lines.append((event.start, f"start {event.describe()}"))
            if event.end is not None and after < event.end <= until:
                lines.append((event.end, f"end {event.describe()}"))
        return sorted(lines, key=lambda line: line[0])


# -- applying events to devices (no change to the device classes) ------------------------------------
class ScenarioFaults(Faults):
    """:class:`Faults` whose ``offline`` also follows the scenario's offline windows in simulated time."""

    def __init__(self, now_fn, events: Iterable[Event] = ()) -> None:
        self._now_fn = now_fn
        self._windows = [e for e in events if e.kind == "offline"]
        self._manual_offline = False
        super().__init__()

    @property  # type: ignore[override]
    def offline(self) -> bool:
        if self._manual_offline:
            return True
        now = self._now_fn()
        return any(window.active(now) for window in self._windows)

    @offline.setter
    def offline(self, value: bool) -> None:
        self._manual_offline = bool(value)


class CameraFaults(ScenarioFaults):
    """Offline in the scenario's ``offline`` windows of the device and its ``camera_offline`` windows
    (whose ``camera`` is an id or a shell pattern, like ``"CAM-P0*"``)."""

    def __init__(self, now_fn, events: Iterable[Event], scenario: Scenario | None, camera_id: str) -> None:
        self._scenario, self._camera_id = scenario, camera_id
        super().__init__(now_fn, events)

    @property  # type: ignore[override]
    def offline(self) -> bool:
        if ScenarioFaults.offline.fget(self):  # type: ignore[attr-defined]
            return True
        if self._scenario is None:
            return False
        patterns = self._scenario.cameras_offline(self._now_fn())
        return any(fnmatch.fnmatchcase(self._camera_id, pattern) for pattern in patterns)

    @offline.setter
    def offline(self, value: bool) -> None:
        ScenarioFaults.offline.fset(self, value)  # type: ignore[attr-defined]


class ScenarioClock(DeviceClock):
    """A device clock on simulated time with the scenario's skews; a time sync cures a running skew."""

    def __init__(self, now_fn, events: Iterable[Event] = ()) -> None:
        super().__init__(now_fn=now_fn, _epoch=now_fn())
        self.skews = [e for e in events if e.kind == "clock_skew"]
        self.synced_at: datetime | None = None

    def skew_s(self, true_now: datetime) -> float:
        return sum(
            e.seconds
            for e in self.skews
            if e.active(true_now) and (self.synced_at is None or self.synced_at < e.start)
        )

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.skew_s(self.now_fn()))

    def set(self, device_time: datetime) -> None:
        super().set(device_time)
        self.synced_at = self.now_fn()


class ScenarioSource:
    """A ValueSource wrapper applying drift, stuck values and tampering (times are simulated true time).

    ``aliases`` gives each device quantity the other names an event's ``point`` may use; ``counters``
    names the quantities that are accumulating registers (drift/stuck act on their increments).
    """

    def __init__(
        self,
        inner,
        events: Iterable[Event],
        aliases: Mapping[str, Iterable[str]] | None = None,
        counters: Iterable[str] = (),
    ) -> None:
        self.inner = inner
        self.events = [e for e in events if e.kind in ("drift", "stuck", "tamper")]
        self.aliases = {q: {q, *names} for q, names in (aliases or {}).items()}
        self.counters = set(counters)
        self._by_quantity: dict[str, list[Event]] = {}
        self._memo: dict[tuple[int, str], float] = {}

    def _events(self, quantity: str) -> list[Event]:
        if quantity not in self._by_quantity:
            names = self.aliases.get(quantity, {quantity})
            self._by_quantity[quantity] = [e for e in self.events if e.hits_point(names)]
        return self._by_quantity[quantity]

    def _at(self, event: Event, quantity: str) -> float:
        key = (id(event), quantity)
        if key not in self._memo:
            self._memo[key] = self.inner.read(quantity, event.start)
        return self._memo[key]

    def prime(self, t: datetime, quantities: Iterable[str]) -> None:
        """Remember the values at the start of every event begun by ``t`` (the feed keeps a limited
        history, so the driver calls this as events start, before a late first read needs them)."""
        for quantity in quantities:
            for event in self._events(quantity):
                if event.start <= t and event.kind in ("drift", "stuck"):
                    with contextlib.suppress(LookupError):  # KeyError is a LookupError
                        self._at(event, quantity)

    def shift(self, quantity: str, t: datetime) -> float:
        """What active ``tamper`` events add to ``quantity`` at ``t`` (included in :meth:`read`): a
        counter shows it on top of its register, which drops back by it when the tampering ends."""
        return sum(e.offset for e in self._events(quantity) if e.kind == "tamper" and e.active(t))

    def read(self, quantity: str, t: datetime) -> float:
        raw = value = self.inner.read(quantity, t)
        if not self.events:
            return value
        counter = quantity in self.counters
        for event in self._events(quantity):
            if t < event.start:
                continue
            if counter and event.kind in ("drift", "stuck"):
                share = event.percent / 100.0 if event.kind == "drift" else -1.0
                upto = t if event.end is None or t < event.end else event.end
                base = raw if upto == t else self.inner.read(quantity, upto)
                value += share * (base - self._at(event, quantity))
            elif event.active(t):
                if event.kind == "drift":
                    value *= 1.0 + event.percent / 100.0
                elif event.kind == "stuck":
                    value = self._at(event, quantity)
                else:
                    value += event.offset
        return value


# -- topology: line outages in the power flow --------------------------------------------------------
class ScenarioSimulation(Simulation):
    """A :class:`Simulation` that takes branches out of service while a ``line_outage`` event is active
    (for every interval whose start lies in the window); the snapshot keeps the branch with 0 flow."""

    def __init__(
        self, net: pp.pandapowerNet, config: SimConfig, scenario: Scenario | None = None, **kwargs: Any
    ) -> None:
        self.method = kwargs.get("method", "auto")
        super().__init__(net, config, **kwargs)
        self.scenario = scenario or Scenario()
        self.branch_rows: dict[str, tuple[str, int]] = {}
        for source, element_id in self.ids.items():
            table, _, index = source.partition(":")
            if table in ("line", "trafo"):
                self.branch_rows[element_id] = (table, int(index))
        self.scenario.check(branch_ids=self.branch_rows)
        self.out_of_service: frozenset[str] = frozenset()

    def interval_start(self, k: int) -> datetime:
        return self.config.interval_end(k) - timedelta(seconds=self.config.interval_s)

    def _solve(self, k: int):
        out = self.scenario.outages_at(self.interval_start(k))
        if out != self.out_of_service:
            self._set_topology(out, k)
        return super()._solve(k)

    def _set_topology(self, out: frozenset[str], k: int) -> None:
        for branch_id in out | self.out_of_service:
            table, index = self.branch_rows[branch_id]
            self.net[table].at[index, "in_service"] = branch_id not in out
        try:
            flow: FastPowerFlow | PandapowerFlow = power_flow_for(self.net, self.method)
        except SimulationError as error:
            names = ", ".join(sorted(out)) or "none"
            raise ScenarioError(f"interval {k}: with branches out of service ({names}): {error}") from None
        self.flow = flow
        self.out_of_service = out

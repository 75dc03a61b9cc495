"""``carbonflow sim serve``: every device of a device map live on localhost, following the simulated grid.

* A :class:`SimClock` runs simulated time at a speed-up (60× = one simulated minute per real second);
  every device clock is a :class:`~carbonflow.sim.scenarios.ScenarioClock` on it, so a collector polling
  in real time sees consistent accelerated values and time tags.
* A :class:`TruthDriver` runs the :class:`~carbonflow.sim.simulation.Simulation` (with the scenario's
  line outages) ahead of the clock, in a worker thread, and publishes each interval to the
  :class:`~carbonflow.sim.truth.TruthFeed` before simulated time reaches it.
* A :class:`DeviceFarm` builds every device of the map (:mod:`carbonflow.sim.bindings`), one asyncio
  TCP server per endpoint (Modbus devices sharing a port sit behind one
  :class:`~carbonflow.devices.modbus_gateway.ModbusGateway`), on the
  map's ports, on consecutive ports from ``base_port``, or on free ports (``base_port=0``); the device
  map with the actual endpoints is what the collector configuration is generated from.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.devices.base import DeviceServer
from carbonflow.devices.modbus_gateway import ModbusGateway
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.sim.bindings import DeviceFactory, SimulatedDevice
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.scenarios import Scenario
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.truth import IntervalTruth, TruthFeed

log = logging.getLogger(__name__)


class SimClock:
    """Simulated time: ``start`` until :meth:`begin`, then ``start + speed × real time elapsed``."""

    def __init__(self, start: datetime, speed: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        if not speed > 0:
            raise SimulationError(f"speed must be positive, got {speed}")
        self.start, self.speed, self._monotonic = start, float(speed), monotonic
        self._real0: float | None = None

    def begin(self) -> None:
        self._real0 = self._monotonic()

    def now(self) -> datetime:
        if self._real0 is None:
            return self.start
        return self.start + timedelta(seconds=(self._monotonic() - self._real0) * self.speed)


class ManualClock:
    """Simulated time set by hand (tests, stepping through a scenario)."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


class TruthDriver:
    """Runs a simulation ahead of a clock and publishes its intervals to a feed."""

    def __init__(
        self,
        simulation: Simulation,
        feed: TruthFeed,
        clock,
        *,
        lookahead_s: float | None = None,
        scenario: Scenario | None = None,
        on_line: Callable[[str], None] | None = None,
        devices: Iterable[SimulatedDevice] = (),
    ) -> None:
        config = simulation.config
        self.simulation, self.feed, self.clock = simulation, feed, clock
        self.interval_s = config.interval_s
        speed = getattr(clock, "speed", 1.0)
        self.lookahead_s = lookahead_s if lookahead_s is not None else max(2 * config.interval_s, 2.0 * speed)
        self.scenario = scenario or Scenario()
        self.on_line = on_line
        self.devices = [d for d in devices if d.events]
        self.start = config.start
        self.end = config.interval_end(config.count - 1)
        self.next_start = config.start  # start of the first interval not yet published
        self.published = 0
        self.count = config.count
        self._intervals = simulation.intervals()
        self._behind_warned = False
        self._journal_at = config.start - timedelta(microseconds=1)
        self._next_report = config.start + timedelta(hours=1)

    @property
    def done(self) -> bool:
        return self.published >= self.count

    def publish_next(self) -> IntervalTruth | None:
        truth = next(self._intervals, None)
        if truth is None:
            self.published = self.count
            return None
        self.feed.publish(truth)
        self.published += 1
        self.next_start = truth.ts
        return truth

    def publish_until(self, t: datetime) -> None:
        """Publish every interval that starts at or before ``t``."""
        while not self.done and self.next_start <= t:
            self.publish_next()

    def finished(self, now: datetime | None = None) -> bool:
        return (now or self.clock.now()) >= self.end

    def tick(self, now: datetime) -> None:
        """Journal scenario transitions and progress up to ``now``; fix scenario baselines."""
        for _when, text in self.scenario.transitions(self._journal_at, now):
            self._say(f"{self.local_text(_when)} scenario: {text}")
        if now > self._journal_at:
            self._journal_at = now
        for device in self.devices:
            device.prime(now)
        if now >= self._next_report:
            self._say(f"{self.local_text(now)} simulated; {self.published}/{self.count} intervals published")
            while self._next_report <= now:
                self._next_report += timedelta(hours=1)
        if not self.done and now > self.next_start and not self._behind_warned:
            self._behind_warned = True
            self._say("warning: the power flow falls behind the clock; lower --speed")

    def local_text(self, t: datetime) -> str:
        """A simulated time as the journal shows it: in the simulation's zone, with its offset."""
        zone = getattr(self.simulation.inputs.config, "zone", None)
        with contextlib.suppress(Exception):  # an unknown zone name: show UTC
            t = t.astimezone(ZoneInfo(zone)) if zone else t
        return t.strftime("%Y-%m-%d %H:%M:%S %z")

    def _say(self, text: str) -> None:
        if self.on_line is not None:
            self.on_line(text)
        else:
            log.info("%s", text)

    async def run(self, stop: asyncio.Event | None = None, tick_s: float = 0.2) -> None:
        """Until the simulated hours end (or ``stop`` is set): stay ``lookahead_s`` ahead of the clock."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            now = self.clock.now()
            target = now + timedelta(seconds=self.lookahead_s)
            if not self.done and self.next_start <= target:
                await asyncio.to_thread(self.publish_until, target)
            self.tick(now)
            if self.finished(now):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)


@dataclass
class Endpoint:
    """One TCP server: a device, or a Modbus gateway in front of several."""

    host: str
    port: int  # as requested by the map; after start: the port bound
    server: DeviceServer
    devices: list[SimulatedDevice] = field(default_factory=list)


class DeviceFarm:
    """Every device of a device map (or the ``only`` ones), built, bound and served."""

    def __init__(
        self,
        device_map: dict[str, Any],
        feed: TruthFeed,
        now_fn: Callable[[], datetime],
        scenario: Scenario | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(device_map, dict) or not isinstance(device_map.get("devices"), list):
            raise SimulationError("device map: expected an object with a 'devices' list")
        self.source_map = device_map
        wanted = None if only is None else set(only)
        entries = [d for d in device_map["devices"] if wanted is None or d.get("id") in wanted]
        if wanted is not None and len(entries) != len(wanted):
            missing = wanted - {d.get("id") for d in entries}
            raise SimulationError(f"device map has no device {', '.join(sorted(missing))}")
        if scenario is not None:
            scenario.check(device_ids=[str(d["id"]) for d in device_map["devices"]])
        factory = DeviceFactory(feed, now_fn, scenario)
        self.devices: dict[str, SimulatedDevice] = {}
        groups: dict[tuple[str, int], list[SimulatedDevice]] = {}
        for entry in entries:
            device = factory.build(entry)
            if device.id in self.devices:
                raise SimulationError(f"device map: device id {device.id} appears twice")
            self.devices[device.id] = device
            endpoint = entry.get("endpoint") or {}
            key = (str(endpoint.get("host", "127.0.0.1")), int(endpoint.get("port", 0)))
            if key[1] == 0:
                key = (key[0], -len(groups) - 1)  # port 0: every such device gets its own free port
            groups.setdefault(key, []).append(device)
        self.endpoints = [self._endpoint(host, port, members) for (host, port), members in groups.items()]
        self._started = False

    @staticmethod
    def _endpoint(host: str, port: int, members: list[SimulatedDevice]) -> Endpoint:
        if len(members) == 1 and members[0].protocol != "modbus-tcp":
            return Endpoint(host, max(port, 0), members[0].server, members)
        if any(m.protocol != "modbus-tcp" for m in members):
            ids = ", ".join(m.id for m in members)
            raise SimulationError(f"devices {ids} share port {port}; only Modbus devices can (a gateway)")
        units: dict[int, ModbusMeter] = {}
        for member in members:
            meter = member.server
            assert isinstance(meter, ModbusMeter)
            if meter.unit_id in units:
                raise SimulationError(f"devices on port {port}: unit id {meter.unit_id} appears twice")
            units[meter.unit_id] = meter
        bus = members[0].entry.get("bus") or members[0].id
        return Endpoint(host, max(port, 0), ModbusGateway(f"GW-{bus}", units), members)

    def device(self, device_id: str) -> SimulatedDevice:
        return self.devices[device_id]

    def endpoint_of(self, device_id: str) -> tuple[str, int]:
        for endpoint in self.endpoints:
            if any(d.id == device_id for d in endpoint.devices):
                return endpoint.host, endpoint.port
        raise KeyError(device_id)

    async def start(self, host: str | None = None, base_port: int | None = None) -> dict[str, Any]:
        """Start every server: on the map's ports (``base_port`` None), on ``base_port + k``, or on free
        ports (``base_port`` 0).  Returns the device map with the endpoints actually bound."""
        try:
            for k, endpoint in enumerate(self.endpoints):
                if host is not None:
                    endpoint.host = host
                wanted = endpoint.port if base_port is None else (base_port + k if base_port else 0)
                try:
                    endpoint.port = await endpoint.server.start(endpoint.host, wanted)
                except OSError as error:
                    raise SimulationError(
                        f"{endpoint.server.name}: cannot listen on {endpoint.host}:{wanted}: {error.strerror}"
                    ) from None
                self._started = True
        except BaseException:
            await self.stop()
            raise
        return self.device_map()

    async def stop(self) -> None:
        await asyncio.gather(*(e.server.stop() for e in self.endpoints), return_exceptions=True)
        self._started = False

    async def __aenter__(self) -> DeviceFarm:
        if not self._started:
            await self.start(base_port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def device_map(self) -> dict[str, Any]:
        """The device map (only the served devices) with each device's actual endpoint."""
        updated = copy.deepcopy(self.source_map)
        where = {d.id: (e.host, e.port) for e in self.endpoints for d in e.devices}
        updated["devices"] = [d for d in updated["devices"] if d.get("id") in where]
        for device in updated["devices"]:
            host, port = where[device["id"]]
            device["endpoint"] = {"host": host, "port": port}
        updated["host"] = self.endpoints[0].host if self.endpoints else updated.get("host", "127.0.0.1")
        return updated

    def lines(self) -> list[str]:
        """One line per device: id, protocol, host:port, address."""
        rows = []
        for endpoint in self.endpoints:
            for device in endpoint.devices:
                where = f"{endpoint.host}:{endpoint.port}"
                rows.append(f"{device.id:<18} {device.protocol:<10} {where:<21} {device.address_text()}")
        return rows

    @property
    def requests_served(self) -> int:
        return sum(e.server.requests_served for e in self.endpoints)


@dataclass
class ServeOptions:
    speed: float = 60.0
    host: str = "127.0.0.1"
    base_port: int | None = None
    device_map_out: str | None = None
    only: list[str] | None = None


async def serve(
    simulation: Simulation,
    device_map: dict[str, Any],
    options: ServeOptions,
    *,
    scenario: Scenario | None = None,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Publish the first intervals, start the devices, print their endpoints, then run the clock until
    the simulated hours end (or ``stop`` is set, or the task is cancelled: Ctrl-C).  Returns figures."""
    config = simulation.config
    feed = TruthFeed(keep=max(64, int(4 * 3600 / config.interval_s)))
    clock = SimClock(config.start, options.speed)
    started = time.perf_counter()
    driver = TruthDriver(simulation, feed, clock, scenario=scenario, on_line=say)
    driver.publish_until(config.start + timedelta(seconds=driver.lookahead_s))
    farm = DeviceFarm(device_map, feed, clock.now, scenario, options.only)
    driver.devices = [d for d in farm.devices.values() if d.events]
    updated = await farm.start(options.host, options.base_port)
    startup_s = time.perf_counter() - started
    try:
        if options.device_map_out:
            text = json.dumps(updated, indent=1, ensure_ascii=False) + "\n"
            Path(options.device_map_out).write_text(text, encoding="utf-8")
        for line in farm.lines():
            say(line)
        hours = config.count * config.interval_s / 3600.0
        say(
            f"{len(farm.devices)} devices on {len(farm.endpoints)} endpoints, started in {startup_s:.2f} s; "
            f"simulating {hours:g} h from {driver.local_text(config.start)} at {options.speed:g}x "
            f"(Ctrl-C to stop)"
        )
        clock.begin()
        await driver.run(stop)
        ended = "simulated hours ended" if driver.finished() else "stopped"
        say(f"{ended}; {farm.requests_served} requests served")
    finally:
        await farm.stop()
    return {
        "devices": len(farm.devices),
        "endpoints": len(farm.endpoints),
        "startup_s": startup_s,
        "published": driver.published,
        "requests_served": farm.requests_served,
    }

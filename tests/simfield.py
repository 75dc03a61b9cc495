"""Helpers for the `sim serve` tests: the reference grid's truth on a hand-set clock, and integrals of it."""

from __future__ import annotations

import copy
import functools
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from carbonflow.collector.clients.errors import RetryPolicy
from carbonflow.sim.device_map import build_device_map
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.scenarios import Scenario, ScenarioSimulation
from carbonflow.sim.serve import ManualClock, TruthDriver
from carbonflow.sim.timeseries import SimConfig
from carbonflow.sim.truth import IntervalTruth, TruthFeed

warnings.filterwarnings("ignore", module="pandapower")

START = SimConfig().start
QUICK = RetryPolicy(timeout_s=1.0, retries=0, backoff_s=0.0)


@functools.lru_cache(maxsize=1)
def grid_and_map():
    net = reference_grid()
    return net, json.loads(json.dumps(build_device_map(net)))


@dataclass
class Field:
    """A simulated run published in full to a feed, with a clock the test moves."""

    feed: TruthFeed
    truths: list[IntervalTruth]
    clock: ManualClock
    device_map: dict
    simulation: ScenarioSimulation

    def at(self, minutes: float) -> datetime:
        """Set the clock ``minutes`` after the start; returns the time."""
        self.clock.set(START + timedelta(minutes=minutes))
        return self.clock.now()

    def entry(self, device_id: str) -> dict:
        return next(d for d in self.device_map["devices"] if d["id"] == device_id)

    def integral(self, kind: str, element_id: str, quantity: str, until: datetime, end: str = "-", sign=1.0):
        """∫ max(sign × quantity, 0) dt in <quantity unit>·h from the start to ``until`` (exact sum)."""
        total = 0.0
        for truth in self.truths:
            begin = truth.ts - timedelta(seconds=truth.interval_s)
            overlap = (min(until, truth.ts) - begin).total_seconds()
            if overlap <= 0:
                break
            value = truth.value(kind, element_id, quantity, end)
            total += max(sign * value, 0.0) * overlap / 3600.0
        return total


def make_field(count: int = 12, scenario: Scenario | None = None, seed: int = 3) -> Field:
    net, device_map = grid_and_map()
    simulation = ScenarioSimulation(net, SimConfig(count=count, seed=seed), scenario, chunk_size=6)
    feed = TruthFeed()
    clock = ManualClock(START)
    driver = TruthDriver(simulation, feed, clock)
    truths = []
    while not driver.done:
        truth = driver.publish_next()
        if truth is not None:
            truths.append(truth)
    return Field(feed, truths, clock, copy.deepcopy(device_map), simulation)


def close_to(value: Decimal, expected: float, tolerance: float) -> bool:
    return abs(float(value) - expected) <= tolerance


def register_ok(register: Decimal, integral: float, resolution: float = 0.01) -> bool:
    """A register floored to ``resolution`` shows ``integral`` (float noise of 1e-6 allowed)."""
    return integral - resolution - 1e-6 < float(register) <= integral + 1e-6

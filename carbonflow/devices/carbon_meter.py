"""The electric-carbon meter's (电碳表) carbon registers: carbon = Σ(Δenergy x the factor in force).

A factor schedule is what the platform downloads (DL/T 698.45 SET of 4120/2 in the default model):
a start time, an interval and one factor per interval.  The factor before the schedule's start is the
one in force when it was downloaded; after its last interval the last factor holds until the next
download.  The register multiplies each interval's energy increment (the energy register at its own
resolution, read at the interval boundaries) by that interval's factor in Decimal arithmetic and shows
the sum floored to its resolution - so a platform that reads the energy register at the same
boundaries computes exactly the same sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from carbonflow.protocols.dlt698.types import Ti, TimeUnit

_TI_UNITS = {
    TimeUnit.SECOND: "seconds",
    TimeUnit.MINUTE: "minutes",
    TimeUnit.HOUR: "hours",
    TimeUnit.DAY: "days",
}


def ti_timedelta(ti: Ti) -> timedelta | None:
    """TI -> timedelta; None for months/years or a zero interval (no fixed length)."""
    unit = _TI_UNITS.get(TimeUnit(ti.unit)) if ti.unit in TimeUnit._value2member_map_ else None
    if unit is None or ti.interval <= 0:
        return None
    return timedelta(**{unit: ti.interval})


@dataclass(frozen=True)
class FactorSchedule:
    """Downloaded factors in engineering units (e.g. kgCO2/kWh); times are the meter's local time."""

    start: datetime
    ti: Ti
    factors: tuple[Decimal, ...]

    @property
    def interval(self) -> timedelta:
        interval = ti_timedelta(self.ti)
        if interval is None:
            raise ValueError(f"interval {self.ti} has no fixed length")
        return interval

    def factor_at(self, local: datetime) -> Decimal | None:
        if local < self.start or not self.factors:
            return None
        index = (local - self.start) // self.interval
        return self.factors[min(index, len(self.factors) - 1)]

    def boundaries(self, after: datetime, until: datetime) -> list[datetime]:
        """The times in (after, until] where the factor in force changes."""
        points = (self.start + k * self.interval for k in range(len(self.factors)))
        return [point for point in points if after < point <= until]


class CarbonRegister:
    """One carbon register driven by one energy register (forward or reverse)."""

    def __init__(
        self,
        energy_kwh: Callable[[datetime], Decimal],
        resolution: Decimal | str = "0.01",
        initial_factor: Decimal | None = None,
        unit_scale: Decimal = Decimal(1),
    ) -> None:
        self._energy = energy_kwh
        self.unit_scale = unit_scale  # energy x factor -> register unit (e.g. 0.001 for gCO2 -> kgCO2)
        self.resolution = Decimal(resolution)
        self.exact = Decimal(0)
        self.schedule: FactorSchedule | None = None
        self._fallback = initial_factor
        self._last: tuple[datetime, datetime, Decimal] | None = None  # (true time, local time, energy)

    def factor_at(self, local: datetime) -> Decimal | None:
        if self.schedule is not None:
            factor = self.schedule.factor_at(local)
            if factor is not None:
                return factor
        return self._fallback

    def download(self, schedule: FactorSchedule, true_time: datetime, local_time: datetime) -> None:
        self.advance(true_time, local_time)
        self._fallback = self.factor_at(local_time)
        self.schedule = schedule

    def advance(self, true_time: datetime, local_time: datetime) -> None:
        """Accumulate up to now, splitting at factor boundaries (mapped from local to true time)."""
        if self._last is None:
            self._last = (true_time, local_time, self._energy(true_time))
            return
        last_true, last_local, last_energy = self._last
        if true_time <= last_true:
            return
        points: list[tuple[datetime, datetime]] = []
        if self.schedule is not None and local_time > last_local:
            span_local, span_true = local_time - last_local, true_time - last_true
            for boundary in self.schedule.boundaries(last_local, local_time):
                points.append((last_true + span_true * ((boundary - last_local) / span_local), boundary))
        points.append((true_time, local_time))
        previous_local, previous_energy = last_local, last_energy
        for point_true, point_local in points:
            energy = self._energy(point_true)
            factor = self.factor_at(previous_local)
            if factor is not None:
                self.exact += (energy - previous_energy) * factor * self.unit_scale
            previous_local, previous_energy = point_local, energy
        self._last = (true_time, local_time, previous_energy)

    def clock_set(self, true_time: datetime, local_time: datetime) -> None:
        """The meter clock was set: energy since the last step still counts at the old factor, and the
        local timeline continues from the new time (a time jump is not a factor interval)."""
        self.advance(true_time, local_time if self._last is None else self._last[1])
        if self._last is not None:
            self._last = (self._last[0], local_time, self._last[2])

    def value(self) -> Decimal:
        return self.exact.quantize(self.resolution, rounding=ROUND_FLOOR)

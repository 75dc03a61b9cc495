"""Readings of points -> one interval's measurements by element quantity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from carbonflow.center.metering.measurements import (
    PointMapping,
    StoredReading,
    measurements_for_interval,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
ENERGY = PointMapping("m1/e", "load", "U01", "import_energy_kwh")
POWER_KW = PointMapping("m1/p", "load", "U01", "p_mw", scale_to_element=Decimal("0.001"))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def r(point: PointMapping, minutes: float, value: str | None, quality: str = "good") -> StoredReading:
    return StoredReading(point.point_id, at(minutes), None if value is None else Decimal(value), quality)


def test_counters_take_the_last_reading_at_or_before_each_boundary_and_samples_inside():
    readings = [
        r(ENERGY, -1, "100.00"), r(ENERGY, 0, "100.50"), r(ENERGY, 7, "101.00"), r(ENERGY, 15, "102.75"),
        r(ENERGY, 16, "103.00"), r(POWER_KW, 0, "1"), r(POWER_KW, 5, "2000"), r(POWER_KW, 15, "3000"),
    ]  # fmt: skip
    data = measurements_for_interval([ENERGY, POWER_KW], readings, at(0), at(15))
    assert data.counters[ENERGY.key] == (Decimal("100.50"), Decimal("102.75"))
    assert data.energy_mwh(*ENERGY.key) == 0.00225
    assert data.instants[POWER_KW.key] == [Decimal("2.000"), Decimal("3.000")]  # the sample at 0 is before
    assert data.mean(*POWER_KW.key) == 2.5


def test_old_invalid_or_backwards_counter_readings_do_not_count():
    too_old = [r(ENERGY, -40, "100"), r(ENERGY, 15, "110")]
    assert ENERGY.key not in measurements_for_interval([ENERGY], too_old, at(0), at(15)).counters
    invalid = [r(ENERGY, 0, "100"), r(ENERGY, 15, "999", quality="invalid"), r(ENERGY, 10, "105")]
    # 105 at minute 10 goes on at its rate since minute 0 (the invalid 999 plays no part)
    assert measurements_for_interval([ENERGY], invalid, at(0), at(15)).counters[ENERGY.key][1] == Decimal(
        "107.5"
    )
    backwards = [r(ENERGY, 0, "100"), r(ENERGY, 15, "90")]  # a meter reset: not an energy
    assert ENERGY.key not in measurements_for_interval([ENERGY], backwards, at(0), at(15)).counters
    missing_value = [r(POWER_KW, 5, None, quality="invalid")]
    assert POWER_KW.key not in measurements_for_interval([POWER_KW], missing_value, at(0), at(15)).instants


def test_counters_are_interpolated_to_the_boundaries_between_unaligned_polls():
    readings = [r(ENERGY, -2, "100"), r(ENERGY, 3, "105"), r(ENERGY, 13, "115"), r(ENERGY, 18, "120")]
    data = measurements_for_interval([ENERGY], readings, at(0), at(15))
    assert data.counters[ENERGY.key] == (Decimal("102"), Decimal("117"))  # 15 kWh in the 15 minutes
    # with nothing after the end yet, the register goes on at the rate of its last two readings (1 kWh
    # a minute from minute 3 to 13): not held at 115, the lowest value it can have, which would read low
    data = measurements_for_interval([ENERGY], readings[:3], at(0), at(15))
    assert data.counters[ENERGY.key] == (Decimal("102"), Decimal("117"))
    assert (
        data.estimated[ENERGY.key].startswith("interpolated") and "extrapolated" in data.estimated[ENERGY.key]
    )
    stopped = [r(ENERGY, -2, "100"), r(ENERGY, 3, "105"), r(ENERGY, 13, "105")]  # no energy lately: held
    assert measurements_for_interval([ENERGY], stopped, at(0), at(15)).counters[ENERGY.key][1] == 105
    # nothing read before the start (the collector has just started): back at the rate of the first two
    data = measurements_for_interval([ENERGY], readings[1:], at(0), at(15))
    assert data.counters[ENERGY.key] == (Decimal("102"), Decimal("117"))
    assert "extrapolated back" in data.estimated[ENERGY.key]
    assert ENERGY.key not in measurements_for_interval([ENERGY], readings[1:2], at(0), at(15)).counters


def test_a_sample_read_across_a_boundary_counts_only_when_no_surer_one_came():
    readings = [r(POWER_KW, 0.02, "9000", "estimated"), r(POWER_KW, 5, "2000"), r(POWER_KW, 10, "2000")]
    data = measurements_for_interval([POWER_KW], readings, at(0), at(15))
    assert data.mean(*POWER_KW.key) == 2.0 and POWER_KW.key not in data.estimated
    only_unsure = measurements_for_interval([POWER_KW], readings[:1], at(0), at(15))
    assert (
        only_unsure.mean(*POWER_KW.key) == 9.0 and only_unsure.estimated[POWER_KW.key] == "estimated readings"
    )


def test_only_the_quantities_asked_for_are_turned_into_measurements():
    voltage = PointMapping("m1/u", "bus", "B01", "u_kv")
    readings = [r(ENERGY, 0, "100"), r(ENERGY, 15, "101.5"), r(ENERGY, 16, "101.5"), r(ENERGY, 17, "101.4")]
    readings += [r(POWER_KW, 5, "2000"), r(voltage, 5, "10.4"), r(voltage, 10, "10.5")]
    points = [voltage, ENERGY, POWER_KW]
    every = measurements_for_interval(points, readings, at(0), at(15))
    assert voltage.key in every.instants and ENERGY.key not in every.counters  # ran backwards at 17
    some = measurements_for_interval(
        points, readings, at(0), at(15), quantities={"import_energy_kwh", "p_mw"}
    )
    assert voltage.key not in some.instants and voltage.key not in some.uncertainty
    assert some.instants == {POWER_KW.key: every.instants[POWER_KW.key]} and some.counters == every.counters
    assert some.uncertainty == {POWER_KW.key: every.uncertainty[POWER_KW.key]}

"""Readings by column (issue 17 §4): the counters found read at both boundaries with numpy are what the
per-point code finds, decimals are compared exactly where floats cannot tell them apart, and readings as
the store's text rows measure the same as typed ones."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import select

from carbonflow.center.alarms.engine import _last_per_point
from carbonflow.center.metering.assemble import ASSEMBLED_QUANTITIES
from carbonflow.center.metering.columns import ReadingColumns
from carbonflow.center.metering.measurements import (
    PointIndex,
    PointMapping,
    StoredReading,
    _bulk_samples,
    _counter_over_interval,
    _sample_uncertainty,
    measurements_for_interval,
)
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.metering.window import _stored_runs
from carbonflow.center.store import ingest_batch, register_devices, upsert_collector, upsert_topology
from carbonflow.center.store.schema import Reading
from carbonflow.center.store.types import sqlite_ts, utc
from carbonflow.center.topology import topology_rows
from carbonflow.messages.c4 import Batch
from carbonflow.messages.c4 import Reading as SentReading
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SPAN = timedelta(minutes=15)
ENERGY = PointMapping("m1/e", "load", "U01", "import_energy_kwh")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_register_that_runs_back_by_less_than_a_float_can_tell_does_not_count():
    # 1e-19 kWh apart: the same float, a register that ran backwards all the same (a reset is not energy)
    back = ["100.0000000000000000002", "100.0000000000000000001", "110"]
    readings = [StoredReading(ENERGY.point_id, at(m), Decimal(v)) for m, v in zip((-10, 0, 15), back)]
    assert float(back[0]) == float(back[1])
    assert ENERGY.key not in measurements_for_interval([ENERGY], readings, at(0), at(15)).counters
    forward = [StoredReading(*reading[:2], Decimal(v)) for reading, v in zip(readings, reversed(back[:2]))]
    data = measurements_for_interval([ENERGY], [*forward, readings[2]], at(0), at(15))
    assert data.counters[ENERGY.key] == (Decimal("100.0000000000000000002"), Decimal("110"))


def random_readings(seed: int, n_points: int) -> tuple[list[PointMapping], list[StoredReading]]:
    """Counters read at the boundaries or between them, some twice at one time, some going backwards, some
    estimated, invalid or without a value; power samples with their qualities."""
    rng = random.Random(seed)
    points, readings = [], []
    for i in range(n_points):
        counter = i % 3 != 0
        quantity = "export_energy_kwh" if counter else "p_mw"
        point = PointMapping(f"d{i}/{quantity}", "generator", f"G{i % (n_points - n_points // 10)}", quantity,
                             scale_to_element=Decimal(rng.choice(["1", "0.001", "40"])))  # fmt: skip
        points.append(point)
        value = Decimal(rng.randint(0, 10**6)) / 100
        for minute in sorted(rng.sample([-15, -10, -5, 0, 0, 3, 7, 15, 15, 20, 30], rng.randint(0, 6))):
            value += Decimal(rng.choice([0, 0, 1, 25, -3])) / 100 if counter else Decimal(rng.randint(-9, 99))
            quality = rng.choice(["good"] * 8 + ["estimated", "stale", "invalid"])
            stored = None if rng.random() < 0.03 else value
            readings.append(StoredReading(point.point_id, at(minute), stored, quality))
    rng.shuffle(readings)
    return points, readings


def test_counters_read_at_both_boundaries_are_what_the_per_point_code_finds():
    points, readings = random_readings(seed=17, n_points=600)
    data = measurements_for_interval(points, readings, at(0), at(15))
    counted = at_both = 0
    for point in points:
        if not point.is_counter or sum(p.key == point.key for p in points) > 1:
            continue
        series = sorted(
            (r for r in readings if r.point_id == point.point_id and r.value is not None),
            key=lambda r: r.ts,
        )
        series = [r for r in series if r.quality != "invalid"]
        found = _counter_over_interval(point, series, at(0), at(15), SPAN, (at(-15), at(30)))
        if found is None:
            assert point.key not in data.counters
            continue
        counted += 1
        at_both += {at(0), at(15)} <= {r.ts for r in series}
        assert data.counters[point.key] == found[0]
        assert data.uncertainty[point.key] == found[1]
        assert data.estimated.get(point.key) == found[2]
    assert counted > 50 and at_both > 20


def test_the_stores_text_rows_measure_as_typed_readings_and_iterate_as_them():
    points, readings = random_readings(seed=5, n_points=300)
    rows = [
        (r.point_id, sqlite_ts(r.ts), None if r.value is None else str(r.value), r.quality) for r in readings
    ]
    columns = ReadingColumns(rows, lambda ts: utc(datetime.fromisoformat(ts)))
    assert list(columns) == readings
    index = PointIndex(points, {"export_energy_kwh", "p_mw"})
    typed = measurements_for_interval(points, readings, at(0), at(15))
    assert measurements_for_interval(index, columns, at(0), at(15), quantities=index.quantities) == typed
    assert typed.counters and typed.instants and typed.estimated


def test_the_alarms_last_reading_per_point_is_found_by_column_as_by_reading():
    """The alarm engine's view of an interval (last reading with a value per point, the first of equal
    times) taken from the columns equals the one taken reading by reading."""
    _points, readings = random_readings(seed=23, n_points=400)
    rows = [
        (r.point_id, sqlite_ts(r.ts), None if r.value is None else str(r.value), r.quality) for r in readings
    ]
    columns = ReadingColumns(rows, lambda ts: utc(datetime.fromisoformat(ts)))
    for start, end in ((at(0), at(15)), (at(-15), at(0)), (at(3), at(7)), (at(30), at(45))):
        expected = _last_per_point(list(readings), start, end)
        found = _last_per_point(columns, start, end)
        assert found == expected
        assert all(type(value) is Decimal for _ts, value in found.values())
    assert len(_last_per_point(columns, at(0), at(15))) > 100


def test_a_window_read_by_column_is_the_typed_query_and_measures_as_it_on_both_backends(store):  # noqa: F811
    net = reference_grid()
    topology, device_map = grid_document(net), build_device_map(net)
    upsert_topology(store, topology_rows(topology))
    upsert_collector(store, "col-1", "secret")
    register_devices(store, device_map["devices"], collector_id="col-1")
    rng = random.Random(3)
    points = [point for device in device_map["devices"] for point in device["points"]]
    for minutes in (-15, 0, 15, 30):
        qualities = ["good"] * 6 + ["estimated", "invalid"]
        sent = [
            SentReading(point=point["id"], ts=at(minutes), value=f"{minutes + rng.randint(0, 99) / 7:.3f}",
                        quality=rng.choice(qualities))
            for point in points
        ]  # fmt: skip
        batch = Batch(collector_id="col-1", batch_id=uuid.uuid4().hex, seq=0, created_at=T0, readings=sent)
        ingest_batch(store, batch)
    service = MeteringService(store, topology, 900)
    columns = service.readings_for(at(15))
    assert isinstance(columns, ReadingColumns)
    with store.read() as connection:
        typed = [
            StoredReading(*row)
            for row in connection.execute(
                select(Reading.point_id, Reading.ts, Reading.value, Reading.quality).where(
                    Reading.ts >= at(-15), Reading.ts <= at(30)
                )
            )
        ]
    assert sorted(columns, key=repr) == sorted(typed, key=repr) and len(typed) == 4 * len(points)
    measured = measurements_for_interval(
        service._point_index(), columns, at(0), at(15), 900, 86400, ASSEMBLED_QUANTITIES
    )
    assert measured == measurements_for_interval(
        service.points, typed, at(0), at(15), 900, 86400, ASSEMBLED_QUANTITIES
    )
    assert measured.counters and measured.instants and measured.estimated


def test_the_surest_of_the_points_measuring_one_quantity_counts():
    """Measured before estimated, then the smaller 1σ, then the earlier point: each point measured alone,
    the choice made here, equals the measurements of all points together (chosen for all at once)."""
    points, readings = random_readings(seed=29, n_points=900)
    together = measurements_for_interval(points, readings, at(0), at(15))
    best: dict = {}
    for order, point in enumerate(points):
        alone = measurements_for_interval([point], readings, at(0), at(15))
        if point.key not in alone.uncertainty:
            continue
        why = alone.estimated.get(point.key)
        rank = (why is not None, alone.uncertainty[point.key], order)
        if point.key not in best or rank < best[point.key][0]:
            best[point.key] = (rank, alone)
    shared = sum(1 for point in points if sum(p.key == point.key for p in points) > 1)
    assert shared > 100 and len(best) == len(together.uncertainty)
    for key, (_rank, alone) in best.items():
        assert together.uncertainty[key] == alone.uncertainty[key]
        assert together.estimated.get(key) == alone.estimated.get(key)
        assert together.counters.get(key) == alone.counters.get(key)
        assert together.instants.get(key) == alone.instants.get(key)


def test_runs_of_one_time_stamp_take_the_indexes_of_an_earlier_run_with_the_same_points_only():
    series_of = {"a": 0, "b": 1, "c": 2}
    runs = [
        ("t1", ["a", "b", "x"], ["1", "2", "3"], ["good"] * 3),
        ("t2", ["a", "b", "x"], ["1", "2", "3"], ["good"] * 3),  # the same points: the same indexes
        ("t3", ["b", "a", "c"], ["1", "2", "3"], ["good"] * 3),  # another order: looked up
        ("t4", ["a", "b"], ["1", "2"], ["good"] * 2),
    ]
    columns = ReadingColumns.of_runs(runs, lambda ts: at(int(ts[1:])))
    assert columns.series_indexes(series_of).tolist() == [0, 1, -1, 0, 1, -1, 1, 0, 2, 0, 1]
    assert columns.ts_us.tolist() == sorted(columns.ts_us.tolist()) and len(columns) == 11
    assert columns[6] == StoredReading("b", at(3), Decimal("1"), "good")
    assert columns.usable().all()
    # the point ids to check against the known points: a run repeating an earlier one's left out
    assert list(columns.distinct_point_id_runs()) == [["a", "b", "x"], ["b", "a", "c"], ["a", "b"]]
    # runs of earlier windows with their indexes: an equal run takes them, another is looked up and kept
    known = [(["a", "b"], np.array([7, 8]))]
    later = ReadingColumns.of_runs(
        [("t5", ["a", "b"], ["1", "2"], ["good"] * 2), ("t6", ["b", "c"], ["1", "2"], ["good"] * 2)],
        lambda ts: at(int(ts[1:])),
    )
    assert later.series_indexes(series_of, known).tolist() == [7, 8, 1, 2]
    assert [run for run, _indexes in known] == [["a", "b"], ["b", "c"]]


def _reference_grid_registered(target) -> tuple[dict, list[dict]]:
    """The reference grid's topology stored and its devices registered to collector ``col-1``: the
    topology and every point of the device map."""
    net = reference_grid()
    topology, device_map = grid_document(net), build_device_map(net)
    upsert_topology(target, topology_rows(topology))
    upsert_collector(target, "col-1", "secret")
    register_devices(target, device_map["devices"], collector_id="col-1")
    return topology, [point for device in device_map["devices"] for point in device["points"]]


def test_a_window_that_cannot_be_read_as_runs_is_read_as_rows_with_the_same_readings(store):  # noqa: F811
    """A reading without a value (group_concat would skip it): the window is read row by row instead."""
    topology, points = _reference_grid_registered(store)
    for minutes in (-15, 0, 15, 30):
        sent = [
            SentReading(point=p["id"], ts=at(minutes), value=f"{minutes + i / 8:.3f}")
            for i, p in enumerate(points)
        ]
        batch = Batch(collector_id="col-1", batch_id=uuid.uuid4().hex, seq=0, created_at=T0, readings=sent)
        ingest_batch(store, batch)
    service = MeteringService(store, topology, 900)
    by_time = lambda reading: (reading.point_id, reading.ts)  # noqa: E731
    as_runs = sorted(service.readings_for(at(15)), key=by_time)
    emptied = (points[5]["id"], at(0))
    with store.write() as connection:  # no ingest does this (first write wins): a row written otherwise
        connection.execute(
            Reading.__table__.update()
            .where(Reading.point_id == emptied[0], Reading.ts == emptied[1])
            .values(value=None)
        )
    # a new service: a service's cached runs (window.RunCache) hold for readings never updated in place
    as_rows = sorted(MeteringService(store, topology, 900).readings_for(at(15)), key=by_time)
    expected = [r._replace(value=None) if by_time(r) == emptied else r for r in as_runs]
    assert as_rows == expected and len(as_rows) == 4 * len(points)
    assert sum(r.value is None for r in as_rows) == 1


def test_a_window_read_after_another_reuses_its_unchanged_runs_and_rereads_the_others(store):  # noqa: F811
    """Consecutive windows share boundaries: the runs of a time stamp whose count and largest rowid have not
    changed are taken from the last window read, the others read again — the same readings, in the same
    order, as a service reading the window afresh; a late reading at a cached time stamp is seen."""
    if store.engine.dialect.name != "sqlite":
        return  # runs are SQLite's (PostgreSQL reads rows)
    topology, points = _reference_grid_registered(store)

    def send(minutes: int, chosen: list) -> None:
        sent = [
            SentReading(point=p["id"], ts=at(minutes), value=f"{minutes + i / 8:.3f}")
            for i, p in enumerate(chosen)
        ]
        batch = Batch(collector_id="col-1", batch_id=uuid.uuid4().hex, seq=0, created_at=T0, readings=sent)
        ingest_batch(store, batch)

    for minutes in (-15, 0, 15, 30, 45):
        send(minutes, points[:-3])
    service = MeteringService(store, topology, 900)
    fresh = lambda end: list(MeteringService(store, topology, 900).readings_for(end))  # noqa: E731
    for end in (at(15), at(30), at(30)):
        assert list(service.readings_for(end)) == fresh(end)
    assert set(service._runs.runs) == {sqlite_ts(at(m)) for m in (0, 15, 30, 45)}
    send(15, points[-3:])  # late, at a time stamp the cache holds
    late = list(service.readings_for(at(30)))
    assert late == fresh(at(30))
    assert {(r.point_id, r.ts) for r in late} >= {(p["id"], at(15)) for p in points[-3:]}


def test_the_window_runs_are_all_usable_only_without_an_invalid_reading_or_a_missing_value():
    good = ["good", "good"]
    runs = [
        ("2026-06-01T08:00:00.000000Z", ["a", "b"], ["1", "2"], good),
        ("2026-06-01T08:15:00.000000Z", ["a", "b"], ["3", "4"], good),  # the same list: looked at once
    ]
    assert _stored_runs(runs, []).all_usable
    held = [("c", "2026-06-01T07:00:00.000000Z", "5", "good")]
    assert _stored_runs(runs, held).usable().tolist() == [True] * 5
    for rows, expected in (
        ([("c", "2026-06-01T07:00:00.000000Z", None, "good")], [True] * 4 + [False]),
        ([("c", "2026-06-01T07:00:00.000000Z", "5", "invalid")], [True] * 4 + [False]),
    ):
        columns = _stored_runs(runs, rows)
        assert not columns.all_usable and columns.usable().tolist() == expected
    invalid = [*runs, ("2026-06-01T08:30:00.000000Z", ["a", "b"], ["5", "6"], ["good", "invalid"])]
    columns = _stored_runs(invalid, [])
    assert not columns.all_usable and columns.usable().tolist() == [True] * 5 + [False]


def test_one_sample_in_bulk_has_the_uncertainty_the_per_point_code_gives_it():
    """``_bulk_samples`` takes ``float(v)`` for ``float(sum([v]))``: the same float for any product of the
    context's precision — long, signed, zero of either sign, tiny and huge exponents, NaN."""
    rng = random.Random(7)
    stored = ["-0", "0E-9", "-0.000", "NaN", "1E+40", "-7.5E-30", "123456789012345678901234567890.123456789"]
    stored += [f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 20)}f}" for _ in range(300)]
    scales = [Decimal(1), Decimal(1) / Decimal("0.3"), Decimal("-0.001"), Decimal(1) / Decimal(7)]
    for k, text in enumerate(stored):
        scale, mpe, resolution = scales[k % 4], 0.005 * (k % 3), 0.01 * (k % 5)
        point = (k, 0, ("load", f"L{k}", "p_mw", "-"), scale, mpe, resolution, 0.0, True)
        [(_orders, _keys, values, us, _whys, _alone, _target)] = _bulk_samples(
            [point], {0: [Decimal(text)]}, {}
        )
        expected = _sample_uncertainty(mpe, resolution, [Decimal(text) * scale])
        assert values == [[Decimal(text) * scale]] or text == "NaN"
        assert repr(us[0]) == repr(expected), text

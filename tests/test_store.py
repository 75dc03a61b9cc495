"""The center's store, the same tests on SQLite (tmp file) and PostgreSQL (fresh schema per test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import func, inspect, select

from carbonflow.center.store import (
    BatchConflictError,
    InvalidBatchError,
    Store,
    UnknownCollectorError,
    aggregate,
    aggregate_totals,
    count_readings,
    ingest_batch,
    interval_from_document,
    interval_results,
    list_commands,
    list_conflicts,
    purge_older_than,
    queue_command,
    readings_for_element,
    readings_for_point,
    record_command_result,
    register_devices,
    requeue_unanswered,
    save_interval,
    take_queued_commands,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.store.partitions import existing_partitions
from carbonflow.center.store.schema import Batch as BatchRow
from carbonflow.center.store.schema import Collector, Device, metadata
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.messages.c4 import Batch, CommandResult, DeviceStatus, Reading

T0 = datetime(2025, 3, 1, tzinfo=UTC)
TOPOLOGY = {
    "buses": [
        {"id": "B1", "kind": "plant", "voltage_kv": 220.0, "region": "AH/HF/FX"},
        {"id": "B2", "kind": "substation", "voltage_kv": 110.0, "region": "AH/HF"},
        {"id": "B3", "kind": "user", "voltage_kv": 10.0, "region": "AH/HF/CF", "industry": "steel"},
        {"id": "B4", "kind": "user", "voltage_kv": 10.0, "region": "AH/WH", "industry": "chemicals"},
        {"id": "B5", "kind": "user", "voltage_kv": 110.0, "region": "AH/HFX", "industry": "steel"},
    ],
    "generators": [
        {"id": "G1", "bus_id": "B1", "plant": "P01", "fuel": "coal", "intensity_g_per_kwh": 800.0}
    ],
    "branches": [{"id": "L1", "kind": "line", "from_bus": "B1", "to_bus": "B2"}],
    "loads": [
        {"id": "U1", "bus_id": "B3", "user_name": "Steelworks", "industry": "steel"},
        {"id": "U2", "bus_id": "B4", "user_name": "Chemworks", "industry": "chemicals"},
        {"id": "U3", "bus_id": "B5", "user_name": "Steel two"},  # industry from its bus
    ],
}
DEVICES = [
    {
        "id": "EM-U1",
        "protocol": "dlt645",
        "endpoint": {"host": "127.0.0.1", "port": 26451},
        "address": {"address": "110100000001"},
        "points": [
            {
                "id": "EM-U1/1",
                "element_kind": "load",
                "element_id": "U1",
                "quantity": "import_energy_kwh",
                "unit": "kWh",
            },
            {
                "id": "EM-U1/2",
                "element_kind": "load",
                "element_id": "U1",
                "quantity": "p_mw",
                "unit": "kW",
                "scale_to_device": 1000.0,
            },
        ],
    },
    {
        "id": "RTU-B1",
        "protocol": "iec104",
        "points": [
            {
                "id": "RTU-B1/1",
                "element_kind": "branch",
                "element_id": "L1",
                "quantity": "p_mw",
                "end": "from",
            },
        ],
    },
]


def seed(target: Store, collector: str = "C1") -> None:
    upsert_topology(target, TOPOLOGY)
    upsert_collector(target, collector, "secret-1")
    register_devices(target, DEVICES, collector)


def batch(batch_id: str, readings: list[tuple[str, int, str | None]], seq: int = 1, **extra) -> Batch:
    return Batch(
        collector_id=extra.pop("collector_id", "C1"),
        batch_id=batch_id,
        seq=seq,
        created_at=T0,
        readings=[Reading(point=p, ts=T0 + timedelta(minutes=m), value=v) for p, m, v in readings],
        **extra,
    )


def test_migrations_from_empty_give_exactly_the_models(database_url):  # noqa: F811
    opened = Store.open(database_url)
    try:
        with opened.engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_name": lambda name, kind, _parent: not (kind == "table" and "_p2" in name)},
            )
            differences = [d for d in compare_metadata(context, metadata) if "alembic_version" not in str(d)]
            tables = set(inspect(connection).get_table_names())
    finally:
        opened.close()
    assert differences == []
    assert {"readings", "points", "intervals", "load_results", "commands", "audit"} <= tables
    if opened.dialect == "sqlite":
        with opened.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    else:
        assert any(name.startswith("readings_p") for name in tables)


def test_replaying_a_batch_stores_nothing_new_and_counts_exactly(store):  # noqa: F811
    seed(store)
    first = batch("batch-0001", [("EM-U1/1", m, "100.5") for m in range(10)])
    ack = ingest_batch(store, first)
    assert (ack.accepted, ack.duplicates, ack.duplicate_batch) == (10, 0, False)
    replay = ingest_batch(store, first)
    assert (replay.accepted, replay.duplicates, replay.duplicate_batch) == (0, 10, True)
    assert count_readings(store) == 10
    with store.read() as connection:
        assert connection.execute(select(func.count()).select_from(BatchRow)).scalar_one() == 1


def test_partial_duplicates_are_counted_by_point_and_ts(store):  # noqa: F811
    seed(store)
    ingest_batch(store, batch("batch-0001", [("EM-U1/1", m, "1") for m in range(6)]))
    # a new batch id re-sending minutes 3..5 (a collector that lost its ack) plus 4 new ones
    ack = ingest_batch(store, batch("batch-0002", [("EM-U1/1", m, "1") for m in range(3, 10)], seq=2))
    assert (ack.accepted, ack.duplicates, ack.duplicate_batch) == (4, 3, False)
    # the same (point, ts) twice inside one batch: stored once, the second counted as duplicate
    ack = ingest_batch(store, batch("batch-0003", [("EM-U1/2", 0, "5"), ("EM-U1/2", 0, "5")], seq=3))
    assert (ack.accepted, ack.duplicates) == (1, 1)
    assert count_readings(store) == 11


def test_a_different_value_for_a_stored_point_and_time_is_kept_out_and_reported(store):  # noqa: F811
    seed(store)
    ingest_batch(store, batch("batch-0001", [("EM-U1/1", m, "1.00") for m in range(3)]))
    # minute 1 offered again with another value (two runs overlapping), minute 2 again with the same
    # value written differently, minute 3 new
    offer = [("EM-U1/1", 1, "7.5"), ("EM-U1/1", 2, "1.0"), ("EM-U1/1", 3, "2"), ("EM-U1/1", 3, "9")]
    ack = ingest_batch(store, batch("batch-0002", offer, seq=2))
    assert (ack.accepted, ack.duplicates, ack.conflicts) == (1, 3, 2)
    conflicts = sorted(list_conflicts(store), key=lambda c: c.ts)
    assert [(c.point_id, c.stored_value, c.offered_value, c.batch_id) for c in conflicts] == [
        ("EM-U1/1", Decimal("1.00"), Decimal("7.5"), "batch-0002"),
        ("EM-U1/1", Decimal("2"), Decimal("9"), "batch-0002"),
    ]
    assert count_readings(store) == 4  # the first stored values stay


def test_unknown_point_refuses_the_whole_batch(store):  # noqa: F811
    seed(store)
    bad = batch("batch-0001", [("EM-U1/1", 0, "1"), ("EM-U1/1", 1, "2"), ("NOPE/7", 2, "3")])
    with pytest.raises(InvalidBatchError, match=r"reading 2: unknown point 'NOPE/7'"):
        ingest_batch(store, bad)
    assert count_readings(store) == 0
    with store.read() as connection:
        assert connection.execute(select(func.count()).select_from(BatchRow)).scalar_one() == 0
    # once the point map is fixed the same batch goes in whole
    register_devices(
        store,
        [
            {
                "id": "NOPE",
                "protocol": "dlt645",
                "points": [{"id": "NOPE/7", "element_kind": "load", "element_id": "U2", "quantity": "p_mw"}],
            }
        ],
        "C1",
    )
    assert ingest_batch(store, bad).accepted == 3


def test_unknown_collector_foreign_points_and_reused_batch_ids_are_refused(store):  # noqa: F811
    seed(store)
    with pytest.raises(UnknownCollectorError, match="'C9'"):
        ingest_batch(store, batch("batch-0001", [("EM-U1/1", 0, "1")], collector_id="C9"))
    upsert_collector(store, "C2", "secret-2")
    with pytest.raises(InvalidBatchError, match="belongs to collector 'C1'"):
        ingest_batch(store, batch("batch-0002", [("EM-U1/1", 0, "1")], collector_id="C2"))
    ingest_batch(store, batch("batch-0003", [("EM-U1/1", 0, "1")]))
    with pytest.raises(BatchConflictError, match="different content"):
        ingest_batch(store, batch("batch-0003", [("EM-U1/1", 0, "2")]))
    with pytest.raises(InvalidBatchError, match="in the future"):
        future = Batch(
            collector_id="C1",
            batch_id="batch-0004",
            seq=4,
            created_at=T0,
            readings=[Reading(point="EM-U1/1", ts=datetime.now(UTC) + timedelta(days=3), value="1")],
        )
        ingest_batch(store, future)
    assert count_readings(store) == 1


def test_decimal_values_come_back_exactly(store):  # noqa: F811
    seed(store)
    values = ["1206.42", "123456789012345678901234567890", "0.000000000000000000000000000001", "-0.001", None]
    ingest_batch(store, batch("batch-0001", [("EM-U1/1", m, v) for m, v in enumerate(values)]))
    stored = readings_for_point(store, "EM-U1/1", T0, T0 + timedelta(hours=1))
    assert [r.value for r in stored] == [None if v is None else Decimal(v) for v in values]
    assert stored[0].value == Decimal("1206.42") and str(stored[0].value) == "1206.42"
    assert all(isinstance(r.value, Decimal) for r in stored[:-1])
    assert stored[0].ts == T0 and stored[0].ts.tzinfo is not None


def test_statuses_and_last_seen_are_updated(store):  # noqa: F811
    seed(store)
    received = T0 + timedelta(minutes=5)
    ingest_batch(
        store,
        batch(
            "batch-0001",
            [("EM-U1/1", 1, "1"), ("EM-U1/1", 2, "2")],
            seq=7,
            config_version="v3",
            statuses=[
                DeviceStatus(
                    device="RTU-B1", online=False, clock_offset_s=1.5, firmware="2.1", error="timeout"
                )
            ],
        ),
        received_at=received,
    )
    with store.read() as connection:
        devices = {d.id: d for d in connection.execute(select(Device))}
        collector = connection.execute(select(Collector)).one()
    assert devices["EM-U1"].online is True and devices["EM-U1"].last_seen == T0 + timedelta(minutes=2)
    assert devices["RTU-B1"].status == "offline" and devices["RTU-B1"].clock_offset_s == 1.5
    assert devices["RTU-B1"].firmware == "2.1" and devices["RTU-B1"].error == "timeout"
    assert (collector.last_seen, collector.last_seq, collector.config_version) == (received, 7, "v3")
    with pytest.raises(InvalidBatchError, match="unknown device 'GHOST'"):
        ingest_batch(store, batch("batch-0002", [], statuses=[DeviceStatus(device="GHOST", online=True)]))
    # the collector's report on itself (device = its own id) goes to its own row, not to a device
    ingest_batch(
        store, batch("batch-0003", [], statuses=[DeviceStatus(device="C1", online=True, error="outbox full")])
    )
    with store.read() as connection:
        assert connection.execute(select(Collector.status)).scalar_one() == "degraded"


def test_readings_by_element_go_through_the_point_map(store):  # noqa: F811
    seed(store)
    ingest_batch(store, batch("batch-0001", [("EM-U1/1", 0, "1"), ("EM-U1/2", 0, "2"), ("RTU-B1/1", 0, "3")]))
    rows = readings_for_element(store, "load", "U1", "p_mw", T0, T0 + timedelta(minutes=1))
    assert [(r.point_id, r.value) for r in rows] == [("EM-U1/2", Decimal("2"))]
    rows = readings_for_element(store, "branch", "L1", "p_mw", T0, T0 + timedelta(minutes=1), end_side="from")
    assert [r.value for r in rows] == [Decimal("3")]
    assert (
        readings_for_element(store, "branch", "L1", "p_mw", T0, T0 + timedelta(minutes=1), end_side="to")
        == []
    )


def load_document(loads: dict[str, tuple[float, float]]) -> dict:
    """A result document with loads only: id → (p_mw, intensity g/kWh); bus of each from TOPOLOGY."""
    bus_of = {load["id"]: load["bus_id"] for load in TOPOLOGY["loads"]}
    return {
        "loads": [
            {"id": lid, "bus": bus_of[lid], "p_mw": p, "carbon_t_per_h": p * e / 1000.0}
            for lid, (p, e) in loads.items()
        ],
        "totals": {"load_carbon_t_per_h": sum(p * e / 1000.0 for p, e in loads.values())},
    }


def save_quarter_hours(
    target: Store, series: list[dict[str, tuple[float, float]]], start: datetime = T0
) -> None:
    for k, loads in enumerate(series):
        save_interval(
            target, interval_from_document(start + timedelta(minutes=15 * (k + 1)), 900, load_document(loads))
        )


def test_aggregation_is_energy_weighted_not_a_mean_of_intensities(store):  # noqa: F811
    seed(store)
    # hour 00: 40 MW at 900 g/kWh for 15 min (10 MWh, 9 t) then 4 MW at 100 g/kWh (1 MWh, 0.1 t)
    save_quarter_hours(store, [{"U1": (40.0, 900.0)}, {"U1": (4.0, 100.0)}])
    [hour] = aggregate(store, "load", "hour", T0, T0 + timedelta(hours=1))
    assert hour.key == "U1" and hour.intervals == 2
    assert hour.energy_kwh == pytest.approx(11_000.0) and hour.carbon_kg == pytest.approx(9_100.0)
    assert hour.intensity_g_per_kwh == pytest.approx(9_100_000.0 / 11_000.0)  # 827.27…
    assert hour.intensity_g_per_kwh != pytest.approx((900.0 + 100.0) / 2)
    quarters = aggregate(store, "load", "15min", T0, T0 + timedelta(hours=1))
    assert [q.bucket for q in quarters] == [T0, T0 + timedelta(minutes=15)]  # bucketed by interval start
    assert [round(q.intensity_g_per_kwh) for q in quarters] == [900, 100]


def test_buckets_follow_interval_start_and_the_local_offset(store):  # noqa: F811
    seed(store)
    start = datetime(2025, 1, 31, 15, 0, tzinfo=UTC)  # 23:00 in China (UTC+8)
    save_quarter_hours(store, [{"U1": (4.0, 500.0)}] * 8, start)  # until 17:00 UTC = 01:00 Feb 1 local
    by_month_utc = aggregate(store, "load", "month", start, start + timedelta(hours=2))
    assert [(m.bucket.month, m.intervals) for m in by_month_utc] == [(1, 8)]
    local = aggregate(store, "load", "month", start, start + timedelta(hours=2), utc_offset_minutes=480)
    assert [(m.bucket.month, m.intervals) for m in local] == [(1, 4), (2, 4)]
    assert local[1].bucket == datetime(2025, 2, 1, tzinfo=local[1].bucket.tzinfo)
    assert local[1].bucket.utcoffset() == timedelta(hours=8)
    days = aggregate(store, "load", "day", start, start + timedelta(hours=2), utc_offset_minutes=480)
    assert [d.energy_kwh for d in days] == pytest.approx([4000.0, 4000.0])


def test_region_industry_and_voltage_filters(store):  # noqa: F811
    seed(store)
    save_quarter_hours(store, [{"U1": (10.0, 800.0), "U2": (20.0, 400.0), "U3": (30.0, 600.0)}])
    window = (T0, T0 + timedelta(hours=1))

    def ids(**filters):
        return sorted(r["element_id"] for r in interval_results(store, "load", *window, **filters))

    assert ids() == ["U1", "U2", "U3"]
    assert ids(region="AH/HF") == ["U1"]  # AH/HF/CF matches; AH/HFX is not under AH/HF
    assert ids(region="AH") == ["U1", "U2", "U3"]
    assert ids(industry="steel") == ["U1", "U3"]  # U3 takes its bus's industry
    assert ids(voltage_kv=110.0) == ["U3"]
    assert ids(region="AH/HF_") == []  # LIKE wildcards in a region are literal
    by_industry = {a.key: a for a in aggregate(store, "load", "day", *window, group_by="industry")}
    assert by_industry["steel"].intensity_g_per_kwh == pytest.approx((10 * 800 + 30 * 600) / 40)
    by_city = {a.key: a for a in aggregate(store, "load", "day", *window, group_by="region", region_depth=2)}
    assert sorted(by_city) == ["AH/HF", "AH/HFX", "AH/WH"]
    [province] = aggregate(store, "load", "day", *window, group_by="region", region_depth=1)
    assert province.intensity_g_per_kwh == pytest.approx((10 * 800 + 20 * 400 + 30 * 600) / 60)
    [totals] = aggregate_totals(store, "day", *window)
    assert totals["load_carbon_kg"] == pytest.approx((10 * 800 + 20 * 400 + 30 * 600) / 4)


def test_engine_results_are_stored_with_interval_energies(store):  # noqa: F811
    seed(store)
    snapshot = {
        "generators": [{"id": "G1", "bus": "B1", "p_mw": 30.0, "intensity_g_per_kwh": 800.0}],
        "loads": [{"id": "U1", "bus": "B3", "p_mw": 30.0}],
        "branches": [{"id": "L1", "from_bus": "B1", "to_bus": "B3", "p_from_mw": 30.0}],
    }
    document = result_document(solve(snapshot_from_dict(snapshot)))
    record = interval_from_document(
        T0 + timedelta(minutes=15), 900, document, snapshot=snapshot, estimation={"U1": "measured"}
    )
    save_interval(store, record)
    save_interval(store, record)  # recomputation replaces, never duplicates
    window = (T0, T0 + timedelta(hours=1))
    [load] = interval_results(store, "load", *window)
    assert load["energy_kwh"] == pytest.approx(7500.0) and load["carbon_kg"] == pytest.approx(6000.0)
    assert load["intensity_g_per_kwh"] == pytest.approx(800.0)
    [branch] = interval_results(store, "branch", *window)
    assert branch["carbon_kg"] == pytest.approx(6000.0) and branch["sending_bus"] == "B1"
    buses = {b["element_id"]: b for b in interval_results(store, "bus", *window)}
    assert buses["B3"]["intensity_g_per_kwh"] == pytest.approx(800.0)
    [totals] = aggregate_totals(store, "hour", *window)
    assert totals["generation_carbon_kg"] == pytest.approx(6000.0)
    assert totals["generation_intensity_g_per_kwh"] == pytest.approx(800.0)


def test_retention_purges_old_data_and_drops_whole_months_on_postgresql(store):  # noqa: F811
    seed(store)
    old, boundary, recent = (
        datetime(2024, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 10, tzinfo=UTC),
        datetime(2024, 6, 10, tzinfo=UTC),
    )
    for k, ts in enumerate((old, boundary, recent)):
        ingest_batch(
            store,
            Batch(
                collector_id="C1",
                batch_id=f"batch-000{k}",
                seq=k,
                created_at=ts,
                readings=[Reading(point="EM-U1/1", ts=ts, value=str(k))],
            ),
            received_at=ts,
        )
        save_interval(store, interval_from_document(ts, 900, load_document({"U1": (1.0, 500.0)})))
    report = purge_older_than(store, days=30, now=datetime(2024, 6, 15, tzinfo=UTC))  # cutoff May 16
    assert report.cutoff == datetime(2024, 5, 16, tzinfo=UTC)
    remaining = readings_for_point(
        store, "EM-U1/1", datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert [r.ts for r in remaining] == [recent]
    assert [
        r["ts"]
        for r in interval_results(
            store, "load", datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
        )
    ] == [recent]
    if store.dialect == "postgresql":
        assert (
            "readings_p202401" in report.partitions_dropped
            and "load_results_p202401" in report.partitions_dropped
        )
        assert (
            "readings_p202405" not in report.partitions_dropped
        )  # boundary month: rows deleted, partition kept
        with store.read() as connection:
            kept = existing_partitions(connection, "readings")
        assert "readings_p202401" not in kept and "readings_p202405" in kept and "readings_p202406" in kept
    with pytest.raises(ValueError, match="at least 1 day"):
        purge_older_than(store, days=0)


def test_one_year_retention_query_on_a_compact_dataset(store):  # noqa: F811
    seed(store)
    year_start = datetime(2024, 1, 1, tzinfo=UTC)
    for day in range(366):  # 2024 is a leap year: one daily interval per day, ending at midnight
        loads = {"U1": (10.0 + day % 7, 800.0), "U2": (20.0, 300.0 + day)}
        save_interval(
            store, interval_from_document(year_start + timedelta(days=day + 1), 86_400, load_document(loads))
        )
    year_end = datetime(2025, 1, 1, tzinfo=UTC)
    purge_older_than(store, days=400, now=year_end + timedelta(days=1))  # default retention keeps a year
    months = aggregate(store, "load", "month", year_start, year_end, group_by="total")
    assert len(months) == 12 and sum(m.intervals for m in months) == 366
    february = months[1]
    energy = sum((10.0 + d % 7 + 20.0) * 24_000 for d in range(31, 60))
    carbon = sum(((10.0 + d % 7) * 800.0 + 20.0 * (300.0 + d)) * 24 for d in range(31, 60))
    assert february.energy_kwh == pytest.approx(energy) and february.carbon_kg == pytest.approx(carbon)
    assert february.intensity_g_per_kwh == pytest.approx(carbon * 1000 / energy)
    report = purge_older_than(store, days=200, now=year_end)
    assert report.rows_deleted["load_results"] > 0 or report.partitions_dropped
    months = aggregate(store, "load", "month", year_start, year_end, group_by="total")
    # cutoff 2024-06-15 00:00: kept are the intervals ENDING at or after it, June 15 .. January 1
    assert months[0].bucket.month == 6 and sum(m.intervals for m in months) == 201


def test_command_lifecycle_queued_sent_acknowledged_and_retried(store):  # noqa: F811
    seed(store)
    first = queue_command(store, "C1", "time_sync", device_id="EM-U1", actor="alice")
    second = queue_command(store, "C1", "set_carbon_factor", device_id="EM-U1", params={"g_per_kwh": "581.2"})
    with pytest.raises(UnknownCollectorError):
        queue_command(store, "C9", "restart")
    taken = take_queued_commands(store, "C1")
    assert [c.command_id for c in taken] == [first.command_id, second.command_id]
    assert taken[1].params == {"g_per_kwh": "581.2"}
    assert take_queued_commands(store, "C1") == []
    record_command_result(
        store,
        "C1",
        CommandResult(command_id=first.command_id, status="acknowledged", finished_at=datetime.now(UTC)),
    )
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert requeue_unanswered(store, timedelta(minutes=5), max_attempts=2, now=later) == (1, 0)
    assert [c.command_id for c in take_queued_commands(store, "C1")] == [second.command_id]
    assert requeue_unanswered(
        store, timedelta(minutes=5), max_attempts=2, now=later + timedelta(minutes=10)
    ) == (0, 1)
    status = {c["id"]: (c["status"], c["attempts"]) for c in list_commands(store, collector_id="C1")}
    assert status == {first.command_id: ("acknowledged", 1), second.command_id: ("failed", 2)}

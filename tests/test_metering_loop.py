"""The center's clock-driven metering loop and the topology it meters with."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from carbonflow.center.api.app import create_app
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.metering.loop import MeteringLoop, interval_end_after
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import Store, upsert_topology
from carbonflow.center.topology import topology_document, topology_rows
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=7)  # time passes as the loop looks at it
        return self.t


class RecordingService:
    """Meters every interval fully, except the second one: its readings arrive one interval late."""

    interval_s = 60

    def __init__(self) -> None:
        self.ends: list[datetime] = []
        self.reasons: list[str] = []
        self.late: datetime | None = None

    def readings_available(self, end: datetime) -> int:
        return 10 if end == self.late and len(self.ends) >= 3 else 5

    def meter_interval(self, end: datetime, *, reason: str = "first metering") -> IntervalOutcome:
        self.ends.append(end)
        self.reasons.append(reason)
        if len(self.ends) == 2:
            self.late = end
        if end == self.late and reason == "first metering":
            return IntervalOutcome(end, stored=False, error="gap", readings=5)
        return IntervalOutcome(end, stored=True, completeness=1.0, version=1, readings=10)


def test_loop_meters_each_whole_interval_in_order_after_its_grace_and_again_when_late_data_came():
    clock = FakeClock(datetime(2026, 11, 25, 8, 0, 30, tzinfo=UTC))
    service, outcomes = RecordingService(), []
    loop = MeteringLoop(service, now=clock, speed=1e6, on_outcome=outcomes.append, max_intervals=4)
    asyncio.run(loop.run())
    first = datetime(2026, 11, 25, 8, 2, tzinfo=UTC)  # 08:01 is in progress at the start: skipped
    minute = timedelta(minutes=1)
    # the second interval had no data in time; when its readings arrived it was metered again
    assert service.ends == [first, first + minute, first + 2 * minute, first + minute, first + 3 * minute]
    assert service.reasons[3] == "late readings: 5 more"
    assert [o.stored for o in outcomes] == [True, False, True, True, True]
    assert (loop.metered, loop.skipped, loop.remetered) == (4, 1, 1)
    assert loop.pending == {}
    assert interval_end_after(datetime(2026, 1, 1, 0, 15, tzinfo=UTC), 900) == datetime(
        2026, 1, 1, 0, 30, tzinfo=UTC
    )


class AwaitingService(RecordingService):
    """Boundary readings arrive after the grace: the first interval's two looks later; the second's never
    (a meter gone quiet), so it is metered when the longest wait is over."""

    interval_s = 600  # 5 minutes of grace, 5 more at most waiting: many looks of the 7 s clock

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.looks, self.metered_at = clock, {}, {}

    def counters_awaited(self, end: datetime) -> int:
        self.looks[end] = self.looks.get(end, 0) + 1
        which = list(self.looks).index(end)  # 0: the first interval looked at, 1: the second, ...
        return 1 if (which == 0 and self.looks[end] <= 2) or which == 1 else 0

    def meter_interval(self, end: datetime, *, reason: str = "first metering") -> IntervalOutcome:
        self.metered_at[end] = self.clock.t
        return IntervalOutcome(end, stored=True, completeness=1.0, version=1, readings=10)


def test_the_loop_waits_for_boundary_readings_on_their_way_but_no_longer_than_its_longest_wait():
    clock = FakeClock(datetime(2026, 11, 25, 8, 0, 30, tzinfo=UTC))
    service = AwaitingService(clock)
    loop = MeteringLoop(service, now=clock, speed=1e6, max_intervals=3)
    asyncio.run(loop.run())
    first, second, third = (datetime(2026, 11, 25, 8, m, tzinfo=UTC) for m in (20, 30, 40))
    assert service.looks[first] == 3 and service.looks[third] == 1  # ready at the third look; at once
    assert first + loop.grace < service.metered_at[first] < first + loop.grace + loop.max_wait
    assert service.metered_at[second] >= second + loop.grace + loop.max_wait  # waited as long as allowed
    assert loop.waited == 2 and loop.metered == 3


def test_topology_document_from_the_store_carries_what_metering_needs(tmp_path):
    grid = grid_document(reference_grid())
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    upsert_topology(store, topology_rows(grid))
    document = topology_document(store)
    for section in ("buses", "generators", "branches", "loads", "storage"):
        assert {x["id"] for x in document[section]} == {x["id"] for x in grid[section]}, section
    by_id = {g["id"]: g for g in document["generators"]}
    for unit in grid["generators"]:
        assert by_id[unit["id"]]["bus"] == unit["bus"]
        assert by_id[unit["id"]]["intensity_g_per_kwh"] == unit["intensity_g_per_kwh"]
    branches = {b["id"]: (b["from_bus"], b["to_bus"]) for b in document["branches"]}
    assert branches == {b["id"]: (b["from_bus"], b["to_bus"]) for b in grid["branches"]}
    store.close()


def test_a_center_with_a_metering_interval_runs_the_loop(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store.open(url)
    upsert_topology(store, topology_rows(grid_document(reference_grid())))
    settings = CenterSettings(database_url=url, metering_interval_s=900, maintenance_period_s=0)
    with TestClient(create_app(settings, store=store)) as client:
        assert client.get("/healthz").status_code == 200
        loop = client.app.state.metering
        assert isinstance(loop, MeteringLoop) and loop.service.interval_s == 900
        assert len(loop.service.topology["buses"]) == 104
    assert CenterSettings.from_env({"CARBONFLOW_METERING_INTERVAL_S": "300"}).metering_interval_s == 300
    store.close()

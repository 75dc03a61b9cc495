"""Cross-region intensities (docs/interop.md): two centers for the two cities of the reference grid —
Hefei and Wuhu, joined by 12 tie lines carrying power both ways — each metering its own region from its
own devices' readings and pricing its imports at the other's published intensities, against one center
metering both regions from the same readings; a neighbour late (named estimate, re-metered on arrival);
the neighbour's bad documents refused and reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import datetime, timedelta

import pytest
import uvicorn
from cascade_world import free_port
from fastapi.testclient import TestClient
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from test_metering_service import INTERVAL_S, START, ingest, readings_at

from carbonflow.center.api.app import create_app
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.cascade.config import new_key
from carbonflow.center.cascade.node import Refused
from carbonflow.center.cascade.outbox import CascadeOutbox
from carbonflow.center.crossregion.config import TieError, TiesConfig
from carbonflow.center.crossregion.layout import region_devices, region_topology, ties_configs
from carbonflow.center.crossregion.link import DEFAULT, LAST_KNOWN, TieLink
from carbonflow.center.crossregion.service import TieService
from carbonflow.center.metering.loop import MeteringLoop
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import (
    Store,
    interval_results,
    register_devices,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.store.alarms import active_alarm_keys
from carbonflow.center.store.audit import list_audit
from carbonflow.center.store.cascade import metered_snapshot
from carbonflow.center.topology import topology_rows
from carbonflow.cli import main
from carbonflow.messages.ties import TieIntensities
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

CITIES = {"hf": "AH/HF", "wh": "AH/WH"}
SAMPLES = 8  # Monte Carlo draws of the uncertainty bands: not what is compared here
TOL_G_PER_KWH = 1e-6


def _city(region: str | None) -> str:
    return "/".join((region or "").split("/")[:2])


@pytest.fixture(scope="module")
def world():
    net = reference_grid()
    truths = list(Simulation(net, SimConfig(start=START, interval_s=INTERVAL_S, count=4, seed=5)).intervals())
    grid = grid_document(net)
    city = {b["id"]: _city(b.get("region")) for b in grid["buses"]}
    ties = [b for b in grid["branches"] if city[b["from_bus"]] != city[b["to_bus"]]]
    keys = {name: new_key() for name in CITIES}
    return grid, build_device_map(net), truths, city, ties, keys


def ties_config(name: str, world, tmp_path, urls=None, **settings) -> TiesConfig:
    grid, keys = world[0], world[5]
    configs = ties_configs(
        grid, CITIES, keys, tmp_path, interval_s=INTERVAL_S, urls=urls, outbox_durable=False, **settings
    )
    return configs[name]


class RegionCenter:
    """One region's center: its store (topology, devices, readings), metering and tie link."""

    def __init__(
        self, name, world, tmp_path, *, losses="receiving", readings=True, urls=None, url=None, **extra
    ):
        grid, device_map, truths, _city, _ties, _keys = world
        self.name, self.region = name, CITIES[name]
        self.topology = region_topology(grid, self.region)
        self.store = Store.open(url or f"sqlite:///{tmp_path / f'{name}.db'}")
        upsert_topology(self.store, topology_rows(self.topology))
        upsert_collector(self.store, "col-1", "secret")
        devices = region_devices(device_map, self.topology, self.region)
        register_devices(self.store, devices, collector_id="col-1")
        if readings:
            for truth in truths[:3]:
                ingest(self.store, readings_at({"devices": devices}, truth, truth.ts))
        self.service = MeteringService(
            self.store, self.topology, INTERVAL_S, losses=losses, uncertainty_samples=SAMPLES
        )
        config = ties_config(name, world, tmp_path, urls, losses=losses, **extra)
        outbox = CascadeOutbox(config.outbox_path, durable=False) if urls else None
        self.link = TieLink(self.store, config, self.topology, outbox)
        self.service.ties = self.link
        self.arrivals: list = []
        self.link.on_arrival = lambda ts, why: self.arrivals.append((ts, why))

    def meter(self, end, reason="first metering"):
        outcome = self.service.meter_interval(end, reason=reason)
        assert outcome.stored, outcome.error
        return outcome, self.link.publish(end, outcome.intensities, not outcome.complete, outcome.version)

    def intensities(self, end) -> dict[str, float | None]:
        rows = interval_results(self.store, "bus", end - timedelta(seconds=1), end)
        return {r["element_id"]: r["intensity_g_per_kwh"] for r in rows}


def deliver(documents, to: RegionCenter) -> list[dict]:
    return [to.link.receive(d.model_dump_json().encode()) for d in documents]


def settle(centers: dict[str, RegionCenter], end, first: str, max_meterings: int = 30) -> int:
    """Meter ``first``, hand its documents to the other, which meters the interval (first time) or meters
    it again when its link asks to (what ``TieService`` does in a running center), until nothing moves;
    the number of meterings."""
    queue, metered, count = [(first, "first metering")], set(), 0
    while queue:
        name, reason = queue.pop(0)
        count += 1
        assert count <= max_meterings, "the exchange does not converge"
        _outcome, sent = centers[name].meter(end, reason)
        metered.add(name)
        for other, target in centers.items():
            if other == name:
                continue
            target.arrivals.clear()
            deliver(sent, target)
            if other not in metered:
                queue.append((other, "first metering"))
            elif target.arrivals:
                queue.append((other, target.arrivals[-1][1]))
    return count


def monolithic(world, tmp_path, losses="receiving") -> dict[str, float | None]:
    """One center metering both regions from all the devices' readings."""
    grid, device_map, truths, _city, _ties, _keys = world
    store = Store.open(f"sqlite:///{tmp_path / 'whole.db'}")
    upsert_topology(store, topology_rows(grid))
    upsert_collector(store, "col-1", "secret")
    register_devices(store, device_map["devices"], collector_id="col-1")
    for truth in truths[:3]:
        ingest(store, readings_at(device_map, truth, truth.ts))
    service = MeteringService(store, grid, INTERVAL_S, losses=losses, uncertainty_samples=SAMPLES)
    result = {}
    for truth in truths[1:3]:
        outcome = service.meter_interval(truth.ts)
        assert outcome.stored and outcome.complete, outcome.error
        result[truth.ts] = outcome.intensities
    store.close()
    return result


@pytest.mark.parametrize("losses", ["receiving", "consumer"])
def test_two_regions_each_using_the_others_intensities_equal_one_computation_of_both(world, tmp_path, losses):
    _grid, _dm, truths, city, ties, _keys = world
    whole = monolithic(world, tmp_path, losses)
    centers = {name: RegionCenter(name, world, tmp_path, losses=losses) for name in CITIES}
    worst, worst_tie_bus, meterings = 0.0, 0.0, []
    tie_buses = {b for t in ties for b in (t["from_bus"], t["to_bus"])}
    for truth in truths[1:3]:
        meterings.append(settle(centers, truth.ts, "hf"))
        for center in centers.values():
            mine = center.intensities(truth.ts)
            own = [b for b, c in city.items() if c == center.region]
            assert own and all(b in mine for b in own)
            for bus in own:
                expected = whole[truth.ts][bus]
                assert (mine[bus] is None) == (expected is None), bus
                if expected is not None:
                    delta = abs(mine[bus] - expected)
                    worst = max(worst, delta)
                    if bus in tie_buses:
                        worst_tie_bus = max(worst_tie_bus, delta)
            assert _estimates(center, truth.ts) == {}  # the last version used the neighbour's documents
    print(f"\n{losses}: max |Δ| {worst:.2g} g/kWh (tie buses {worst_tie_bus:.2g}), meterings {meterings}")
    assert worst <= TOL_G_PER_KWH
    # imports both ways: each region really priced power from the other at its published intensities
    for center in centers.values():
        snapshot = metered_snapshot(center.store, truths[1].ts, INTERVAL_S)
        imports = [g for g in snapshot["generators"] if g["id"].startswith("tie:")]
        other = next(n for n in CITIES if n != center.name)
        published = {p["tie_id"]: p for p in center.link.latest(other, truths[1].ts)["ties"]}
        assert imports and all(
            g["intensity_g_per_kwh"] == published[g["id"][4:]]["intensity_g_per_kwh"] for g in imports
        )


def test_a_late_neighbour_gives_a_named_estimate_and_the_interval_is_metered_again_on_arrival(
    world,
    tmp_path,
    database_url,  # noqa: F811
):
    """Hefei on each backend (its documents, estimates and versions in SQLite and PostgreSQL)."""
    truths = world[2]
    hf = RegionCenter("hf", world, tmp_path, url=database_url)
    wh = RegionCenter("wh", world, tmp_path)
    first_end, end = truths[1].ts, truths[2].ts
    # nothing known of WH yet: the default import intensity, named, the interval estimated
    outcome, _sent = hf.meter(first_end)
    assert not outcome.complete
    names = _estimates(hf, first_end)
    assert names and set(names.values()) == {DEFAULT}
    # WH publishes the first interval: HF meters it again at once, with WH's values
    _wh_outcome, wh_sent = wh.meter(first_end)
    answers = deliver(wh_sent, hf)
    assert answers[0]["status"] == "accepted" and answers[0]["remeter"]
    assert hf.arrivals and hf.arrivals[-1][0] == first_end
    again, _ = hf.meter(first_end, hf.arrivals[-1][1])
    assert again.version == 2 and not _estimates(hf, first_end)
    # a restarted center (nothing in memory) compares with what it stored: same values, nothing to do
    restarted = TieLink(hf.store, hf.link.config, hf.topology)
    same = wh_sent[0].model_copy(update={"document_id": uuid.uuid4().hex, "version": 2})
    assert restarted.receive(same.signed(world[5]["wh"]).model_dump_json().encode())["remeter"] is False
    moved = [t.model_copy(update={"intensity_g_per_kwh": t.intensity_g_per_kwh + 1e-6}) for t in same.ties]
    changed = same.model_copy(update={"document_id": uuid.uuid4().hex, "version": 3, "ties": moved})
    assert restarted.receive(changed.signed(world[5]["wh"]).model_dump_json().encode())["remeter"] is True
    # WH late for the next interval: its last known value, named with the interval it came from
    hf.meter(end)
    names = _estimates(hf, end)
    assert set(names.values()) == {f"{LAST_KNOWN} of {first_end.isoformat()}"}
    # the same document twice is a duplicate, stored once
    assert deliver(wh_sent, hf)[0]["status"] == "duplicate"
    # a newer version with other values re-meters; an older version arriving after it changes nothing
    key = world[5]["wh"]
    ties = [t.model_copy(update={"intensity_g_per_kwh": 400.0}) for t in wh_sent[0].ties]
    newer = wh_sent[0].model_copy(update={"document_id": uuid.uuid4().hex, "version": 5, "ties": ties})
    older = newer.model_copy(
        update={"document_id": uuid.uuid4().hex, "version": 4, "ties": wh_sent[0].ties[:1]}
    )
    hf.arrivals.clear()
    assert deliver([newer.signed(key)], hf)[0]["remeter"] and hf.arrivals
    hf.meter(first_end, hf.arrivals[-1][1])
    answer = deliver([older.signed(key)], hf)[0]
    assert answer["status"] == "accepted" and not answer["remeter"]
    assert hf.link.latest("wh", first_end)["version"] == 5


def _estimates(center: RegionCenter, end) -> dict[str, str]:
    from sqlalchemy import select

    from carbonflow.center.store.schema import Interval

    with center.store.read() as connection:
        estimation = connection.execute(select(Interval.estimation).where(Interval.ts == end)).scalar_one()
    return {e["element_id"]: e["method"] for e in estimation["estimates"] if e["element_kind"] == "tie"}


def _document(world, sender="wh", recipient="hf", **changes) -> TieIntensities:
    _grid, _dm, truths, city, ties, keys = world
    tie = next(t for t in ties if city[t["from_bus"]] == CITIES[sender])
    fields = {
        "document_id": uuid.uuid4().hex,
        "sender": sender,
        "recipient": recipient,
        "ts": truths[1].ts,
        "interval_s": INTERVAL_S,
        "created_at": truths[1].ts,
        "ties": [
            {
                "tie_id": tie["id"],
                "bus": tie["from_bus"],
                "neighbour_bus": tie["to_bus"],
                "intensity_g_per_kwh": 512.5,
                "p_into_tie_mw": 10.0,
            }
        ],
        **changes,
    }
    return TieIntensities(**fields).signed(keys[sender])


def test_bad_documents_are_refused_audited_and_alarmed_through_the_api(world, tmp_path):
    _grid, _dm, truths, _city, _ties, keys = world
    hf = RegionCenter("hf", world, tmp_path, readings=False, max_clock_skew_s=60)
    hf.link.now = lambda: truths[1].ts + timedelta(seconds=30)
    refusals = []
    hf.link.listeners.append(refusals.append)
    settings = CenterSettings(database_url="sqlite://", api_tokens={"t": "tester"})
    app = create_app(settings, store=hf.store, ties=TieService(hf.link))
    headers = {"Origin": "http://testserver", "content-type": "application/json"}
    with TestClient(app) as client:
        post = lambda doc: client.post(  # noqa: E731
            "/api/v1/ties/intensities",
            content=doc if isinstance(doc, bytes) else doc.model_dump_json(),
            headers=headers,
        )
        good = _document(world)
        ok = post(good)
        assert ok.status_code == 200 and ok.json()["status"] == "accepted", ok.text
        stranger = new_key()
        forged = _document(world).model_copy(update={"signature": None}).signed(stranger)
        unknown = TieIntensities(**{**_document(world).model_dump(), "sender": "js", "signature": None})
        cases = {
            "tie document bad signature": (post(forged), 403),
            "tie document unknown neighbour": (post(unknown.signed(stranger)), 403),
            "tie document unknown tie": (
                post(_document(world, ties=[{**good.ties[0].model_dump(), "tie_id": "L999"}])),
                422,
            ),
            "tie document interval from the future": (
                post(_document(world, ts=truths[1].ts + timedelta(seconds=2 * INTERVAL_S))),
                422,
            ),
            "tie document malformed": (post(b'{"kind": "tie_intensities"}'), 422),
            "tie document wrong loss convention": (post(_document(world, losses="consumer")), 422),
        }
        for error, (response, status) in cases.items():
            assert response.status_code == status, (error, response.text)
            assert response.json()["error"] == error, response.text
            assert set(response.json()) == {"error", "detail"}
        view = client.get("/api/v1/ties/intensities?direction=in", headers={"Authorization": "Bearer t"})
        assert view.status_code == 200 and [d["document_id"] for d in view.json()["items"]] == [
            good.document_id
        ]
        assert TieIntensities.parse(view.json()["items"][0]).verify(keys["wh"].public_key())
        status = client.get("/api/v1/ties", headers={"Authorization": "Bearer t"}).json()
        assert datetime.fromisoformat(status["neighbours"][0]["last_received_ts"]) == truths[1].ts
    actions = [e["action"] for e in list_audit(hf.store, actor="ties")]
    for error in (
        "tie document bad signature",
        "tie document unknown tie",
        "tie document interval from the future",
    ):
        assert error in actions
    assert len(refusals) == 6 and all(r.message() for r in refusals)
    raised = [key for key in active_alarm_keys(hf.store) if "wh" in key]
    assert raised, "a refused document from a neighbour raises an alarm"


def test_config_ties_must_be_branches_of_the_topology(world, tmp_path):
    _grid, _dm, _truths, _city, _ties, _keys = world
    hf = RegionCenter("hf", world, tmp_path, readings=False)
    config = ties_config("hf", world, tmp_path)
    bad = config.model_copy(update={"ties": [config.ties[0].model_copy(update={"neighbour_bus": "S999"})]})
    with pytest.raises(TieError, match=rf"tie {config.ties[0].id}: branch joins"):
        TieLink(hf.store, bad, hf.topology)
    path = tmp_path / "ties.toml"
    path.write_text('[ties]\ncenter_id = "hf"\nprivate_key = "x"\n', "utf-8")
    with pytest.raises(TieError, match=r"ties\.toml: ties"):
        TiesConfig.load(path)


def test_refused_document_detail_is_one_line(world, tmp_path):
    hf = RegionCenter("hf", world, tmp_path, readings=False)
    with pytest.raises(Refused) as refused:
        hf.link.receive(json.dumps({"schema_version": 1, "kind": "tie_intensities"}).encode())
    assert refused.value.status == 422 and "\n" not in refused.value.detail


class Served:
    """A region's center running: its API on a port (the tie endpoint), a metering loop driven by the
    test, the tie service pushing to the other center over HTTP."""

    def __init__(self, center: RegionCenter, port: int) -> None:
        self.center, self.port = center, port
        self.loop = MeteringLoop(center.service)
        self.ties = TieService(center.link)
        self.versions: list[int] = []

    async def start(self) -> None:
        self.ties.attach(self.loop)  # the app's wiring when it meters: hook, observer, re-metering
        self.loop.observers.insert(0, lambda outcome: self.versions.append(outcome.version))
        settings = CenterSettings(database_url="sqlite://")
        app = create_app(settings, store=self.center.store, ties=self.ties)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def test_two_centers_over_http_push_each_other_and_meter_again_on_arrival(world, tmp_path):
    """The running centers: documents pushed to the neighbour's POST through the outbox, each arrival
    re-metering the interval at once; the result equals one center metering both regions, and the
    neighbour's intensities are used within one interval of their arrival (the figure: arrival -> use)."""
    truths = world[2]
    whole = monolithic(world, tmp_path)
    ports = {name: free_port() for name in CITIES}
    centers = {
        name: RegionCenter(name, world, tmp_path, urls={o: f"http://127.0.0.1:{ports[o]}" for o in CITIES})
        for name in CITIES
    }
    served = {name: Served(center, ports[name]) for name, center in centers.items()}

    async def quiet(ends) -> None:
        """Until every interval is metered at both ends from the other's newest document."""
        for _ in range(3000):
            await asyncio.sleep(0.01)
            if all(
                s.ties.link.outbox.backlog(o) == 0
                for s in served.values()
                for o in CITIES
                if o != s.center.name
            ) and all(_estimates_or_none(c, end) == {} for c in centers.values() for end in ends):
                await asyncio.sleep(0.3)  # a re-metering just asked for settles
                if not any(s.ties._remeters for s in served.values()):
                    return
        raise AssertionError("the two centers did not settle")

    async def run() -> None:
        for s in served.values():
            await s.start()
        try:
            ends = [t.ts for t in truths[1:3]]
            for end in ends:  # each center meters when its clock says so: HF first, WH a little later
                await served["hf"].loop.remeter(end, "first metering")
                await asyncio.sleep(0.05)
                await served["wh"].loop.remeter(end, "first metering")
            await quiet(ends)
        finally:
            for s in served.values():
                await s.stop()

    asyncio.run(run())
    worst = 0.0
    for center in centers.values():
        for truth in truths[1:3]:
            mine = center.intensities(truth.ts)
            for bus, path in world[3].items():
                if path == center.region and whole[truth.ts][bus] is not None:
                    worst = max(worst, abs(mine[bus] - whole[truth.ts][bus]))
    latencies = sorted(s for c in centers.values() for s in c.link.latencies_s)
    median_ms = 1000 * latencies[len(latencies) // 2]
    print(
        f"\nover HTTP: max |Δ| {worst:.2g} g/kWh; versions {[s.versions for s in served.values()]};"
        f" arrival -> used median {median_ms:.1f} ms, max {1000 * latencies[-1]:.1f} ms ({len(latencies)})"
    )
    assert worst <= TOL_G_PER_KWH
    assert latencies and latencies[-1] < INTERVAL_S


def _estimates_or_none(center: RegionCenter, end):
    try:
        return _estimates(center, end)
    except Exception:  # not metered yet
        return None


def test_serve_with_a_tie_not_in_the_topology_stops_with_one_line(world, tmp_path, capsys, monkeypatch):
    grid, device_map, _truths, _city, ties, _keys = world
    database = f"sqlite:///{tmp_path / 'center.db'}"
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    (tmp_path / "map.json").write_text(json.dumps(device_map))
    (tmp_path / "secret").write_text("s3cret-key\n")
    load = ["center", "load", "--database", database, "--grid", str(tmp_path / "grid.json")]
    load += ["--device-map", str(tmp_path / "map.json"), "--collector", "c1"]
    assert main([*load, "--secret-file", str(tmp_path / "secret")]) == 0
    config = ties_config("hf", world, tmp_path).model_dump()
    config["ties"][0]["neighbour_bus"] = "S999"
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, list) and v is not None]
    lines += [f"[[ties.neighbours]]\n{_toml(n)}" for n in config["neighbours"]]
    lines += [f"[[ties.ties]]\n{_toml(t)}" for t in config["ties"]]
    (tmp_path / "ties.toml").write_text("[ties]\n" + "\n".join(lines) + "\n")
    monkeypatch.setenv("CARBONFLOW_TIES_CONFIG", str(tmp_path / "ties.toml"))
    capsys.readouterr()
    assert main(["center", "serve", "--database", database, "--port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"tie {ties[0]['id']}: branch joins" in error, error


def _toml(table: dict) -> str:
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None)

"""Versioned recomputation of history (issue 17 §3): corrections, versions, diff, idempotency, gaps,
and the same results on a local pool, a Dask cluster, and a cluster that loses a worker mid-chunk."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import func, select

from carbonflow.center.metering.recompute import DRILL_ENV, RecomputeError, recompute
from carbonflow.center.metering.service import MeteringService, interval_result
from carbonflow.center.store import (
    CorrectionError,
    Store,
    add_correction,
    diff_versions,
    header_as_of,
    ingest_batch,
    interval_from_document,
    interval_results,
    list_versions,
    register_devices,
    upsert_collector,
    upsert_topology,
    verify,
)
from carbonflow.center.store import results as results_module
from carbonflow.center.store.archived_rows import unpack_rows
from carbonflow.center.store.result_versions import (
    ArchivedInterval,
    ArchivedResult,
    RecomputeChunk,
    insert_results,
)
from carbonflow.center.store.schema import RESULT_MODELS, Interval
from carbonflow.center.store.versions import IntervalVersion
from carbonflow.center.topology import topology_rows
from carbonflow.engine.document import document_hash_v1, hash_scheme, result_document
from carbonflow.messages.c4 import Batch, Reading
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
INTERVAL_S = 900
N = 12  # intervals metered
SPAN = timedelta(seconds=INTERVAL_S)


@pytest.fixture(scope="module")
def world():
    net = reference_grid()
    truths = list(
        Simulation(net, SimConfig(start=START, interval_s=INTERVAL_S, count=N + 1, seed=5)).intervals()
    )
    return grid_document(net), build_device_map(net), truths


def readings_at(device_map, truth) -> list[Reading]:
    readings = []
    for device in device_map["devices"]:
        for point in device["points"]:
            key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
            shown = Decimal(repr(truth.value(*key))) * Decimal(repr(point["scale_to_device"]))
            readings.append(Reading(point=point["id"], ts=truth.ts, value=str(shown)))
    return readings


def metered(target: Store, world) -> list[datetime]:
    """The reference grid metered for N intervals (readings ingested, the live metering path)."""
    topology, device_map, truths = world
    upsert_topology(target, topology_rows(topology))
    upsert_collector(target, "col-1", "secret")
    register_devices(target, device_map["devices"], collector_id="col-1")
    for seq, truth in enumerate(truths):
        batch = Batch(
            collector_id="col-1", batch_id=uuid.uuid4().hex, seq=seq, created_at=truth.ts,
            readings=readings_at(device_map, truth),
        )  # fmt: skip
        ingest_batch(target, batch)
    service = MeteringService(target, topology, INTERVAL_S, uncertainty_samples=8)
    ends = [truth.ts for truth in truths[1:]]
    for end in ends:
        assert service.meter_interval(end, download_factors=False).stored
    return ends


def stored(target: Store, world, skip: tuple[int, ...] = (), scheme1: bool = False) -> list[datetime]:
    """The reference grid's N intervals stored as metering stores them (the engine's result with its
    origin shares, from the interval's snapshot), without going through readings: quicker than
    :func:`metered`, for the tests that do not correct readings.  ``scheme1``: with the result hash
    metering stored before hash scheme 2."""
    topology, _device_map, truths = world
    upsert_topology(target, topology_rows(topology))
    records = []
    for k, truth in enumerate(truths[1:]):
        if k in skip:
            continue
        snapshot = truth.snapshot_document()
        document = interval_result(snapshot, "receiving").document
        record = interval_from_document(
            truth.ts, INTERVAL_S, document, snapshot=snapshot, origin=document["origin"],
            estimation={"completeness": 1.0, "complete": True, "estimates": [], "derived": []},
        )  # fmt: skip
        if scheme1:
            record.hash = document_hash_v1(document)
        records.append(record)
    with target.write() as connection:
        insert_results(connection, records)
    return [truth.ts for truth in truths[1:]]


def fossil_generator(world) -> tuple[str, float]:
    """A fuel-burning generator that runs in every interval: (id, its intensity)."""
    topology, _map, truths = world
    for generator in topology["generators"]:
        intensity = generator.get("intensity_g_per_kwh") or 0.0
        if intensity > 300 and all(t.value("generator", generator["id"], "p_mw") > 1.0 for t in truths):
            return generator["id"], intensity
    raise AssertionError("the reference grid has a fossil unit running throughout")


def table_rows(target: Store, model, *order) -> list[tuple]:
    """Every row of a table, without the columns that record when it was written."""
    table = model.__table__
    skip = ("created_at", "superseded_at", "written_at", "worker", "chain_hash")  # when written, not what
    columns = [c for c in table.c if c.name not in skip]
    with target.read() as connection:
        return [
            tuple(row) for row in connection.execute(select(*columns).order_by(*(table.c[o] for o in order)))
        ]


def test_a_corrected_factor_gives_a_new_version_old_ones_stay_readable_and_diff(store, world):  # noqa: F811
    ends = stored(store, world)
    generator, _intensity = fossil_generator(world)
    first, last = ends[2], ends[7]  # intervals 3..8 are corrected
    correction = add_correction(
        store, "emission_factor", generator, first - SPAN, last, "1100", reason="annual verification"
    )
    before = {end: header_as_of(store, end, 0) for end in ends}
    url = store.engine.url.render_as_string(hide_password=False)
    report = recompute(store, url, ends[0] - SPAN, ends[-1], reason="plant data verified", chunk_intervals=4)
    assert report.created and report.version.version == 1 and report.version.status == "done"
    assert report.intervals == 6 and report.unchanged == N - 6 and report.skipped == []
    assert report.version.corrections == [correction.id]
    for k, end in enumerate(ends):
        now, old = header_as_of(store, end, 1), header_as_of(store, end, 0)
        assert old["hash"] == before[end]["hash"]  # version 0 stays readable
        if 2 <= k <= 7:
            assert now["result_version"] == 1 and now["hash"] != old["hash"]
            assert now["estimation"]["corrections"] == [correction.id]
        else:
            assert now["result_version"] == 0 and now["hash"] == old["hash"]
    # the generator's carbon in version 1 is its energy at the corrected factor
    rows = interval_results(store, "generator", first - SPAN, last, element_ids=[generator])
    assert len(rows) == 6
    for row in rows:
        assert row["carbon_kg"] == pytest.approx(row["energy_kwh"] * 1100 / 1000, rel=1e-9)
    diff = diff_versions(store, 0, 1, ends[0] - SPAN, ends[-1])
    assert diff["intervals"] == N and diff["changed_intervals"] == 6
    expected = sum(r["energy_kwh"] * 1100 / 1000 for r in rows) - sum(
        r["carbon_kg"] for r in archived_generator_rows(store, generator)
    )
    assert diff["totals"]["generation_carbon_kg"]["delta"] == pytest.approx(expected, rel=1e-9)
    changed_users = [u for u in diff["users"] if abs(u["delta_carbon_kg"]) > 1e-9]
    assert changed_users and all(u["user_name"] is not None or u["id"] for u in changed_users)
    assert all(u["delta_carbon_kg"] > 0 for u in changed_users)  # a dirtier unit: more carbon for users
    assert diff_versions(store, 1, 1, ends[0] - SPAN, ends[-1])["changed_intervals"] == 0

    # everything recomputed from the stored inputs (no correction applying): the very same results
    full = recompute(store, url, ends[0] - SPAN, ends[0] + 3 * SPAN, everything=True)
    assert full.created and full.intervals == 0 and full.unchanged == 4 and full.version.version == 2
    store_versions = [v.version for v in list_versions(store)]
    assert store_versions == [1, 2]

    # the same range and inputs again: no new version, nothing written
    again = recompute(store, url, ends[0] - SPAN, ends[-1], chunk_intervals=4)
    assert not again.created and again.version.version == 1 and again.chunks_written == 0
    assert [v.version for v in list_versions(store)] == [1, 2]

    # a loss convention switched for part of the range: version 3, version 1 still readable as it was
    add_correction(store, "losses", None, ends[5], ends[9], "consumer")
    v1 = {end: header_as_of(store, end, 1)["hash"] for end in ends}
    second = recompute(store, url, ends[0] - SPAN, ends[-1], chunk_intervals=4)
    assert second.created and second.version.version == 3 and second.intervals == 4
    assert {end: header_as_of(store, end, 1)["hash"] for end in ends} == v1
    switched = [end for end in ends if header_as_of(store, end, 3)["result_version"] == 3]
    assert switched == ends[6:10]
    with store.read() as connection:
        losses = dict(connection.execute(select(Interval.ts, Interval.losses)).all())
    assert {ts for ts, name in losses.items() if name == "consumer"} == set(switched)
    assert diff_versions(store, 1, 3, ends[0] - SPAN, ends[-1])["changed_intervals"] == 4
    # the hash chains of the intervals verify: each version a link, none rewritten
    checked = verify(store)
    assert checked.clean, checked.summary()
    assert checked.links["interval"] == N + 10  # N first links, 6 + 4 replacements
    # every replaced interval kept its old result once, with all its element rows
    assert count(store, ArchivedInterval) == 10
    assert packed_rows(store) == 10 * rows_per_interval(store, ends[0])
    assert count(store, ArchivedResult) == 0  # packed into the archived headers, none row by row


def test_intervals_stored_under_hash_scheme_1_are_compared_under_scheme_1(store, world):  # noqa: F811
    ends = stored(store, world, scheme1=True)
    before = {end: header_as_of(store, end, 0)["hash"] for end in ends}
    assert all(hash_scheme(digest) == 1 for digest in before.values())
    url = store.engine.url.render_as_string(hide_password=False)
    # everything recomputed, nothing corrected: every result is the stored one, judged by its old hash
    full = recompute(store, url, ends[0] - SPAN, ends[-1], everything=True, chunk_intervals=5)
    assert full.intervals == 0 and full.unchanged == N and full.skipped == []
    generator, _intensity = fossil_generator(world)
    add_correction(store, "emission_factor", generator, ends[3] - SPAN, ends[5], "1100")
    report = recompute(store, url, ends[0] - SPAN, ends[-1], everything=True, chunk_intervals=5)
    assert report.intervals == 3 and report.unchanged == N - 3
    for k, end in enumerate(ends):
        now = header_as_of(store, end, report.version.version)["hash"]
        if 3 <= k <= 5:  # a changed result is stored under scheme 2, its scheme-1 version archived
            assert hash_scheme(now) == 2 and header_as_of(store, end, 0)["hash"] == before[end]
        else:
            assert now == before[end]
    checked = verify(store)
    assert checked.clean and checked.links["interval"] == N + 3, checked.summary()


def packed_rows(target: Store) -> int:
    """Element rows packed into the archived headers (store/archived_rows.py)."""
    table = ArchivedInterval.__table__
    with target.read() as connection:
        values = connection.execute(select(table.c.element_rows)).scalars().all()
    return sum(len(rows) for value in values for rows in unpack_rows(value).values())


def archived_generator_rows(target: Store, generator: str) -> list[dict]:
    table = ArchivedInterval.__table__
    with target.read() as connection:
        values = connection.execute(select(table.c.element_rows).where(table.c.version == 0)).scalars()
        return [
            row
            for value in values
            for row in unpack_rows(value)["generator"]
            if row["element_id"] == generator
        ]


def count(target: Store, model) -> int:
    with target.read() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def rows_per_interval(target: Store, end: datetime) -> int:
    return sum(len(interval_results(target, kind, end - SPAN, end)) for kind in RESULT_MODELS)


def test_gaps_are_reported_and_left_alone_and_bad_ranges_refused(store, world):  # noqa: F811
    ends = stored(store, world, skip=(4, 5))
    generator, _ = fossil_generator(world)
    add_correction(store, "emission_factor", generator, ends[0] - SPAN, ends[-1], "950")
    url = store.engine.url.render_as_string(hide_password=False)
    report = recompute(store, url, ends[0] - SPAN, ends[-1], chunk_intervals=5)
    assert [item["ts"] for item in report.skipped] == [ends[4].isoformat(), ends[5].isoformat()]
    assert all("not metered" in item["reason"] for item in report.skipped)
    assert report.intervals == N - 2 and report.version.skipped == report.skipped
    for end in ends[4:6]:
        assert header_as_of(store, end, 1) is None  # nothing was made up for the gap
    with pytest.raises(RecomputeError, match="no metered interval"):
        recompute(store, url, START - timedelta(days=3), START - timedelta(days=2))
    with pytest.raises(RecomputeError, match="must be before"):
        recompute(store, url, ends[-1], ends[0])
    with pytest.raises(CorrectionError, match="unknown generator 'G-NOPE'"):
        add_correction(store, "emission_factor", "G-NOPE", ends[0], ends[1], "10")
    with pytest.raises(CorrectionError, match="not a decimal"):
        add_correction(store, "emission_factor", generator, ends[0], ends[1], "ten")


@pytest.mark.parametrize("scheme", [2, 1])
def test_a_corrected_reading_meters_its_intervals_again_from_the_readings(
    tmp_path, world, scheme, monkeypatch
):
    target = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    with monkeypatch.context() as patched:
        if scheme == 1:  # metered live before hash scheme 2: the hash of the document's canonical JSON
            patched.setattr(
                results_module, "result_hash", lambda r, o, *_, **__: document_hash_v1(result_document(r, o))
            )
        ends = metered(target, world)
    assert {hash_scheme(header_as_of(target, end, 0)["hash"]) for end in ends} == {scheme}
    _topology, device_map, truths = world
    points = [p for d in device_map["devices"] for p in d["points"] if p["element_kind"] == "load"]
    counted = {p["element_id"] for p in points if p["quantity"].endswith("energy_kwh")}
    point = next(p for p in points if p["quantity"] == "p_mw" and p["element_id"] not in counted)
    load = point["element_id"]
    k = 6  # the load's power sampled at the end of interval k reads 2 MW more: 500 kWh more in it
    shown = Decimal(repr(truths[k].value("load", load, "p_mw", point["end"])))
    corrected = (shown + 2) * Decimal(repr(point["scale_to_device"]))
    add_correction(target, "reading", point["id"], truths[k].ts, truths[k].ts, str(corrected))
    window = (ends[0] - SPAN, ends[-1])
    energy = {r["ts"]: r["energy_kwh"] for r in interval_results(target, "load", *window, element_ids=[load])}
    report = recompute(target, f"sqlite:///{tmp_path / 'center.db'}", *window, chunk_intervals=4)
    assert report.skipped == [] and report.intervals == 1
    after = {r["ts"]: r["energy_kwh"] for r in interval_results(target, "load", *window, element_ids=[load])}
    assert after[truths[k].ts] - energy[truths[k].ts] == pytest.approx(500, abs=1e-6)
    assert all(after[e] == energy[e] for e in ends if e != truths[k].ts)
    assert header_as_of(target, truths[k].ts, 1)["estimation"]["corrections"] == [1]
    assert hash_scheme(header_as_of(target, truths[k].ts, 1)["hash"]) == 2
    target.close()


def filled_copy(tmp_path, world, name: str) -> str:
    """One metered store per test module run, copied: every copy holds the very same bytes."""
    source = tmp_path.parent / "recompute-source.db"
    if not source.exists():
        target = Store.open(f"sqlite:///{source}")
        ends = stored(target, world)
        generator, _ = fossil_generator(world)
        add_correction(target, "emission_factor", generator, ends[0] - SPAN, ends[-1], "1234.5")
        add_correction(target, "losses", None, ends[3], ends[8], "consumer")
        target.close()
    shutil.copy(source, tmp_path / name)
    return f"sqlite:///{tmp_path / name}"


RESULT_TABLES = (
    (Interval, ("ts",)),
    *((model, ("ts", "element_id")) for model in RESULT_MODELS.values()),
    (ArchivedInterval, ("version", "ts")),  # the replaced results with their packed element rows
)


def results_of(url: str) -> list[list[tuple]]:
    target = Store.open(url)
    try:
        return [table_rows(target, model, *order) for model, order in RESULT_TABLES]
    finally:
        target.close()


def span_of(url: str) -> tuple[datetime, datetime]:
    target = Store.open(url)
    with target.read() as connection:
        first, last = connection.execute(select(func.min(Interval.ts), func.max(Interval.ts))).one()
    target.close()
    return first - SPAN, last


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    ) as local:
        yield local


def test_a_dask_cluster_and_one_process_write_identical_results(tmp_path, world, cluster):
    # the local pool is compared with one process in the killed-worker test below
    url = filled_copy(tmp_path, world, "dask.db")
    first, last = span_of(url)
    run = recompute(
        Store.open(url), url, first, last, dask_address=cluster.scheduler_address, chunk_intervals=3
    )
    assert run.intervals == N and run.version.runner == f"dask {cluster.scheduler_address}"
    assert results_of(url) == results_of(recomputed_once(tmp_path, world))


def test_dask_on_postgresql_writes_what_one_process_writes_on_sqlite(tmp_path, world, cluster, postgres_url):  # noqa: F811
    target = Store.open(postgres_url)
    try:
        ends = stored(target, world)
        generator, _ = fossil_generator(world)
        add_correction(target, "emission_factor", generator, ends[0] - SPAN, ends[-1], "1234.5")
        add_correction(target, "losses", None, ends[3], ends[8], "consumer")
        run = recompute(
            target,
            postgres_url,
            ends[0] - SPAN,
            ends[-1],
            dask_address=cluster.scheduler_address,
            chunk_intervals=3,
        )
    finally:
        target.close()
    assert run.intervals == N and run.skipped == []
    on_postgresql = [sorted(rows, key=repr) for rows in results_of(postgres_url)]
    assert on_postgresql == [sorted(rows, key=repr) for rows in results_of(recomputed_once(tmp_path, world))]


def killed_mid_chunk(url: str, drill, **runner) -> tuple[object, int]:
    """Recompute ``url``'s span with ``runner`` and SIGKILL the first worker that announces a chunk
    (the drill: each worker touches version-chunk-pid in ``drill`` once it has computed a chunk, then
    holds it before writing); the report and the victim's pid."""
    first, last = span_of(url)
    outcome: dict = {}
    thread = threading.Thread(
        target=lambda: outcome.update(
            report=recompute(Store.open(url), url, first, last, chunk_intervals=3, **runner)
        )
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not list(drill.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = int(sorted(drill.iterdir())[0].name.split("-")[2])
    os.kill(victim, signal.SIGKILL)  # mid-chunk: computed, not yet written
    thread.join(timeout=120)
    assert not thread.is_alive()
    return outcome["report"], victim


@pytest.mark.parametrize("runner", ["local", "dask"])
def test_a_worker_killed_mid_chunk_leaves_no_duplicate_and_no_missing_result(
    tmp_path, world, cluster, monkeypatch, runner
):
    url = filled_copy(tmp_path, world, "killed.db")
    drill = tmp_path / "drill"
    drill.mkdir()
    setting = f"{drill}:1.0"
    if runner == "local":  # the pool's spawned processes inherit the environment
        monkeypatch.setenv(DRILL_ENV, setting)
        report, victim = killed_mid_chunk(url, drill, workers=2)
    else:
        client = __import__("distributed").Client(cluster.scheduler_address)
        client.run(lambda: os.environ.update({DRILL_ENV: setting}))  # a lambda: sent by value
        try:
            report, victim = killed_mid_chunk(url, drill, dask_address=cluster.scheduler_address)
        finally:
            client.run(lambda: os.environ.pop(DRILL_ENV, None))
            client.close()
    assert victim != os.getpid()
    assert report.version.runner == (
        "local 2 processes" if runner == "local" else f"dask {cluster.scheduler_address}"
    )
    assert report.version.status == "done" and report.intervals == N and report.skipped == []
    target = Store.open(url)
    try:
        assert count(target, RecomputeChunk) == 4  # 12 intervals in chunks of 3: each written once
        assert count(target, ArchivedInterval) == N and count(target, IntervalVersion) == N
        with target.read() as connection:
            links = connection.execute(select(Interval.ts, Interval.chain_seq, Interval.estimation)).all()
        assert len(links) == N
        assert all(seq == 2 and estimation["result_version"] == 1 for _ts, seq, estimation in links)
    finally:
        target.close()
    assert results_of(url) == results_of(recomputed_once(tmp_path, world))


def recomputed_once(tmp_path, world) -> str:
    url = filled_copy(tmp_path, world, "reference.db")
    first, last = span_of(url)
    recompute(Store.open(url), url, first, last, chunk_intervals=3)
    return url


def test_the_cli_corrects_recomputes_lists_and_diffs_and_refuses_bad_input(tmp_path, world, capsys):
    from carbonflow.cli import main

    url = filled_copy(tmp_path, world, "cli.db")
    first, last = span_of(url)
    generator, _ = fossil_generator(world)
    database = ["--database", url]
    code = main(["center", "correct", "emission_factor", "--element", generator, "--from", first.isoformat(),
                 "--to", last.isoformat(), "--value", "1500", "--reason", "verified", *database])  # fmt: skip
    assert code == 0 and "correction 3" in capsys.readouterr().out
    rerun = ["center", "recompute", "--from", first.isoformat(), "--to", last.isoformat(), "--chunk", "5"]
    assert main([*rerun, "--reason", "verified", *database]) == 0
    assert f"version 1: {N} intervals recomputed" in capsys.readouterr().out
    assert main([*rerun, *database]) == 0
    assert "no new version" in capsys.readouterr().out
    assert main(["center", "versions", *database]) == 0
    assert "version 1: (" in capsys.readouterr().out
    assert main(["center", "diff", "0", "1", *database]) == 0
    out = capsys.readouterr().out
    assert f"{N} of {N} intervals differ" in out and "generation_carbon_kg" in out and "users:" in out
    bad = [
        (["recompute", "--from", last.isoformat(), "--to", first.isoformat()], "must be before"),
        (["recompute", "--from", "yesterday", "--to", last.isoformat()], "--from: not an ISO 8601 time"),
        (["correct", "emission_factor", "--element", "G-NOPE", "--from", first.isoformat(), "--to",
          last.isoformat(), "--value", "1"], "unknown generator 'G-NOPE'"),
        (["diff", "0", "7"], "no version 7"),
    ]  # fmt: skip
    for argv, message in bad:
        assert main(["center", *argv, *database]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_the_api_answers_any_version_and_the_diff_in_one_call(tmp_path, world):
    from fastapi.testclient import TestClient

    from carbonflow.center.api import CenterSettings, create_app
    from carbonflow.center.store import create_user

    url = filled_copy(tmp_path, world, "api.db")
    first, last = span_of(url)
    target = Store.open(url)
    create_user(target, "ops", "long-password", "operator")
    recompute(target, url, first, last, chunk_intervals=6)
    from carbonflow.center.reports.build import build_report

    day = build_report(target, "day", first.astimezone(UTC).date().isoformat(), time_zone="UTC")
    assert dict(day.summary)["result version"] == "1"  # the report names the version it was made from
    app = create_app(CenterSettings(database_url=url), store=target)
    with TestClient(app, headers={"Origin": "http://testserver"}) as client:
        token = client.post("/api/v1/login", json={"name": "ops", "password": "long-password"}).json()[
            "token"
        ]
        client.headers["Authorization"] = f"Bearer {token}"
        ts = last.isoformat()
        now, then = client.get("/api/v1/results", params={"ts": ts}).json(), None
        then = client.get("/api/v1/results", params={"ts": ts, "version": 0}).json()
        assert now["result_version"] == 1 and then["result_version"] == 0 and now["hash"] != then["hash"]
        assert len(then["buses"]) == len(now["buses"]) == 104
        buses = client.get("/api/v1/results/bus", params={"ts": ts, "version": 0, "format": "json"}).json()
        assert buses["result_version"] == 0
        assert {r["element_id"]: r["carbon_kg"] for r in buses["items"]} == {
            b["element_id"]: b["carbon_kg"] for b in then["buses"]
        }
        listed = client.get("/api/v1/versions").json()
        assert listed["current"] == 1 and listed["items"][0]["intervals"] == N
        diff = client.get("/api/v1/versions/diff", params={"a": 0, "b": 1}).json()
        assert diff["changed_intervals"] == N and {"buses", "users", "totals"} <= set(diff)
        assert client.get("/api/v1/versions/diff", params={"a": 0, "b": 9}).status_code == 404
        made = client.post(
            "/api/v1/corrections",
            json={"kind": "emission_factor", "element_id": "G-NOPE", "start": first.isoformat(),
                  "end": last.isoformat(), "value": "3"},
        )  # fmt: skip
        assert made.status_code == 422 and "unknown generator" in made.json()["error"]
        made = client.post(
            "/api/v1/corrections",
            json={"kind": "losses", "start": first.isoformat(), "end": last.isoformat(), "value": "consumer"},
        )
        assert made.status_code == 200 and made.json()["id"] == 3
        assert len(client.get("/api/v1/corrections").json()["items"]) == 3
    target.close()

"""Mutual verification over real HTTP (province + 2 cities of the reference grid): tampered totals, a
wrong import intensity, a drifted tie meter and a clock skew each raise the right mismatch at both
levels; a bad signature is refused and audited; the province down -> backlog, then delivered once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cascade_world import TOKEN, World
from sqlalchemy import func, select

from carbonflow.center.cascade.config import new_key
from carbonflow.center.store.cascade import CascadeMessage, verifications
from carbonflow.center.store.schema import AuditEntry
from carbonflow.messages.c5 import Envelope, Verification
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 6, 1, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def grid_and_truths():
    net = reference_grid()
    truths = list(Simulation(net, SimConfig(start=START, interval_s=3600, count=3, seed=4)).intervals())
    return grid_document(net), [(t.ts, t.snapshot_document()) for t in truths]


def run_world(grid, tmp_path, scenario, **world_kwargs):
    async def main():
        world = World(grid, tmp_path, lambda cid: f"sqlite:///{tmp_path / (cid + '.db')}", max_level="city",
                      **world_kwargs)  # fmt: skip
        await world.start()
        try:
            return world, await scenario(world)
        finally:
            await world.stop()

    return asyncio.run(main())


def checks(world, center_id, status="mismatch"):
    """(check, judge) of the verdicts with ``status`` stored at one center."""
    return {
        (v["check"], v["judge"])
        for v in verifications(world.centers[center_id].store)
        if v["status"] == status
    }


def alarms(world, center_id):
    return {(m.verdict["check"], m.judge) for m in world.centers[center_id].mismatches}


def drift(part, factor):
    """Every tie meter of the part reads ``factor`` times the true flow."""
    for tie in part["ties"]:
        tie["p_mw"] *= factor
    return part


def tampering(kind, change):
    def before_send(envelope: Envelope) -> Envelope:
        if envelope.payload.kind != kind:
            return envelope
        data = envelope.model_dump(mode="json")
        change(data["payload"])
        return Envelope.model_validate(data)

    return before_send


@pytest.mark.parametrize(
    ("case", "node_kwargs", "tamper", "expected"),
    [
        ("tampered total",
         {"ah-hf": {"before_send": tampering("interval_report", lambda p: p["totals"].update(
             load_carbon_t=p["totals"]["load_carbon_t"] * 1.1))}},
         None, {"balance", "hierarchical"}),
        ("wrong import intensity",
         {"ah-hf": {"before_send": tampering("interval_report", lambda p: [
             t.update(import_intensity_g_per_kwh=t["import_intensity_g_per_kwh"] + 50.0)
             for t in p["ties"] if t["import_intensity_g_per_kwh"] is not None])}},
         None, {"tie_intensity"}),
        ("drifted tie meter", {},
         lambda cid, part: drift(part, 1.08) if cid == "ah-hf" else None,
         {"tie_flow"}),
    ],
)  # fmt: skip
def test_a_mismatch_is_raised_at_both_levels(grid_and_truths, tmp_path, case, node_kwargs, tamper, expected):
    grid, truths = grid_and_truths
    ts, snapshot = truths[0]

    async def scenario(world):
        world.submit(ts, snapshot, tamper=tamper)
        await world.wait(ts)

    world, _ = run_world(grid, tmp_path, scenario, node_kwargs=node_kwargs)
    upper = {check for check, judge in checks(world, "ah") if judge == "ah"}
    lower = {check for check, judge in checks(world, "ah-hf") if judge == "ah"}
    assert expected <= upper, case
    assert expected <= lower, case
    assert expected <= {check for check, _ in alarms(world, "ah")} & {
        check for check, _ in alarms(world, "ah-hf")
    }
    if case == "drifted tie meter":  # a tie's two ends disagree: both regions of the tie are named
        assert "tie_flow" in {check for check, judge in checks(world, "ah-wh") if judge == "ah"}
    else:  # the honest city is not accused
        assert checks(world, "ah-wh") == set()


def test_a_clock_ahead_is_refused_and_raised_at_both_levels(grid_and_truths, tmp_path):
    grid, truths = grid_and_truths
    _, snapshot = truths[0]
    future = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)

    async def scenario(world):
        world.centers["ah-hf"].node.submit_part(future, world_part(world, "ah-hf", snapshot))
        for _ in range(200):
            if alarms(world, "ah-hf"):
                break
            await asyncio.sleep(0.05)
        return world.centers["ah-hf"].node.outbox.refused("ah")

    world, refused = run_world(grid, tmp_path, scenario)
    assert ("clock", "ah") in checks(world, "ah")
    assert ("clock", "ah") in checks(world, "ah-hf")  # the refusal comes back as a verdict
    assert [r["kind"] for r in refused] == ["region_data"]  # kept aside at the sender, not lost


def world_part(world, cid, snapshot):
    from carbonflow.center.cascade.split import region_part

    return region_part(snapshot, world.regions, world.configs[cid].region)


def test_bad_signature_unknown_peer_and_replay_are_refused_or_deduplicated_and_audited(
    grid_and_truths, tmp_path
):
    grid, truths = grid_and_truths
    ts, snapshot = truths[0]

    async def scenario(world):
        world.submit(ts, snapshot)
        await world.wait(ts)
        province = world.centers["ah"]
        city = world.centers["ah-hf"]
        genuine = Envelope(
            message_id=uuid.uuid4().hex, sender="ah-hf", recipient="ah", ts=ts + timedelta(hours=5),
            interval_s=3600, created_at=datetime.now(UTC),
            payload=Verification(report_hash="0" * 64, status="ok"),
        )  # fmt: skip
        answers = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{province.port}") as client:
            url = "/api/v1/cascade/messages"
            forged = genuine.signed(new_key())
            answers["bad signature"] = await client.post(url, content=forged.model_dump_json())
            stranger = genuine.model_copy(update={"sender": "ah-xx"}).signed(city.node.key)
            answers["unknown peer"] = await client.post(url, content=stranger.model_dump_json())
            answers["garbage"] = await client.post(url, content=b"{not json")
            sent = city.node._find("out", "ah", "region_data", ts)
            again = Envelope(
                message_id=uuid.uuid4().hex, sender="ah-hf", recipient="ah", ts=ts, interval_s=3600,
                created_at=datetime.now(UTC), payload=sent.payload,
            )  # fmt: skip
            answers["replay"] = await client.post(url, content=again.signed(city.node.key).model_dump_json())
            answers["views"] = await client.get(
                "/api/v1/cascade", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            changed = json.loads(json.dumps(sent.payload))
            changed["part"]["loads"][0]["p_mw"] += 1.0
            other = Envelope.model_validate(
                {**again.model_dump(mode="json"), "message_id": uuid.uuid4().hex, "payload": changed}
            )
            answers["new version"] = await client.post(
                url, content=other.signed(city.node.key).model_dump_json()
            )
            answers["new version again"] = await client.post(
                url, content=other.signed(city.node.key).model_dump_json()
            )
            first = again.model_copy(update={"message_id": uuid.uuid4().hex}).signed(city.node.key)
            answers["old version replayed"] = await client.post(url, content=first.model_dump_json())
            answers["no login"] = await client.get("/api/v1/cascade")
        return answers, sent

    world, (answers, sent) = run_world(grid, tmp_path, scenario)
    assert answers["bad signature"].status_code == 403
    assert answers["bad signature"].json()["error"] == "bad signature"
    assert answers["unknown peer"].status_code == 403
    assert answers["garbage"].status_code == 422 and set(answers["garbage"].json()) == {"error", "detail"}
    assert answers["no login"].status_code == 401
    view = answers["views"].json()
    assert view["center"] == {"id": "ah", "region": "AH", "level": "province"}
    assert {p["id"]: p["direction"] for p in view["peers"]} == {"ah-hf": "lower", "ah-wh": "lower"}
    assert all(p["verification"]["status"] == "ok" and p["backlog"] == 0 for p in view["peers"])
    with world.centers["ah"].store.read() as connection:
        actions = connection.execute(select(AuditEntry.action)).scalars().all()
    assert "cascade message bad signature" in actions and "cascade message unknown peer" in actions
    assert answers["replay"].status_code == 200 and answers["replay"].json()["status"] == "duplicate"
    # a different part for an interval already received is a new version (re-metered), not a conflict;
    # the same message again, or an earlier version replayed, is a duplicate
    assert answers["new version"].status_code == 200
    assert answers["new version"].json()["status"] == "accepted"
    assert answers["new version"].json()["version"] == 2
    for name in ("new version again", "old version replayed"):
        assert answers[name].status_code == 200 and answers[name].json()["status"] == "duplicate", name
    with world.centers["ah"].store.read() as connection:
        counted = connection.execute(
            select(func.count()).where(CascadeMessage.peer == "ah-hf", CascadeMessage.kind == "region_data")
        ).scalar_one()
    assert counted == 2  # two versions, each stored once
    assert sent is not None


def test_province_down_backlog_then_caught_up_exactly_once(grid_and_truths, tmp_path):
    grid, truths = grid_and_truths

    async def scenario(world):
        province = world.centers["ah"]
        await province.stop()
        for ts, snapshot in truths:
            world.submit(ts, snapshot)
        await asyncio.sleep(1.0)
        backlog = {cid: world.centers[cid].node.outbox.backlog("ah") for cid in ("ah-hf", "ah-wh")}
        back = time.perf_counter()
        await province.start()
        for ts, _ in truths:
            await world.wait(ts, timeout_s=60)
        caught_up_s = time.perf_counter() - back
        for _ in range(200):
            left = sum(world.centers[cid].node.outbox.backlog("ah") for cid in ("ah-hf", "ah-wh"))
            if not left:
                break
            await asyncio.sleep(0.05)
        print(f"\nprovince back: {len(truths)} intervals caught up and verified in {caught_up_s:.2f} s")
        return backlog, left

    world, (backlog, left) = run_world(grid, tmp_path, scenario)
    assert backlog == {"ah-hf": len(truths), "ah-wh": len(truths)}  # one region part per interval, waiting
    with world.centers["ah"].store.read() as connection:
        per_key = connection.execute(
            select(CascadeMessage.peer, CascadeMessage.kind, CascadeMessage.ts, func.count())
            .where(CascadeMessage.direction == "in")
            .group_by(CascadeMessage.peer, CascadeMessage.kind, CascadeMessage.ts)
        ).all()
    assert len(per_key) == 2 * 2 * len(truths)  # region data + report, per city, per interval
    assert {row[3] for row in per_key} == {1}
    assert checks(world, "ah") == set() and checks(world, "ah-hf") == set()
    assert left == 0

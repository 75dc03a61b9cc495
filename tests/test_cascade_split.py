"""The topology split and the hierarchical computation without a network: the reference grid cut into
its province, cities and counties meters every bus exactly as the monolithic solve does (both loss
conventions, a simulated day); the verification checks judge honest and dishonest reports; the cascade
store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy.exc import IntegrityError

from carbonflow.center.cascade.compute import child_imports, solve_part
from carbonflow.center.cascade.config import CascadeConfig
from carbonflow.center.cascade.layout import cascade_configs, regions_of
from carbonflow.center.cascade.split import CascadeError, bus_regions, in_region, merge_parts, region_part
from carbonflow.center.cascade.verify import balance, judge_report, tie_flows
from carbonflow.center.store import cascade as cstore
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.messages.c5 import IntervalReport, RegionTotals, TieFlow
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def day():
    net = reference_grid()
    truths = Simulation(net, SimConfig(start=START, interval_s=3600, count=24, seed=7)).intervals()
    return grid_document(net), [t.snapshot_document() for t in truths]


def tree_of(grid):
    paths = [r["path"] for r in regions_of(grid)]
    return {p: [c for c in paths if c.rsplit("/", 1)[0] == p and "/" in c] for p in paths}


def hierarchical(grid, snapshot, losses):
    """Every center's part merged upwards, solved from the top down with the import intensities handed
    down: the intensity of every bus as the county metering it computes it, and each level's results."""
    tree, regions = tree_of(grid), bus_regions(grid)
    parts, results = {}, {}

    def up(region):
        children = tree[region]
        parts[region] = (
            merge_parts(region, [up(c) for c in children])
            if children
            else region_part(snapshot, regions, region)
        )
        return parts[region]

    def down(region, imports):
        results[region] = solve_part(parts[region], imports, losses, 3600)
        for child in tree[region]:
            down(child, child_imports(parts[child], results[region], imports))

    up("AH")
    down("AH", {})
    return parts, results


def test_regions_are_path_prefixes():
    assert in_region("AH/HF/FX", "AH/HF") and in_region("AH/HF", "AH/HF") and not in_region("AH/HFX", "AH/HF")


@pytest.mark.parametrize("losses", ["receiving", "consumer"])
def test_hierarchical_equals_monolithic_on_every_bus_over_a_day(day, losses):
    grid, snapshots = day
    worst = 0.0
    for snapshot in snapshots:
        mono = {
            b["id"]: b["intensity_g_per_kwh"]
            for b in result_document(solve(snapshot_from_dict(snapshot), losses))["buses"]
        }
        _, results = hierarchical(grid, snapshot, losses)
        counties = [r for r in results if r.count("/") == 2]
        metered = {bus: e for r in counties for bus, e in results[r].intensities.items()}
        assert set(metered) == set(mono)  # every bus metered by exactly one county
        for bus, e in metered.items():
            assert (e is None) == (mono[bus] is None), bus
            if e is not None:
                worst = max(worst, abs(e - mono[bus]))
        for r in results.values():  # every level's balance closes
            report = IntervalReport(totals=r.totals, ties=r.ties, result_hash=r.result_hash)
            assert {v.status for v in balance(report)} == {"ok"}, r.region
    assert worst <= 1e-6, worst


def test_the_upper_judges_honest_reports_ok_and_names_a_tampered_total(day):
    grid, snapshots = day
    parts, results = hierarchical(grid, snapshots[12], "receiving")
    city, county = results["AH/HF"], results["AH/HF/FX"]
    handed = county.imports
    honest = IntervalReport(totals=county.totals, ties=county.ties, result_hash=county.result_hash)
    assert {v.status for v in judge_report(honest, parts["AH/HF/FX"], handed, city, parts["AH/HF"])} == {"ok"}
    tampered = honest.model_copy(update={"totals": county.totals.model_copy(update={"load_carbon_t": 1.0})})
    bad = [
        v for v in judge_report(tampered, parts["AH/HF/FX"], handed, city, parts["AH/HF"]) if v.status != "ok"
    ]
    assert {(v.check, v.subject) for v in bad} >= {("balance", "carbon_t"), ("hierarchical", "load_carbon_t")}
    named = next(v for v in bad if v.subject == "load_carbon_t")
    assert named.found == 1.0 and named.expected == pytest.approx(county.totals.load_carbon_t)


def test_a_bus_claimed_twice_or_a_missing_import_intensity_is_one_clear_error(day):
    grid, snapshots = day
    regions = bus_regions(grid)
    part = region_part(snapshots[0], regions, "AH/HF/FX")
    with pytest.raises(CascadeError, match="is in both"):
        merge_parts("AH/HF", [part, part])
    with pytest.raises(CascadeError, match="no import intensity"):
        solve_part(part, {}, "receiving", 3600)


def test_a_configuration_names_its_mistake(tmp_path):
    configs = cascade_configs(regions_of(grid_document(reference_grid()), "city"), lambda cid: "", tmp_path)
    assert configs["ah"].lowers and configs["ah-hf"].upper.id == "ah"
    path = tmp_path / "bad.toml"
    path.write_text('[cascade]\ncenter_id = "x"\nregion = "AH"\nlevel = "state"\nprivate_key = "AA=="\n')
    with pytest.raises(CascadeError) as caught:
        CascadeConfig.load(path)
    assert "level" in str(caught.value) and "\n" not in str(caught.value)


def test_cascade_store_keeps_messages_results_and_verdicts(store):  # noqa: F811
    ts = datetime(2026, 6, 1, 1, tzinfo=UTC)
    message = cstore.StoredMessage("m-1", "in", "ah-hf", "region_data", ts, {"part": {}}, "d" * 64, ts)
    cstore.save_message(store, message, 3600, ts)
    assert cstore.find_message(store, "in", "ah-hf", "region_data", ts).message_id == "m-1"
    assert cstore.last_exchange(store, "ah-hf") == ts
    assert cstore.pending_intervals(store, ts) == [ts]
    cstore.save_result(store, ts, "AH", 3600, "receiving", "h" * 64, {"a": 1.0}, {"buses": []}, ts)
    assert cstore.pending_intervals(store, ts) == []
    verdicts = [
        {"check": "balance", "status": "mismatch", "subject": "carbon_t", "expected": 1.0, "found": 2.0}
    ]
    for _ in range(2):  # judged again: replaced, never counted twice
        cstore.save_verdicts(store, ts, "ah-hf", "ah", "r" * 64, verdicts, ts)
    assert len(cstore.verifications(store, ts)) == 1
    assert cstore.verification_summary(store, "ah-hf") == {
        "status": "mismatch", "last_verified_ts": ts.isoformat(), "mismatches": 1,
    }  # fmt: skip
    assert cstore.judged_hash(store, ts, "ah-hf", "ah") == "r" * 64


def test_a_group_commit_stores_what_each_write_stores(store):  # noqa: F811
    """The node's writes go to the store in one driver-level batch per statement: read back through the
    ORM they are what the writes say; a result or a judge's verdicts written twice in one group: the
    last stands; a failing group stores nothing and fails as SQLAlchemy would (IntegrityError)."""
    ts = datetime(2026, 6, 1, 1, tzinfo=UTC)
    local = ts.astimezone(timezone(timedelta(hours=8)))  # stored as the same instant, in UTC
    messages = [
        cstore.StoredMessage(
            f"m-{n}",
            "in",
            "ah-hf",
            "region_data",
            local,
            {"part": {"n": n, "名": "合肥"}},
            f"{n}" * 64,
            local,
        )
        for n in range(2)
    ]
    verdict = {"check": "balance", "status": "ok", "subject": "carbon_t", "expected": 1.5, "found": None,
               "tolerance": 0.1, "detail": "近"}  # fmt: skip
    cstore.commit_group(
        store,
        [
            cstore.MessageWrite(messages[0], 3600, ts),
            cstore.VerdictsWrite(ts, "ah-hf", "ah", "a" * 64, [verdict, verdict], ts),
            cstore.ResultWrite(ts, "AH", 3600, "receiving", "h" * 64, {"a": 1.0}, {"buses": []}, ts),
            cstore.MessageWrite(messages[1], 3600, ts),
            cstore.VerdictsWrite(ts, "ah-hf", "ah", "b" * 64, [verdict], ts),  # judged again: replaces
            cstore.ResultWrite(ts, "AH", 3600, "receiving", "g" * 64, {"a": 2.0}, {"buses": [1]}, ts),
            cstore.VerdictsWrite(ts, "ah-wh", "ah", None, [], ts),  # no verdicts: nothing stored
        ],
    )
    stored = cstore.messages_at(store, ts)
    assert stored == messages and all(m.ts.tzinfo is UTC and m.received_at.tzinfo is UTC for m in stored)
    assert cstore.find_message(store, "in", "ah-hf", "region_data", ts) == stored[-1]  # the ORM agrees
    [row] = cstore.verifications(store, ts)
    assert row == {**verdict, "ts": ts.isoformat(), "peer": "ah-hf", "judge": "ah", "report_hash": "b" * 64,
                   "created_at": ts.isoformat()}  # fmt: skip
    assert cstore.judged_hash(store, ts, "ah-wh", "ah") is None
    result = cstore.result_at(store, ts, "AH")
    assert (result["hash"], result["totals"], result["document"]) == ("g" * 64, {"a": 2.0}, {"buses": [1]})
    again = cstore.StoredMessage("m-2", "in", "ah-wh", "region_data", ts, {}, "2" * 64, ts)
    with pytest.raises(IntegrityError):  # m-0 is stored: the unique message id refuses the whole group
        cstore.commit_group(
            store,
            [
                cstore.MessageWrite(again, 3600, ts),
                cstore.ResultWrite(ts, "AH", 3600, "receiving", "x" * 64, {}, {}, ts),
                cstore.MessageWrite(messages[0], 3600, ts),
            ],
        )
    assert cstore.messages_at(store, ts) == messages
    assert cstore.result_at(store, ts, "AH")["hash"] == "g" * 64
    assert not cstore.message_seen(store, "m-2") and cstore.message_seen(store, "m-1")


def _tie_report(p_into_lower_mw: float) -> IntervalReport:
    zero = dict.fromkeys(
        ("generation_carbon_t", "load_carbon_t", "loss_carbon_t", "generation_energy_kwh", "load_energy_kwh",
         "loss_energy_kwh"), 0.0)  # fmt: skip
    tie = TieFlow(branch_id="L1", lower_bus="B2", upper_bus="B1", p_into_lower_mw=p_into_lower_mw,
                  energy_into_lower_kwh=p_into_lower_mw * 1000 / 12)  # fmt: skip
    return IntervalReport(totals=RegionTotals(region="AH/HF", **zero), ties=[tie], result_hash="0" * 64)


def test_tie_ends_are_compared_within_their_metered_uncertainty():
    """Each end of a tie is the mean of its own RTU's samples: a changing flow sampled at other moments
    differs by more than the loss band, and the two ends' uncertainty (carried in the parts) allows it;
    without it, or beyond it, the tie is a mismatch."""
    snapshot = {
        "buses": [{"id": "B1"}, {"id": "B2"}],
        "branches": [{"id": "L1", "from_bus": "B1", "to_bus": "B2", "p_from_mw": 20.77, "p_to_mw": -21.61,
                      "u_p_from_mw": 0.35, "u_p_to_mw": 0.4}],
    }  # fmt: skip
    regions = {"B1": "AH/HF", "B2": "AH/HF/FX"}
    upper_own = {"B1": "AH/HF", "B2": "X"}  # the city's own buses: B2 is metered by the county
    parts = [region_part(snapshot, regions, "AH/HF/FX"), region_part(snapshot, upper_own, "AH/HF")]
    assert parts[0]["ties"][0]["u_p_mw"] == 0.4 and parts[1]["ties"][0]["u_p_mw"] == 0.35
    merged = merge_parts("AH/HF", parts)
    assert merged["branches"][0]["u_p_from_mw"] == 0.35 and merged["branches"][0]["u_p_to_mw"] == 0.4
    [verdict] = tie_flows(_tie_report(21.61), merged)
    assert verdict.status == "ok", verdict  # -0.84 MW "loss" within 2 × hypot(0.35, 0.4) = 1.06 MW
    [verdict] = tie_flows(_tie_report(23.0), merged)
    assert verdict.status == "mismatch" and "combined 1σ" in verdict.detail, verdict
    for branch in merged["branches"]:
        branch.pop("u_p_from_mw"), branch.pop("u_p_to_mw")
    [verdict] = tie_flows(_tie_report(21.61), merged)
    assert verdict.status == "mismatch", verdict  # exact ends (truth snapshots): only the loss band


def test_a_metered_region_balance_is_judged_within_its_uncertainty():
    """A load held from the previous interval (no reading: 10 % 1σ) leaves the region's balance open
    by more than any fixed share; the part carries every metered power's 1σ, the report the balance's,
    and the judge allows two of it.  Exact data (no uncertainty) keeps the tight tolerance."""
    part = {
        "region": "AH/HF/FX",
        "buses": [{"id": "B1"}, {"id": "B2"}],
        "generators": [{"id": "G1", "bus": "B1", "p_mw": 100.0, "intensity_g_per_kwh": 800.0, "u_p_mw": 0.2}],
        "loads": [{"id": "D1", "bus": "B2", "p_mw": 98.2, "u_p_mw": 9.8}],  # held: truth was 99.0
        "branches": [{"id": "L1", "from_bus": "B1", "to_bus": "B2", "p_from_mw": 100.0, "p_to_mw": -99.0,
                      "u_p_from_mw": 0.3, "u_p_to_mw": 0.3}],
        "ties": [],
    }  # fmt: skip
    result = solve_part(part, {}, "receiving", 3600)
    totals = result.totals
    assert totals.u_balance_kwh == pytest.approx(1000 * (0.2**2 + 9.8**2 + 0.3**2 + 0.3**2) ** 0.5)
    report = IntervalReport(totals=totals, ties=[], result_hash="0" * 64)
    assert {v.status for v in balance(report)} == {"ok"}  # 0.8 MWh open of 100: within 2σ
    exact = report.model_copy(update={"totals": totals.model_copy(update={"u_balance_kwh": None})})
    assert {v.status for v in balance(exact)} == {"mismatch"}
    tampered = report.model_copy(update={"totals": totals.model_copy(update={"load_energy_kwh": 60000.0})})
    verdicts = {(v.check, v.subject, v.status) for v in balance(tampered)}
    assert ("balance", "energy_kwh", "mismatch") in verdicts

"""The origin shares stored packed (``intervals.origin_packed``, store/packed_origin.py, migration 0018):
the packed value reads back as the very document ``origin_document`` made (floats bit for bit, keys in
order), packed from the engine's arrays or from the document alike; intervals stored with the JSON
column before stay served (one interval's origin, the API's origin route, the per-load part for
reports) on SQLite and PostgreSQL; a recomputation stores the packed form."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import select, update
from test_engine_fastpath import CONVENTIONS, PROPERTY, disturbed
from test_recompute import INTERVAL_S, SPAN, N, fossil_generator, metered, stored, world  # noqa: F401
from test_recompute_snapshot import PINNED
from test_result_hash import SINGULAR_ORIGIN, solved

from carbonflow.center.api.routes.results import origin_at
from carbonflow.center.metering.recompute import recompute
from carbonflow.center.metering.service import interval_result
from carbonflow.center.store import add_correction, interval_origin, load_origins
from carbonflow.center.store.packed_origin import (
    pack_origin_document,
    pack_origin_of,
    unpack_origin,
)
from carbonflow.center.store.schema import Interval
from carbonflow.engine import SnapshotError
from carbonflow.engine.document import origin_document, origin_parts


def same(a, b) -> bool:
    """The same JSON text: the same keys in the same order, the same floats to the last bit."""
    return json.dumps(a) == json.dumps(b)


@PROPERTY
@given(doc=disturbed(), losses=CONVENTIONS)
@example(doc=PINNED, losses="receiving")
@example(doc=SINGULAR_ORIGIN, losses="receiving")
def test_the_packed_origin_reads_back_as_the_document(doc, losses):
    try:
        result, origin = solved(doc, losses)
    except SnapshotError:
        return
    if origin is None:
        return
    parts = origin_parts(origin)
    document = origin_document(result, origin, parts)
    packed = pack_origin_of(result, origin, parts)
    assert same(unpack_origin(packed), document)
    # packed from the document (as read back from JSON, keys sorted or not): the same bytes
    assert pack_origin_document(document) == packed
    assert pack_origin_document(json.loads(json.dumps(document))) == packed
    sorted_back = json.loads(json.dumps(document, sort_keys=True))
    assert json.dumps(unpack_origin(pack_origin_document(sorted_back)), sort_keys=True) == json.dumps(
        document, sort_keys=True
    )
    without_buses = unpack_origin(packed, buses=False)
    assert without_buses["buses"] == [] and same(without_buses["loads"], document["loads"])


def test_documents_without_a_packed_form_stay_json():
    document = {"sources": [{"id": "coal", "intensity_g_per_kwh": 900.0}], "buses": [], "loads": []}
    assert unpack_origin(pack_origin_document(document)) == document
    assert pack_origin_document(None) is None and pack_origin_document({}) is None
    assert pack_origin_document({"loads": []}) is None  # no sources
    unknown = {**document, "buses": [{"id": "b", "power_share": {"wind": 1.0}}]}
    assert pack_origin_document(unknown) is None  # a share of no listed source
    whole = {**document, "buses": [{"id": "b", "power_share": {"coal": 1}}]}
    assert pack_origin_document(whole) is None  # an int would read back as a float
    extra = {**document, "loads": [{"id": "u", "bus": "b", "power_mw": {}, "carbon_t_per_h": {},
                                    "carbon_share": None, "note": "x"}]}  # fmt: skip
    assert pack_origin_document(extra) is None  # another key would be lost
    with pytest.raises(ValueError):
        unpack_origin(b"XXXX" + pack_origin_document(document)[4:])
    with pytest.raises(ValueError):
        unpack_origin(pack_origin_document(document) + b"\0")


def _as_json_rows(target, stamps) -> None:
    """Rewrite the packed origins at ``stamps`` as rows stored before migration 0018 kept them."""
    with target.write() as connection:
        for ts in stamps:
            (packed,) = connection.execute(select(Interval.origin_packed).where(Interval.ts == ts)).one()
            connection.execute(
                update(Interval)
                .where(Interval.ts == ts)
                .values(origin=unpack_origin(packed), origin_packed=None)
            )


def test_packed_and_json_rows_are_served_alike(store, world):  # noqa: F811
    _topology, _map, truths = world
    ends = stored(store, world)
    with store.read() as connection:
        columns = connection.execute(
            select(Interval.origin, Interval.origin_packed).order_by(Interval.ts)
        ).all()
    assert all(packed is not None and origin is None for origin, packed in columns)
    served = {ts: origin_at(store, ts.isoformat(), None, None) for ts in ends}
    by_load = {ts: origin_at(store, ts.isoformat(), "U01", None) for ts in ends[:2]}
    loads = list(load_origins(store, ends[0] - SPAN, ends[-1]))
    assert [ts for ts, _s, _loads in loads] == ends and {s for _ts, s, _loads in loads} == {INTERVAL_S}
    # the same document the engine made for the interval
    document = interval_result(truths[1].snapshot_document(), "receiving").document["origin"]
    assert same(interval_origin(store, ends[0], ""), document)
    _as_json_rows(store, ends[::2])  # every other interval as stored before
    with store.read() as connection:
        packed = [
            p is not None for (p,) in connection.execute(select(Interval.origin_packed).order_by(Interval.ts))
        ]
    assert packed == [k % 2 == 1 for k in range(N)]
    for ts in ends:
        assert json.dumps(
            origin_at(store, ts.isoformat(), None, None), default=str, sort_keys=True
        ) == json.dumps(served[ts], default=str, sort_keys=True)
    for ts in ends[:2]:
        assert origin_at(store, ts.isoformat(), "U01", None) == by_load[ts]
    assert list(load_origins(store, ends[0] - SPAN, ends[-1])) == loads
    assert interval_origin(store, ends[0], "") == document


def test_a_recomputation_stores_the_origin_packed(store, world):  # noqa: F811
    ends = stored(store, world)
    _as_json_rows(store, ends)
    before = {ts: interval_origin(store, ts, "") for ts in ends}
    generator, _intensity = fossil_generator(world)
    add_correction(store, "emission_factor", generator, ends[0] - SPAN, ends[-1], "1100", reason="plant data")
    url = store.engine.url.render_as_string(hide_password=False)
    report = recompute(store, url, ends[0] - SPAN, ends[-1], reason="plant data", chunk_intervals=5)
    assert report.intervals == N
    with store.read() as connection:
        columns = connection.execute(select(Interval.origin, Interval.origin_packed)).all()
    assert len(columns) == N and all(packed is not None and origin is None for origin, packed in columns)
    after = {ts: interval_origin(store, ts, "") for ts in ends}
    assert all(before[ts]["buses"] == after[ts]["buses"] for ts in ends)  # power shares: not the factor
    assert all(before[ts]["loads"] != after[ts]["loads"] for ts in ends)  # carbon: the factor


def test_live_metering_stores_the_origin_packed(store, world):  # noqa: F811
    ends = metered(store, world)[:3]
    with store.read() as connection:
        columns = connection.execute(
            select(Interval.origin, Interval.origin_packed).where(Interval.ts.in_(ends))
        ).all()
    assert len(columns) == 3 and all(packed is not None and origin is None for origin, packed in columns)
    for ts in ends:
        origin = interval_origin(store, ts, "")
        assert pack_origin_document(origin) is not None  # the engine's document, as packed from arrays
        assert origin_at(store, ts.isoformat(), None, None)["loads"]

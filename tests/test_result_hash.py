"""The interval result hash, scheme 2 (carbonflow/engine/document.py; docs/tamper-evidence.md, "The
result hash"): made from the engine's arrays it equals the hash made from the result document (as the
engine gives it and as read back from JSON), on random networks (storage, undefined intensities,
islands) under both loss conventions; a third party following only the documentation gets the same
value; every number, id and the interval itself are covered; the sign of a zero and the kind of NaN
are not; scheme-1 hashes are told apart from scheme-2 ones."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import event, example, given
from test_engine_fastpath import CONVENTIONS, PROPERTY, disturbed
from test_recompute_snapshot import PINNED

from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.document import (
    document_hash,
    document_hash_v1,
    hash_scheme,
    origin_parts,
    result_document,
    result_hash,
)
from carbonflow.engine.origin import origin_shares

TS = datetime(2026, 3, 1, 0, 15, tzinfo=UTC)


def third_party_hash(document: dict, ts: str, interval_s: int) -> str:
    """The scheme as docs/tamper-evidence.md states it, written from the text alone (struct, no numpy)."""

    def listing(items) -> str:
        text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def f64(value) -> bytes:
        if value is None or value != value:
            return bytes.fromhex("000000000000f87f")  # the quiet NaN 0x7FF8000000000000, little-endian
        return struct.pack("<d", value + 0.0)

    def i64(value: int) -> bytes:
        return struct.pack("<q", value)

    kinds = {
        "buses": ["flux_mw", "intensity_g_per_kwh", "load_mw", "load_carbon_t_per_h"],
        "branches": ["direction", "p_send_mw", "p_recv_mw", "density_g_per_kwh", "carbon_send_t_per_h",
                     "carbon_recv_t_per_h", "loss_carbon_t_per_h"],
        "generators": ["p_mw", "intensity_g_per_kwh", "carbon_t_per_h", "absorbed_carbon_t_per_h"],
        "loads": ["p_mw", "carbon_t_per_h", "injected_carbon_t_per_h"],
        "storage": ["p_mw", "charge_carbon_t_per_h", "discharge_carbon_t_per_h"],
    }  # fmt: skip
    directions = ["idle", "forward", "reverse", "both_sending"]
    records = {kind: document.get(kind, []) for kind in kinds}
    ids = {
        "buses": listing([r["id"] for r in records["buses"]]),
        "branches": listing([[r["id"], r["from_bus"], r["to_bus"]] for r in records["branches"]]),
        "generators": listing([[r["id"], r["bus"]] for r in records["generators"]]),
        "loads": listing([[r["id"], r["bus"]] for r in records["loads"]]),
        "storage": listing([[r["id"], r["bus"]] for r in records["storage"]]),
    }
    body = b""
    for kind, fields in kinds.items():
        for name in fields:
            for record in records[kind]:
                value = record.get(name)
                body += f64(float(directions.index(value)) if name == "direction" else value)
    totals = ["generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h", "residual_t_per_h",
              "generation_mw", "load_mw", "loss_mw"]  # fmt: skip
    body += b"".join(f64(document["totals"].get(name)) for name in totals)
    origin = document.get("origin")
    if origin is not None:
        names = [s["id"] for s in origin["sources"]]
        ids["sources"] = listing(names)
        body += b"".join(f64(s["intensity_g_per_kwh"]) for s in origin["sources"])
        for kind, field in (("buses", "power_share"), ("loads", "power_mw"), ("loads", "carbon_t_per_h"),
                            ("loads", "carbon_share")):  # fmt: skip
            rows = [r[field] for r in origin[kind]]
            entries = [sorted((names.index(k), v) for k, v in row.items()) for row in rows if row is not None]
            body += b"".join(i64(-1 if row is None else len(row)) for row in rows)
            body += b"".join(i64(column) for row in entries for column, _ in row)
            body += b"".join(f64(value) for row in entries for _, value in row)
    header = {"scheme": 2, "ts": ts, "interval_s": interval_s, "losses": document["losses"],
              "origin": origin is not None, "ids": ids}  # fmt: skip
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8") + b"\n" + body).digest()
    return "2:" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def origin_document_before(result, origin) -> dict:
    """``origin_document`` as it was before its matrices went through ``origin_parts`` (a row at a time):
    the reference the faster one must equal to the last bit."""
    import numpy as np

    def sparse_rows(matrix, names):
        rows, columns = np.nonzero(matrix > 1e-12)
        values, labels = matrix[rows, columns].tolist(), [names[k] for k in columns.tolist()]
        bounds = np.searchsorted(rows, np.arange(len(matrix) + 1)).tolist()
        return [dict(zip(labels[a:b], values[a:b])) for a, b in zip(bounds, bounds[1:])]

    snap, names = result.snapshot, origin.source_ids
    undefined = np.isnan(origin.bus_power_share).any(axis=1).tolist()
    with np.errstate(invalid="ignore"):
        shares = sparse_rows(origin.bus_power_share, names)
    carbon = origin.load_carbon_t_per_h
    totals = [row.sum() for row in carbon]
    fractions = [row / total if total > 0 else row for row, total in zip(carbon, totals)]
    power, carbons = sparse_rows(origin.load_power_mw, names), sparse_rows(carbon, names)
    carbon_shares = sparse_rows(np.array(fractions).reshape(carbon.shape), names)
    return {
        "sources": [
            {"id": n, "intensity_g_per_kwh": float(e)}
            for n, e in zip(names, origin.source_intensity_g_per_kwh)
        ],
        "buses": [
            {"id": b, "power_share": None if undefined[n] else shares[n]} for n, b in enumerate(snap.bus_ids)
        ],
        "loads": [
            {"id": load_id, "bus": snap.bus_ids[bus], "power_mw": power[k], "carbon_t_per_h": carbons[k],
             "carbon_share": carbon_shares[k] if totals[k] > 0 else None}
            for k, (load_id, bus) in enumerate(zip(snap.load_ids, snap.load_bus.tolist()))
        ],
    }  # fmt: skip


def solved(doc: dict, losses: str):
    result = solve(snapshot_from_dict(doc), losses)
    try:
        return result, origin_shares(result)
    except ArithmeticError:  # a singular origin system: the result without its origin part
        return result, None


# a network whose origin system is singular under the consumer convention (the result without origin)
SINGULAR_ORIGIN = {
    "generators": [{"id": "A:000000", "bus": "A:0", "p_mw": 0.0, "intensity_g_per_kwh": 0.0}],
    "loads": [
        {"id": "A:000000", "bus": "A:2", "p_mw": 0.34375},
        {"id": "A:00000", "bus": "A:3", "p_mw": 0.25},
        {"id": "A:0000", "bus": "A:00", "p_mw": 0.25},
        {"id": "A:000", "bus": "A:000", "p_mw": 0.09375},
    ],
    "branches": [
        {"id": "A:0", "from_bus": "A:1", "to_bus": "A:0", "p_from_mw": 1.0, "p_to_mw": -1.0},
        {"id": "A:1", "from_bus": "A:2", "to_bus": "A:1", "p_from_mw": 1.15625, "p_to_mw": -1.125},
        {"id": "A:2", "from_bus": "A:3", "to_bus": "A:0", "p_from_mw": -0.25, "p_to_mw": 0.25},
        {"id": "A:00", "from_bus": "A:00", "to_bus": "A:0", "p_from_mw": -0.25, "p_to_mw": 0.25},
        {"id": "A:000", "from_bus": "A:000", "to_bus": "A:1", "p_from_mw": -0.09375, "p_to_mw": 0.125},
        {"id": "A:0000", "from_bus": "A:2", "to_bus": "A:0", "p_from_mw": -1.5, "p_to_mw": 1.5},
    ],
    "buses": [{"id": b} for b in ("A:1", "A:0", "A:2", "A:3", "A:00", "A:000")],
}


@PROPERTY
@given(doc=disturbed(), losses=CONVENTIONS)
@example(doc=SINGULAR_ORIGIN, losses="consumer")
def test_the_array_hash_is_the_document_hash(doc, losses):
    try:
        result, origin = solved(doc, losses)
    except SnapshotError:
        event("unmeterable")
        return
    document = result_document(result, origin)
    if origin is not None:  # the same origin document as before, to the last bit (scheme-1 hashes rely on it)
        assert json.dumps(document["origin"]) == json.dumps(origin_document_before(result, origin))
    from_arrays = result_hash(result, origin, ts=TS, interval_s=900)
    if origin is not None:  # the origin's sparse parts made beforehand give the same hash
        assert result_hash(result, origin, origin_parts(origin), ts=TS, interval_s=900) == from_arrays
    assert document_hash(document, ts=TS, interval_s=900) == from_arrays
    assert document_hash(json.loads(json.dumps(document)), ts=TS, interval_s=900) == from_arrays
    assert (
        third_party_hash(json.loads(json.dumps(document)), "2026-03-01T00:15:00.000000Z", 900) == from_arrays
    )
    without = result_hash(result, None, ts=TS, interval_s=900)
    assert without == document_hash(result_document(result), ts=TS, interval_s=900)
    assert (without != from_arrays) == (origin is not None)  # the origin part is hashed when there is one


@pytest.mark.parametrize("losses", ["receiving", "consumer"])
def test_the_pinned_network_by_hand_and_by_the_third_party(losses):
    result, origin = solved(PINNED, losses)
    document = json.loads(json.dumps(result_document(result, origin)))
    digest = result_hash(result, origin, ts=TS, interval_s=900)
    assert digest == third_party_hash(document, "2026-03-01T00:15:00.000000Z", 900)
    assert len(digest) == 45 and hash_scheme(digest) == 2
    assert hash_scheme(document_hash_v1(document)) == 1 and len(document_hash_v1(document)) == 64
    # the same instant in another zone is the same interval; another instant or length is not
    shanghai = TS.astimezone(timezone(timedelta(hours=8)))
    assert result_hash(result, origin, ts=shanghai, interval_s=900) == digest
    assert result_hash(result, origin, ts=TS + timedelta(minutes=15), interval_s=900) != digest
    assert result_hash(result, origin, ts=TS, interval_s=1800) != digest
    with pytest.raises(ValueError, match="naive timestamp"):
        result_hash(result, origin, ts=TS.replace(tzinfo=None), interval_s=900)


def _changed(document: dict, path: tuple, value) -> dict:
    changed = json.loads(json.dumps(document))
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def test_every_part_is_covered_but_the_sign_of_zero_and_the_kind_of_nan():
    result, origin = solved(PINNED, "receiving")
    document = json.loads(json.dumps(result_document(result, origin)))
    digest = document_hash(document, ts=TS, interval_s=900)
    bus = document["buses"][0]["flux_mw"]
    for path, value in [
        (("buses", 0, "flux_mw"), bus + abs(bus) * 1e-15 + 1e-300),  # the last bit
        (("buses", 1, "id"), "SUB2"),
        (("branches", 0, "direction"), "reverse"),
        (("branches", 0, "to_bus"), "CITY"),
        (("generators", 0, "intensity_g_per_kwh"), 951.0),
        (("loads", 2, "injected_carbon_t_per_h"), 1.0),
        (("storage", 0, "discharge_carbon_t_per_h"), 1.0),
        (("totals", "loss_mw"), 0.0),
        (("losses",), "consumer"),
        (("origin", "sources", 0, "intensity_g_per_kwh"), 1.0),
        (("origin", "buses", 0, "power_share"), None),
        (("origin", "loads", 0, "carbon_share"), {"coal": 1.0}),
        (("origin", "loads", 0, "power_mw", "wind"), 1e-3),
    ]:
        assert document_hash(_changed(document, path, value), ts=TS, interval_s=900) != digest, path
    assert document["generators"][1]["intensity_g_per_kwh"] == 0.0  # wind
    signed = _changed(document, ("generators", 1, "intensity_g_per_kwh"), -0.0)
    assert document_hash(signed, ts=TS, interval_s=900) == digest
    undefined = _changed(document, ("buses", 0, "intensity_g_per_kwh"), None)
    nan = _changed(document, ("buses", 0, "intensity_g_per_kwh"), float("nan"))
    assert (
        document_hash(undefined, ts=TS, interval_s=900) == document_hash(nan, ts=TS, interval_s=900) != digest
    )

"""The array path of recomputation (carbonflow/center/metering/recompute_snapshot.py) makes exactly the
record the document path makes: same snapshot arrays as ``snapshot_from_dict``, same result hash, same
element rows and header sums as ``interval_from_document``; bad stored inputs are named as
``snapshot_from_dict`` names them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from carbonflow.center.metering.recompute_snapshot import (
    SnapshotDecoder,
    corrected_document,
    corrected_text,
    snapshot_record,
)
from carbonflow.center.metering.service import interval_result, with_factors
from carbonflow.center.store import interval_from_document
from carbonflow.center.store.packed_origin import unpack_origin
from carbonflow.center.store.results import header_row
from carbonflow.engine import SnapshotError, snapshot_from_dict
from carbonflow.engine.document import document_hash_v1
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def snapshots():
    simulation = Simulation(reference_grid(), SimConfig(start=START, interval_s=3600, count=12, seed=5))
    return [json.loads(json.dumps(truth.snapshot_document())) for truth in simulation.intervals()]


def same_snapshot(a, b) -> None:
    for name in a.__dataclass_fields__:
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, tuple):
            assert left == right, name
        else:
            np.testing.assert_array_equal(left, right, err_msg=name)


@pytest.mark.parametrize("losses", ["receiving", "consumer"])
def test_the_array_record_is_the_document_record(snapshots, losses):
    decoder = SnapshotDecoder()
    coal = max(snapshots[0]["generators"], key=lambda g: g["intensity_g_per_kwh"])["id"]
    for n, stored in enumerate(snapshots):
        factors = {coal: 1010.0 + n} if n % 2 else {}
        document = corrected_document(stored, factors)
        assert document == with_factors(copy.deepcopy(stored), factors)
        snapshot = decoder.decode(document)
        same_snapshot(snapshot, snapshot_from_dict(document))
        fast = snapshot_record(START, 900, "AH", snapshot, losses, document=document, estimation={"a": 1})
        result = interval_result(document, losses).document
        slow = interval_from_document(
            START, 900, result, level="AH", snapshot=document, estimation={"a": 1}, origin=result["origin"]
        )
        assert fast.hash == slow.hash
        assert fast.origin is None and json.dumps(unpack_origin(fast.origin_packed)) == json.dumps(
            slow.origin
        )
        for kind, rows in slow.rows.items():
            columns = fast.columns[kind]
            assert [dict(zip(columns, values)) for values in zip(*columns.values())] == rows, kind
        fast_header, slow_header = header_row(fast), header_row(slow)
        fast_header.pop("created_at"), slow_header.pop("created_at")
        assert fast_header == slow_header


def test_bad_stored_inputs_are_named_as_snapshot_from_dict_names_them(snapshots):
    decoder = SnapshotDecoder()
    decoder.decode(snapshots[0])
    cases = []
    for field, value in (("p_mw", "12.5"), ("p_mw", True), ("p_mw", float("nan")), ("p_mw", 1e13)):
        bad = copy.deepcopy(snapshots[1])
        bad["loads"][3][field] = value
        cases.append(bad)
    negative = copy.deepcopy(snapshots[1])
    negative["generators"][0]["intensity_g_per_kwh"] = -1.0
    missing = copy.deepcopy(snapshots[1])
    del missing["branches"][2]["p_from_mw"]
    renamed = copy.deepcopy(snapshots[1])
    renamed["loads"][0]["bus"] = "nowhere"
    for bad in [*cases, negative, missing, renamed]:
        with pytest.raises(SnapshotError) as expected:
            snapshot_from_dict(bad)
        with pytest.raises(SnapshotError) as raised:
            decoder.decode(bad)
        assert str(raised.value) == str(expected.value)
    # absent optional values: NaN intensity of a load, p_to from p_from
    odd = copy.deepcopy(snapshots[1])
    odd["loads"][1]["intensity_g_per_kwh"] = None
    odd["loads"][2]["intensity_g_per_kwh"] = 300
    del odd["branches"][4]["p_to_mw"]
    same_snapshot(decoder.decode(odd), snapshot_from_dict(odd))
    same_snapshot(decoder.decode(snapshots[2]), snapshot_from_dict(snapshots[2]))


def test_the_corrected_snapshot_text_is_the_stored_text_with_its_generators_replaced(snapshots):
    stored = snapshots[3]
    coal = max(stored["generators"], key=lambda g: g["intensity_g_per_kwh"])["id"]
    document = corrected_document(stored, {coal: 1010.5})
    assert corrected_text(json.dumps(stored), stored, document) == json.dumps(document)
    unchanged = corrected_document(stored, {})
    assert corrected_text(json.dumps(stored), stored, unchanged) == json.dumps(stored)
    compact = json.dumps(stored, separators=(",", ":"))  # another writer's layout: serialised again
    assert corrected_text(compact, stored, document) == json.dumps(document)
    assert corrected_text(None, stored, document) == json.dumps(document)


# A small network with storage, an exporting load and a lossless branch (p_to absent), and its result
# hashes as the document path computed them before the array path existed (commit 71645d3): the stored
# result hash is a contract (docs/tamper-evidence.md), faster code must give the same bytes.  The one
# change: origin shares by the compiled DAG sweep (engine/origin.py, 2026-12-07) instead of sparse LU —
# the same shares within 1e-9 (tests/test_origin_sweep.py) but other last bits; under the LU the hashes
# were cc64b5e757e22226cbffa307289a30c493e53b01815981cbc586a25613209b4a (receiving) and
# f82430311e0117ceebf7f42b491a02de61a57f42988b2c25389162f587201a2d (consumer).
PINNED = {
    "buses": [{"id": b} for b in ("PLANT", "SUB", "CITY", "FARM")],
    "generators": [
        {"id": "coal", "bus": "PLANT", "p_mw": 80.0, "intensity_g_per_kwh": 950.0},
        {"id": "wind", "bus": "FARM", "p_mw": 30.0, "intensity_g_per_kwh": 0.0},
    ],
    "loads": [
        {"id": "city", "bus": "CITY", "p_mw": 70.0},
        {"id": "pv-export", "bus": "SUB", "p_mw": -5.0},
        {"id": "works", "bus": "SUB", "p_mw": 30.5},
    ],
    "branches": [
        {"id": "L1", "from_bus": "PLANT", "to_bus": "SUB", "p_from_mw": 80.0, "p_to_mw": -79.0},
        {"id": "L2", "from_bus": "SUB", "to_bus": "CITY", "p_from_mw": 62.0, "p_to_mw": -61.5},
        {"id": "L3", "from_bus": "FARM", "to_bus": "CITY", "p_from_mw": 9.0, "p_to_mw": -8.5},
        {"id": "L4", "from_bus": "FARM", "to_bus": "SUB", "p_from_mw": 21.0},
    ],
    "storage": [{"id": "bat", "bus": "SUB", "p_mw": -3.0, "intensity_g_per_kwh": 420.0}],
}
PINNED_HASHES_V1 = {  # scheme 1: SHA-256 of the document's canonical JSON
    "receiving": "6e440e807e9c7c6cf3d8e9e845bdf293a499a295ae1bde3aa20f57d0a3e1a5c4",
    "consumer": "756152424b570be49aa8e85e23f3c68100c3218d08729bec97c8dcabea493157",
}
# scheme 2 (2026-12-07): SHA-256 of a JSON header and the numbers as float64, for the interval ending START
PINNED_HASHES = {
    "receiving": "2:9pV3-GDIAJogL_txpqrMger6PrOssU1CZ37IDnYuR8k",
    "consumer": "2:Nkxs2OjdSGyL_Iup6P6gj_0tWUz2HA7oVxctSd1QWTE",
}


@pytest.mark.parametrize("losses", sorted(PINNED_HASHES))
def test_the_result_hash_is_the_one_the_document_path_always_gave(losses):
    document = interval_result(PINNED, losses).document
    assert interval_from_document(START, 900, document).hash == PINNED_HASHES[losses]
    assert document_hash_v1(document) == PINNED_HASHES_V1[losses]  # scheme 1 as it always was
    record = snapshot_record(
        START, 900, "", SnapshotDecoder().decode(PINNED), losses, document=PINNED, estimation=None
    )
    assert record.hash == PINNED_HASHES[losses] and record.hash_v1 is None
    record = snapshot_record(
        START, 900, "", SnapshotDecoder().decode(PINNED), losses, document=PINNED, estimation=None,
        scheme1=True,
    )  # fmt: skip
    assert record.hash == PINNED_HASHES[losses] and record.hash_v1 == PINNED_HASHES_V1[losses]

"""The assembly in bulk (issue 17 §4, ``assemble._Inputs.powers``: every element's power at once) gives
what the per-element assembly gave: the assembled snapshot, estimates, derived values and uncertainty of
thinned measurements — counters or samples missing (the bus balance, the other end, held values),
estimated readings, a 1σ of 0 or NaN, a reversed or contradicting branch end — digested and pinned
from the per-element code (main at 17b44f3, before the bulk path)."""

from __future__ import annotations

import hashlib
import zlib
from decimal import Decimal

import pytest
from test_metering_assemble import COUNTERS, world  # noqa: F401  (the same grid, truths and counters)

from carbonflow.center.metering.assemble import Measurements, assemble_snapshot


def thinned(device_map, before, after, variant: int) -> Measurements:
    """The device map's points over ``after``, every ``variant``-dependent share of them left out, marked
    estimated, given a 1σ of 0 or NaN (deterministic: by the point's position)."""
    counters, instants, uncertainty, estimated = {}, {}, {}, {}
    points = [point for device in device_map["devices"] for point in device["points"]]
    for k, point in enumerate(points):
        key = (point["element_kind"], point["element_id"], point["quantity"], point["end"])
        if variant and k % (3 + variant) == variant % 3:
            continue  # not read: derived by the balance, estimated from the other end
        half = zlib.crc32(point["element_id"].encode()) % 2
        if variant == 6 and (point["element_kind"] == "branch" or half):
            continue  # nothing of half the elements, no branch: held, or zero without a previous value
        value = Decimal(repr(after.value(*key)))
        if point["quantity"] in COUNTERS:
            start = Decimal(repr(before.value(*key)))
            counters[key] = (start, value) if variant != 4 or k % 5 else (value, start)  # runs back
        else:
            instants.setdefault(key, []).append(value)
            if variant >= 2 and k % 7 == 0:
                instants[key].append(-value)  # a second sample, of the other sign
        if variant and k % 11 == 0:
            estimated[key] = "interpolated between reads around the boundary"
        if variant:
            nan = variant == 3 and k % 13 == 0
            uncertainty[key] = float("nan") if nan else (0.0 if k % 17 == 0 else 0.01 * k)
    return Measurements(after.interval_s, counters, instants, uncertainty, estimated)


def digest(assembled) -> str:
    text = repr(
        (
            assembled.snapshot,
            [e.as_dict() for e in assembled.estimates],
            [e.as_dict() for e in assembled.derived],
            assembled.uncertainty,
            assembled.values,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


PINNED = {  # variant -> (digest without, with the previous interval's values)
    0: ("07d760fdbb056afa", "07d760fdbb056afa"),
    1: ("276b8c3ceaffd731", "a5b2f6c843b1d1ba"),
    2: ("5e64a920743661d1", "5e64a920743661d1"),
    3: ("44f34ebe7b9830ad", "aaae38635e097400"),
    4: ("f19d9d539b54152f", "f19d9d539b54152f"),
    5: ("9af0e424674f3dfa", "05fee8ad07b60119"),
    6: ("d315e38471e1c460", "c5606a310515d616"),
}


@pytest.mark.parametrize("variant", range(7))
def test_the_bulk_assembly_is_the_per_element_one(world, variant):  # noqa: F811
    topology, device_map, truths = world
    data = thinned(device_map, truths[1], truths[2], variant)
    first = assemble_snapshot(topology, data, storage_intensity_g_per_kwh={"x": 1.0})
    previous = assemble_snapshot(topology, thinned(device_map, truths[0], truths[1], 0)).values
    second = assemble_snapshot(topology, data, previous)
    assert (digest(first), digest(second)) == PINNED[variant]
    if variant:  # the paths this is about are taken
        methods = {e.method for e in first.estimates + first.derived + second.estimates + second.derived}
        assert {"kcl", "other end"} <= methods or variant in (4, 6), methods
    if variant == 6:
        assert {"previous interval", "zero"} <= {e.method for e in first.estimates + second.estimates}

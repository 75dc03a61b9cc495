"""A metering center's own part: its region's buses minus its lower centers' (they send their own), the
branches into a lower region as ties — merged with the lower's part, the region is whole again."""

from __future__ import annotations

from types import SimpleNamespace

from carbonflow.center.cascade.feed import own_part, own_regions
from carbonflow.center.cascade.split import merge_parts, region_part

TOPOLOGY = {"buses": [{"id": "A", "region": "P/C"}, {"id": "B", "region": "P/C/K"}]}
SNAPSHOT = {
    "buses": [{"id": "A"}, {"id": "B"}],
    "generators": [{"id": "g", "bus": "A", "p_mw": 10.0, "intensity_g_per_kwh": 800.0}],
    "loads": [{"id": "l", "bus": "B", "p_mw": 9.5}],
    "branches": [{"id": "AB", "from_bus": "A", "to_bus": "B", "p_from_mw": 10.0, "p_to_mw": -9.5}],
}


def test_own_part_leaves_the_lower_regions_buses_to_the_lower_center():
    config = SimpleNamespace(region="P/C", lowers=[SimpleNamespace(region="P/C/K")])
    node = SimpleNamespace(config=config)
    part = own_part(SNAPSHOT, own_regions(TOPOLOGY, node), node)
    assert [b["id"] for b in part["buses"]] == ["A"] and part["loads"] == []
    assert part["ties"] == [{"id": "AB", "from_bus": "A", "to_bus": "B", "end": "from", "p_mw": 10.0}]
    lower = region_part(SNAPSHOT, {"A": "P/C", "B": "P/C/K"}, "P/C/K")
    merged = merge_parts("P/C", [part, lower])
    assert merged["ties"] == [] and merged["branches"][0]["p_to_mw"] == -9.5

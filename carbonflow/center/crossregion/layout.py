"""Centers of neighbouring regions cut from one grid: each region's topology (its buses and elements, its
inner branches, its tie lines and the neighbours' tie buses), its devices, and the tie configuration of
every center — for a deployment that starts from one grid document, the benchmark and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonflow.center.cascade.config import private_key_text, public_key_text
from carbonflow.center.cascade.split import bus_regions, in_region
from carbonflow.center.crossregion.config import TiesConfig

ELEMENTS = {"generators": "generator", "loads": "load", "storage": "storage"}


def region_topology(grid: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The topology a center of ``region`` meters: its buses and elements, the branches with an end in
    it (the ties among them) and, for each tie, the neighbour's bus (without elements)."""
    regions = bus_regions(grid)
    inside = {bus for bus, path in regions.items() if in_region(path, region)}
    branches = [b for b in grid.get("branches", []) if {b["from_bus"], b["to_bus"]} & inside]
    buses = inside | {bus for b in branches for bus in (b["from_bus"], b["to_bus"])}
    return {
        **{k: v for k, v in grid.items() if k not in ("buses", "branches", *ELEMENTS)},
        "buses": [dict(b) for b in grid.get("buses", []) if b["id"] in buses],
        **{name: [dict(e) for e in grid.get(name, []) if e["bus"] in inside] for name in ELEMENTS},
        "branches": [dict(b) for b in branches],
    }


def region_devices(device_map: Mapping[str, Any], topology: Mapping[str, Any], region: str) -> list[dict]:
    """The devices at ``region``'s buses, each with its points on the elements of ``topology``."""
    regions = bus_regions(topology)
    elements = {(kind, e["id"]) for name, kind in ELEMENTS.items() for e in topology.get(name, [])}
    elements |= {("branch", b["id"]) for b in topology.get("branches", [])}
    elements |= {("bus", b["id"]) for b in topology.get("buses", [])}
    return [
        {**d, "points": [p for p in d["points"] if (p["element_kind"], p["element_id"]) in elements]}
        for d in device_map.get("devices", [])
        if in_region(regions.get(d["bus"], ""), region)
    ]


def ties_configs(
    grid: Mapping[str, Any],
    centers: Mapping[str, str],
    keys: Mapping[str, Ed25519PrivateKey],
    directory: Path,
    *,
    interval_s: int,
    urls: Mapping[str, str] | None = None,
    **settings: Any,
) -> dict[str, TiesConfig]:
    """center id -> its tie configuration: every branch between two of ``centers``' regions (center id
    -> region path) is a tie of both, each center trusting the others' public keys."""
    regions = bus_regions(grid)

    def owner(bus: str) -> str | None:
        return next((c for c, r in centers.items() if in_region(regions.get(bus, ""), r)), None)

    ties: dict[str, list[dict[str, str]]] = {c: [] for c in centers}
    for branch in grid.get("branches", []):
        ends = (owner(branch["from_bus"]), owner(branch["to_bus"]))
        if None in ends or ends[0] == ends[1]:
            continue
        for (here, bus), (there, far) in (
            ((ends[0], branch["from_bus"]), (ends[1], branch["to_bus"])),
            ((ends[1], branch["to_bus"]), (ends[0], branch["from_bus"])),
        ):
            tie = {"id": branch["id"], "local_bus": bus, "neighbour": there, "neighbour_bus": far}
            ties[here].append(tie)
    configs = {}
    for center in centers:
        neighbours = sorted({t["neighbour"] for t in ties[center]})
        configs[center] = TiesConfig(
            center_id=center,
            private_key=private_key_text(keys[center]),
            interval_s=interval_s,
            outbox_path=str(directory / f"{center}-ties-outbox.db"),
            neighbours=[
                {
                    "id": n,
                    "region": centers[n],
                    "url": (urls or {}).get(n, ""),
                    "public_key": public_key_text(keys[n]),
                }
                for n in neighbours
            ],
            ties=ties[center],
            **settings,
        )
    return configs

"""The topology split: which buses a center owns, its part of a snapshot, and parts merged upwards.

A center of region ``R`` (a path ``province/city/county``) owns every bus whose region is ``R`` or lies
under it.  Its **part** of an interval is the C1 snapshot restricted to those buses — generators, loads,
storage and the branches with both ends inside — plus its **ties**: the branches with one end inside,
each with the one value the center meters itself, the power injected into the branch at its own end
(MATPOWER sign).  A part is plain JSON (it travels in a C5 ``RegionData`` message)::

    {"region": "AH/HF/FX", "buses": [...], "generators": [...], "loads": [...], "storage": [...],
     "branches": [...], "ties": [{"id": "L012", "from_bus": "S041", "to_bus": "S017", "end": "from",
                                  "p_mw": 12.5, "u_p_mw": 0.04}]}

(``u_p_mw``, optional: the standard uncertainty of the metered end, which the upper center's tie check
allows for.)

:func:`merge_parts` joins the parts of a region's children: a tie seen from both ends becomes a whole
branch (``p_from_mw`` from the owner of ``from_bus``, ``p_to_mw`` from the owner of ``to_bus``) — the
upper center recomputes its whole region from exactly what its lower centers metered.
:func:`part_snapshot` turns a part into a snapshot the engine solves: an import over a tie enters as a
source at the import intensity the upper center computed, an export leaves as a sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ELEMENT_LISTS = ("generators", "loads", "storage")
TIE_PREFIX = "tie:"  # id of the source / sink that stands for a tie in a part's snapshot
FLOW_TOL_MW = 1e-9


class CascadeError(ValueError):
    """A part, a tie or an exchanged message that does not fit the cascade (one line, names the record)."""


def in_region(bus_region: str, region: str) -> bool:
    """``AH/HF/FX`` is in ``AH/HF`` and in ``AH``, not in ``AH/H``."""
    return bus_region == region or bus_region.startswith(region + "/")


def bus_regions(topology: Mapping[str, Any]) -> dict[str, str]:
    """bus id -> region path, from a grid document or the center's topology document."""
    return {str(b["id"]): str(b.get("region") or "") for b in topology.get("buses", [])}


def region_part(snapshot: Mapping[str, Any], regions: Mapping[str, str], region: str) -> dict[str, Any]:
    """The part of ``snapshot`` a center of ``region`` meters (its buses, elements, branches, ties)."""
    inside = {bus for bus, path in regions.items() if in_region(path, region)}
    unknown = [str(b["id"]) for b in snapshot.get("buses", []) if str(b["id"]) not in regions]
    if unknown:
        raise CascadeError(f"bus {unknown[0]!r} has no region in the topology")
    part: dict[str, Any] = {
        "region": region,
        "buses": [dict(b) for b in snapshot.get("buses", []) if str(b["id"]) in inside],
    }
    if not part["buses"]:  # a snapshot without a bus list: the buses its elements name
        part["buses"] = [{"id": bus} for bus in sorted(inside)]
    for name in ELEMENT_LISTS:
        part[name] = [dict(e) for e in snapshot.get(name, []) if str(e["bus"]) in inside]
    part["branches"], part["ties"] = [], []
    for branch in snapshot.get("branches", []):
        ends = (str(branch["from_bus"]) in inside, str(branch["to_bus"]) in inside)
        if all(ends):
            part["branches"].append(dict(branch))
        elif any(ends):
            end = "from" if ends[0] else "to"
            p_mw = branch.get(f"p_{end}_mw")
            if p_mw is None:  # lossless record: the to end is the negative of the from end
                p_mw = -float(branch["p_from_mw"])
            tie = {
                "id": str(branch["id"]),
                "from_bus": str(branch["from_bus"]),
                "to_bus": str(branch["to_bus"]),
                "end": end,
                "p_mw": float(p_mw),
            }
            if branch.get(f"u_p_{end}_mw") is not None:  # 1σ of the metered end, MW
                tie["u_p_mw"] = float(branch[f"u_p_{end}_mw"])
            part["ties"].append(tie)
    return part


def merge_parts(region: str, parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One part of ``region`` from its own part and its children's; a tie seen at both ends becomes a
    branch.  Two parts claiming one bus, or one tie end twice, is a :class:`CascadeError`."""
    merged: dict[str, Any] = {"region": region, "buses": [], "branches": [], "ties": []}
    merged.update({name: [] for name in ELEMENT_LISTS})
    owner: dict[str, str] = {}
    ends: dict[str, dict[str, Any]] = {}
    for part in parts:
        for bus in part.get("buses", []):
            bus_id = str(bus["id"])
            if bus_id in owner:
                raise CascadeError(f"bus {bus_id!r} is in both {owner[bus_id]!r} and {part.get('region')!r}")
            owner[bus_id] = str(part.get("region"))
            merged["buses"].append(dict(bus))
        for name in (*ELEMENT_LISTS, "branches"):
            merged[name].extend(dict(e) for e in part.get(name, []))
        for tie in part.get("ties", []):
            seen = ends.setdefault(str(tie["id"]), {})
            if tie["end"] in seen:
                raise CascadeError(f"tie {tie['id']!r}: its {tie['end']} end is reported twice")
            seen[tie["end"]] = dict(tie)
    for tie_id, seen in ends.items():
        if len(seen) == 2:
            first = seen["from"]
            branch = {
                "id": tie_id,
                "from_bus": first["from_bus"],
                "to_bus": first["to_bus"],
                "p_from_mw": float(seen["from"]["p_mw"]),
                "p_to_mw": float(seen["to"]["p_mw"]),
            }
            for end in ("from", "to"):
                if seen[end].get("u_p_mw") is not None:
                    branch[f"u_p_{end}_mw"] = float(seen[end]["u_p_mw"])
            merged["branches"].append(branch)
        else:
            merged["ties"].append(next(iter(seen.values())))
    return merged


def inside_bus(tie: Mapping[str, Any]) -> str:
    return str(tie["from_bus"] if tie["end"] == "from" else tie["to_bus"])


def outside_bus(tie: Mapping[str, Any]) -> str:
    return str(tie["to_bus"] if tie["end"] == "from" else tie["from_bus"])


def is_import(tie: Mapping[str, Any]) -> bool:
    """Power comes into the part over this tie (it is injected into the branch at the far end)."""
    return float(tie["p_mw"]) < -FLOW_TOL_MW


def part_snapshot(part: Mapping[str, Any], imports: Mapping[str, float | None]) -> dict[str, Any]:
    """The snapshot the engine solves for a part: an import enters as a source at ``imports[tie id]``
    (the import intensity from the upper level), an export leaves as a sink at the inside bus."""
    snapshot: dict[str, Any] = {
        "buses": [{"id": b["id"]} for b in part.get("buses", [])],
        "generators": [dict(g) for g in part.get("generators", [])],
        "loads": [dict(x) for x in part.get("loads", [])],
        "branches": [dict(x) for x in part.get("branches", [])],
    }
    if part.get("storage"):
        snapshot["storage"] = [dict(s) for s in part["storage"]]
    for tie in part.get("ties", []):
        element_id, bus, p_mw = TIE_PREFIX + str(tie["id"]), inside_bus(tie), float(tie["p_mw"])
        if is_import(tie):
            if str(tie["id"]) not in imports:
                raise CascadeError(f"tie {tie['id']!r}: no import intensity from the upper level")
            intensity = imports[str(tie["id"])]
            snapshot["generators"].append(
                {
                    "id": element_id,
                    "bus": bus,
                    "p_mw": -p_mw,
                    "intensity_g_per_kwh": 0.0 if intensity is None else float(intensity),
                }
            )
        else:
            snapshot["loads"].append({"id": element_id, "bus": bus, "p_mw": max(p_mw, 0.0)})
    return snapshot

"""The grid document (``carbonflow.sim.device_map.grid_document`` form, also what a user's own grid
import produces) as rows of the center's topology tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def topology_rows(grid: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    buses = {b["id"]: b for b in grid["buses"]}
    plant_names = {p["id"]: p.get("name_en") or p["id"] for p in grid.get("plants", [])}
    return {
        "buses": [
            {
                "id": b["id"],
                "name": b.get("name_en") or b.get("name_zh") or b["id"],
                "kind": b["kind"],
                "voltage_kv": float(b["vn_kv"]),
                "region": b.get("region", ""),
                "industry": b.get("industry") or None,
                "x_km": b.get("x_km"),
                "y_km": b.get("y_km"),
            }
            for b in grid["buses"]
        ],
        "generators": [
            {
                "id": g["id"],
                "bus_id": g["bus"],
                "plant": g.get("plant"),
                "unit": g["id"],
                "fuel": g.get("fuel"),
                "intensity_g_per_kwh": g.get("intensity_g_per_kwh"),
                "intensity_source": g.get("intensity_source"),
            }
            for g in grid["generators"]
        ],
        "branches": [
            {
                "id": x["id"],
                "kind": "transformer" if x.get("type") == "transformer" else "line",
                "from_bus": x["from_bus"],
                "to_bus": x["to_bus"],
                "name": x["id"],
            }
            for x in grid["branches"]
        ],
        "loads": [
            {
                "id": x["id"],
                "bus_id": x["bus"],
                "user_name": plant_names.get(x["id"]) or buses.get(x["bus"], {}).get("name_en") or x["id"],
                "industry": x.get("industry") or None,
            }
            for x in grid["loads"]
        ],
        "storage": [
            {
                "id": s["id"],
                "bus_id": s["bus"],
                "p_max_mw": s.get("p_max_mw"),
                "e_max_mwh": s.get("max_e_mwh"),
            }
            for s in grid.get("storage", [])
        ],
    }

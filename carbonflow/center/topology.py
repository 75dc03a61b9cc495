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


def topology_document(store) -> dict[str, list[dict[str, Any]]]:
    """The metering topology as the center stores it (the inverse of :func:`topology_rows`): what a
    production center meters with, whatever grid the rows came from."""
    from sqlalchemy import select

    from carbonflow.center.store.schema import Branch, Bus, Generator, Load, Storage

    with store.read() as connection:
        buses = connection.execute(select(Bus.id, Bus.kind, Bus.voltage_kv, Bus.region)).all()
        generators = connection.execute(
            select(Generator.id, Generator.bus_id, Generator.intensity_g_per_kwh)
        ).all()
        branches = connection.execute(select(Branch.id, Branch.from_bus, Branch.to_bus)).all()
        loads = connection.execute(select(Load.id, Load.bus_id)).all()
        storage = connection.execute(select(Storage.id, Storage.bus_id, Storage.e_max_mwh)).all()
    return {
        "buses": [{"id": b, "kind": kind, "vn_kv": kv, "region": region} for b, kind, kv, region in buses],
        "generators": [{"id": g, "bus": bus, "intensity_g_per_kwh": e} for g, bus, e in generators],
        "branches": [{"id": x, "from_bus": f, "to_bus": t} for x, f, t in branches],
        "loads": [{"id": x, "bus": bus} for x, bus in loads],
        "storage": [{"id": s, "bus": bus, "max_e_mwh": e or 0.0} for s, bus, e in storage],
    }

"""The grid document (:class:`carbonflow.messages.grid.GridDocument`: what ``carbonflow sim grid
--export`` and a user's own grid import produce) as rows of the center's topology tables, and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carbonflow.messages.grid import GridDocument


def topology_rows(grid: GridDocument | Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the center's topology tables; a bad document -> one ContractError line naming the record."""
    document = GridDocument.parse(grid)
    bus_names = {b.id: b.name_en for b in document.buses}
    plant_names = {p.id: p.name_en or p.id for p in document.plants}
    return {
        "regions": [
            {"path": r.path, "name_zh": r.name_zh, "name_en": r.name_en, "level": r.level}
            for r in document.regions
        ],
        "buses": [
            {
                "id": b.id,
                "name": b.name_en or b.name_zh or b.id,
                "kind": b.kind,
                "voltage_kv": float(b.vn_kv),
                "region": b.region or "",
                "industry": b.industry or None,
                "x_km": b.x_km,
                "y_km": b.y_km,
            }
            for b in document.buses
        ],
        "generators": [
            {
                "id": g.id,
                "bus_id": g.bus,
                "plant": g.plant,
                "unit": g.id,
                "fuel": g.fuel,
                "intensity_g_per_kwh": g.intensity_g_per_kwh,
                "intensity_source": g.intensity_source,
            }
            for g in document.generators
        ],
        "branches": [
            {
                "id": x.id,
                "kind": "transformer" if x.type == "transformer" else "line",
                "from_bus": x.from_bus,
                "to_bus": x.to_bus,
                "name": x.id,
            }
            for x in document.branches
        ],
        "loads": [
            {
                "id": x.id,
                "bus_id": x.bus,
                "user_name": plant_names.get(x.id) or bus_names.get(x.bus) or x.id,
                "industry": x.industry or None,
            }
            for x in document.loads
        ],
        "storage": [
            {"id": s.id, "bus_id": s.bus, "p_max_mw": s.p_max_mw, "e_max_mwh": s.max_e_mwh}
            for s in document.storage
        ],
    }


def topology_document(store) -> dict[str, Any]:
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
    document = {
        "buses": [{"id": b, "kind": kind, "vn_kv": kv, "region": region} for b, kind, kv, region in buses],
        "generators": [{"id": g, "bus": bus, "intensity_g_per_kwh": e} for g, bus, e in generators],
        "branches": [{"id": x, "from_bus": f, "to_bus": t} for x, f, t in branches],
        "loads": [{"id": x, "bus": bus} for x, bus in loads],
        "storage": [{"id": s, "bus": bus, "max_e_mwh": e or 0.0} for s, bus, e in storage],
    }
    return GridDocument.model_validate(document).document()  # the contract's form, checked

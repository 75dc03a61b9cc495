"""The topology as the API reads it: every element table, each element carrying its bus's region and
voltage (a branch: its from bus's), a load its bus's industry when it has none of its own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.schema import Branch, Bus, Generator, Load, Region

Target = Store | Session | Connection


def topology_tables(target: Target) -> dict[str, list[dict[str, Any]]]:
    """``{"buses", "branches", "generators", "loads": [row, ...], "regions": [path, ...],
    "region_names": {path: {"zh", "en", "level"}}}``, by id."""
    with connection_of(target, write=False) as connection:

        def rows(model) -> list[dict[str, Any]]:
            query = select(model.__table__).order_by(model.id)
            return [dict(r._mapping) for r in connection.execute(query)]

        buses, generators, loads, branches = rows(Bus), rows(Generator), rows(Load), rows(Branch)
        names = [dict(r._mapping) for r in connection.execute(select(Region.__table__).order_by(Region.path))]
    by_id = {b["id"]: b for b in buses}
    for element in (*generators, *loads):
        bus = by_id.get(element["bus_id"], {})
        element["region"] = bus.get("region")
        element["voltage_kv"] = bus.get("voltage_kv")
    for load in loads:
        load["industry"] = load["industry"] or by_id.get(load["bus_id"], {}).get("industry")
    for branch in branches:
        bus = by_id.get(branch["from_bus"], {})
        branch["region"] = bus.get("region")
        branch["voltage_kv"] = bus.get("voltage_kv")
        branch["to_voltage_kv"] = by_id.get(branch["to_bus"], {}).get("voltage_kv")
    regions = sorted({b["region"] for b in buses if b["region"]})
    return {
        "buses": buses,
        "branches": branches,
        "generators": generators,
        "loads": loads,
        "regions": regions,
        # path -> its names, for the regions the grid document named (the UI shows names, not codes)
        "region_names": {
            r["path"]: {"zh": r["name_zh"], "en": r["name_en"], "level": r["level"]} for r in names
        },
    }


def generator_plants(target: Target) -> dict[str, dict[str, str | None]]:
    """Generator id → ``{"plant", "fuel"}``."""
    with connection_of(target, write=False) as connection:
        return {
            r.id: {"plant": r.plant, "fuel": r.fuel}
            for r in connection.execute(select(Generator.id, Generator.plant, Generator.fuel))
        }

"""Topology: buses (kind, region, industry, voltage, layout x/y), branches, generators, loads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from carbonflow.center.api.deps import StoreDep, require_user
from carbonflow.center.api.routes._common import Format, Limit, Offset, listing
from carbonflow.center.store import topology_tables

router = APIRouter(prefix="/api/v1", tags=["topology"], dependencies=[Depends(require_user)])


def _in_region(row: dict[str, Any], region: str | None) -> bool:
    value = row.get("region") or ""
    return region is None or value == region or value.startswith(region + "/")


def _filter(
    rows: list[dict[str, Any]],
    *,
    region: str | None = None,
    voltage_kv: float | None = None,
    **equal: Any,
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if _in_region(r, region)
        and (voltage_kv is None or r.get("voltage_kv") == voltage_kv)
        and all(value is None or r.get(key) == value for key, value in equal.items())
    ]


@router.get("/topology")
def whole_topology(store: StoreDep) -> dict:
    """Buses, branches, generators and loads in one answer (what the topology view draws)."""
    return topology_tables(store)


@router.get("/buses")
def buses(
    store: StoreDep,
    kind: str | None = Query(None, pattern="^(plant|substation|user)$"),
    region: str | None = None,
    industry: str | None = None,
    voltage_kv: float | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = topology_tables(store)["buses"]
    rows = _filter(rows, region=region, voltage_kv=voltage_kv, kind=kind, industry=industry)
    return listing(rows, limit=limit, offset=offset, format=format, name="buses")


@router.get("/buses/{bus_id}")
def bus(bus_id: str, store: StoreDep) -> dict:
    topo = topology_tables(store)
    found = [b for b in topo["buses"] if b["id"] == bus_id]
    if not found:
        raise HTTPException(404, f"unknown bus {bus_id!r}")
    return {
        **found[0],
        "generators": [g for g in topo["generators"] if g["bus_id"] == bus_id],
        "loads": [load for load in topo["loads"] if load["bus_id"] == bus_id],
        "branches": [b for b in topo["branches"] if bus_id in (b["from_bus"], b["to_bus"])],
    }


@router.get("/branches")
def branches(
    store: StoreDep,
    kind: str | None = Query(None, pattern="^(line|transformer)$"),
    region: str | None = None,
    voltage_kv: float | None = None,
    bus: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = _filter(
        topology_tables(store)["branches"],
        region=region,
        voltage_kv=voltage_kv,
        kind=kind,
    )
    if bus is not None:
        rows = [r for r in rows if bus in (r["from_bus"], r["to_bus"])]
    return listing(rows, limit=limit, offset=offset, format=format, name="branches")


@router.get("/generators")
def generators(
    store: StoreDep,
    plant: str | None = None,
    fuel: str | None = None,
    region: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = _filter(topology_tables(store)["generators"], region=region, plant=plant, fuel=fuel)
    return listing(rows, limit=limit, offset=offset, format=format, name="generators")


@router.get("/loads")
def loads(
    store: StoreDep,
    industry: str | None = None,
    region: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = _filter(topology_tables(store)["loads"], region=region, industry=industry)
    return listing(rows, limit=limit, offset=offset, format=format, name="loads")

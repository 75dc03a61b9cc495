"""Topology: buses (kind, region, industry, voltage, layout x/y), branches, generators, loads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.deps import StoreDep, require_user
from carbonflow.center.api.routes._common import Format, Limit, Offset, listing
from carbonflow.center.store import Store
from carbonflow.center.store.schema import Branch, Bus, Generator, Load

router = APIRouter(prefix="/api/v1", tags=["topology"], dependencies=[Depends(require_user)])


def topology(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every element, with each bus's region / voltage repeated on its branches, generators and loads."""
    with store.read() as connection:
        buses = [dict(r._mapping) for r in connection.execute(select(Bus.__table__).order_by(Bus.id))]
        by_id = {b["id"]: b for b in buses}

        def rows(model, order) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in connection.execute(select(model.__table__).order_by(order))]

        generators, loads = rows(Generator, Generator.id), rows(Load, Load.id)
        branches = rows(Branch, Branch.id)
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
    }


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
async def whole_topology(store: StoreDep) -> dict:
    """Buses, branches, generators and loads in one answer (what the topology view draws)."""
    return await run_in_threadpool(topology, store)


@router.get("/buses")
async def buses(
    store: StoreDep,
    kind: str | None = Query(None, pattern="^(plant|substation|user)$"),
    region: str | None = None,
    industry: str | None = None,
    voltage_kv: float | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = (await run_in_threadpool(topology, store))["buses"]
    rows = _filter(rows, region=region, voltage_kv=voltage_kv, kind=kind, industry=industry)
    return listing(rows, limit=limit, offset=offset, format=format, name="buses")


@router.get("/buses/{bus_id}")
async def bus(bus_id: str, store: StoreDep) -> dict:
    topo = await run_in_threadpool(topology, store)
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
async def branches(
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
        (await run_in_threadpool(topology, store))["branches"],
        region=region,
        voltage_kv=voltage_kv,
        kind=kind,
    )
    if bus is not None:
        rows = [r for r in rows if bus in (r["from_bus"], r["to_bus"])]
    return listing(rows, limit=limit, offset=offset, format=format, name="branches")


@router.get("/generators")
async def generators(
    store: StoreDep,
    plant: str | None = None,
    fuel: str | None = None,
    region: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = _filter(
        (await run_in_threadpool(topology, store))["generators"], region=region, plant=plant, fuel=fuel
    )
    return listing(rows, limit=limit, offset=offset, format=format, name="generators")


@router.get("/loads")
async def loads(
    store: StoreDep,
    industry: str | None = None,
    region: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
    format: Format = "json",
):
    rows = _filter((await run_in_threadpool(topology, store))["loads"], region=region, industry=industry)
    return listing(rows, limit=limit, offset=offset, format=format, name="loads")

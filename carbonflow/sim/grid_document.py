"""A grid as carbonflow's own grid document (messages/grid.py): buses, generators, loads, storage,
branches, regions and plants — what the center's topology, the simulator's outputs and the device map
all name the elements by."""

from __future__ import annotations

from typing import Any

import pandapower as pp

from carbonflow.messages.grid import SCHEMA_VERSION as GRID_VERSION
from carbonflow.messages.grid import GridDocument
from carbonflow.sim.simulation import element_ids


def grid_document(net: pp.pandapowerNet) -> dict[str, Any]:
    """The grid document (JSON-ready) of a grid; see :func:`grid_of`."""
    return grid_of(net).document()


def grid_of(net: pp.pandapowerNet) -> GridDocument:
    """The grid as carbonflow's own document: buses, generators, loads, storage, branches, regions, plants."""

    def records(table: str, columns: list[str]) -> list[dict[str, Any]]:
        frame = net[table]
        keep = [c for c in columns if c in frame]
        rows = frame[keep].astype(object).where(frame[keep].notna(), None).to_dict("records")
        return rows

    bus_name = {index: str(name) for index, name in net.bus.name.items()}
    ids = element_ids(net)
    document: dict[str, Any] = {
        "schema_version": GRID_VERSION,
        "name": net.name or "",
        "f_hz": float(net.f_hz),
        "sn_mva": float(net.sn_mva),
    }
    document["buses"] = [
        dict(id=bus_name[i], **r)
        for i, r in zip(
            net.bus.index,
            records("bus", ["vn_kv", "kind", "region", "name_en", "name_zh", "industry", "x_km", "y_km"]),
            strict=True,
        )
    ]
    generators = []
    for table in ("ext_grid", "gen", "sgen"):
        for index, record in zip(
            net[table].index,
            records(
                table,
                [
                    "p_mw",
                    "vm_pu",
                    "slack",
                    "plant",
                    "fuel",
                    "technology",
                    "intensity_g_per_kwh",
                    "intensity_source",
                    "p_min_mw",
                    "p_max_mw",
                    "ramp_mw_per_min",
                    "merit",
                    "profile",
                    "in_service",
                ],
            ),
            strict=True,
        ):
            generators.append(
                dict(id=ids[f"{table}:{index}"], table=table, bus=bus_name[net[table].bus[index]], **record)
            )
    document["generators"] = generators
    document["loads"] = [
        dict(id=ids[f"load:{i}"], bus=bus_name[net.load.bus[i]], **r)
        for i, r in zip(
            net.load.index, records("load", ["p_mw", "q_mvar", "industry", "pf", "in_service"]), strict=True
        )
    ]
    document["storage"] = [
        dict(id=ids[f"storage:{i}"], bus=bus_name[net.storage.bus[i]], **r)
        for i, r in zip(
            net.storage.index, records("storage", ["p_max_mw", "max_e_mwh", "eta", "in_service"]), strict=True
        )
    ]
    branches = []
    for index, row in net.line.iterrows():
        branches.append(
            dict(
                id=ids[f"line:{index}"],
                type="line",
                from_bus=bus_name[row.from_bus],
                to_bus=bus_name[row.to_bus],
                length_km=float(row.length_km),
                r_ohm_per_km=float(row.r_ohm_per_km),
                x_ohm_per_km=float(row.x_ohm_per_km),
                c_nf_per_km=float(row.c_nf_per_km),
                max_i_ka=float(row.max_i_ka),
                parallel=int(row.parallel),
                in_service=bool(row.in_service),
            )
        )
    for index, row in net.trafo.iterrows():
        branches.append(
            dict(
                id=ids[f"trafo:{index}"],
                type="transformer",
                from_bus=bus_name[row.hv_bus],
                to_bus=bus_name[row.lv_bus],
                sn_mva=float(row.sn_mva),
                vn_hv_kv=float(row.vn_hv_kv),
                vn_lv_kv=float(row.vn_lv_kv),
                vk_percent=float(row.vk_percent),
                vkr_percent=float(row.vkr_percent),
                tap_pos=float(row.tap_pos),
                parallel=int(row.parallel),
                in_service=bool(row.in_service),
            )
        )
    document["branches"] = branches
    for extra in ("cf_region", "cf_plant"):
        if extra in net:
            document[extra[3:] + "s"] = net[extra].to_dict("records")
    return GridDocument.model_validate(document)

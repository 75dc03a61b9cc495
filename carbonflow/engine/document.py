"""A result as a plain document (contract C1 output): JSON-ready dicts, ``None`` for undefined."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from carbonflow.engine.cef import CefResult
from carbonflow.engine.flows import BOTH_SENDING, FORWARD, IDLE, REVERSE
from carbonflow.engine.origin import Origin

_DIRECTION_NAMES = {IDLE: "idle", FORWARD: "forward", REVERSE: "reverse", BOTH_SENDING: "both_sending"}
_SHARE_FLOOR = 1e-12  # shares below this are round-off, not origin


def _number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _element_records(result: CefResult, kind: str) -> list[dict[str, Any]]:
    snap = result.snapshot
    ids, bus, p_mw = {
        "generator": (snap.gen_ids, snap.gen_bus, snap.gen_p_mw),
        "load": (snap.load_ids, snap.load_bus, snap.load_p_mw),
        "storage": (snap.storage_ids, snap.storage_bus, snap.storage_p_mw),
    }[kind]
    injected = result.injected_carbon_t_per_h(kind)
    absorbed = result.absorbed_carbon_t_per_h(kind)
    records = []
    for k, element_id in enumerate(ids):
        record: dict[str, Any] = {"id": element_id, "bus": snap.bus_ids[bus[k]], "p_mw": float(p_mw[k])}
        if kind == "generator":
            record["intensity_g_per_kwh"] = float(snap.gen_intensity_g_per_kwh[k])
            record["carbon_t_per_h"] = float(injected[k])
            record["absorbed_carbon_t_per_h"] = float(absorbed[k])
        elif kind == "load":
            record["carbon_t_per_h"] = float(absorbed[k])
            record["injected_carbon_t_per_h"] = float(injected[k])
        else:
            record["charge_carbon_t_per_h"] = float(absorbed[k])
            record["discharge_carbon_t_per_h"] = float(injected[k])
        records.append(record)
    return records


def _sparse(row: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    keep = np.flatnonzero(row > _SHARE_FLOOR)
    return dict(zip([names[k] for k in keep.tolist()], row[keep].tolist()))


def _sparse_rows(matrix: np.ndarray, names: tuple[str, ...]) -> list[dict[str, float]]:
    """:func:`_sparse` of every row of ``matrix`` (N x K), at once: a 10,000-bus grid has millions of
    shares to look at."""
    rows, columns = np.nonzero(matrix > _SHARE_FLOOR)  # row-major order, as row by row
    values = matrix[rows, columns].tolist()
    labels = [names[k] for k in columns.tolist()]
    bounds = np.searchsorted(rows, np.arange(len(matrix) + 1)).tolist()
    return [dict(zip(labels[a:b], values[a:b])) for a, b in zip(bounds, bounds[1:])]


def origin_document(result: CefResult, origin: Origin) -> dict[str, Any]:
    snap = result.snapshot
    names = origin.source_ids
    undefined = np.isnan(origin.bus_power_share).any(axis=1).tolist()
    shares = _sparse_rows(origin.bus_power_share, names)
    buses = [
        {"id": bus_id, "power_share": None if undefined[n] else shares[n]}
        for n, bus_id in enumerate(snap.bus_ids)
    ]
    power = _sparse_rows(origin.load_power_mw, names)
    carbon_of = _sparse_rows(origin.load_carbon_t_per_h, names)
    loads = []
    for k, load_id in enumerate(snap.load_ids):
        carbon = origin.load_carbon_t_per_h[k]
        total = carbon.sum()
        loads.append(
            {
                "id": load_id,
                "bus": snap.bus_ids[snap.load_bus[k]],
                "power_mw": power[k],
                "carbon_t_per_h": carbon_of[k],
                "carbon_share": _sparse(carbon / total, names) if total > 0 else None,
            }
        )
    return {
        "sources": [
            {"id": name, "intensity_g_per_kwh": float(e)}
            for name, e in zip(names, origin.source_intensity_g_per_kwh)
        ],
        "buses": buses,
        "loads": loads,
    }


def result_document(result: CefResult, origin: Origin | None = None) -> dict[str, Any]:
    snap, acc, flows = result.snapshot, result.accounts, result.flows
    bus_ids = snap.bus_ids
    document: dict[str, Any] = {
        "losses": result.losses,
        "buses": [
            {
                "id": bus_id,
                "flux_mw": float(acc.bus_flux_mw[n]),
                "intensity_g_per_kwh": _number(acc.bus_intensity_g_per_kwh[n]),
                "load_mw": float(acc.bus_load_mw[n]),
                "load_carbon_t_per_h": float(acc.bus_load_carbon_t_per_h[n]),
            }
            for n, bus_id in enumerate(bus_ids)
        ],
        "branches": [
            {
                "id": branch_id,
                "from_bus": bus_ids[snap.branch_from[k]],
                "to_bus": bus_ids[snap.branch_to[k]],
                "direction": _DIRECTION_NAMES[int(flows.direction[k])],
                "sending_bus": (
                    bus_ids[flows.sending_bus[k]] if flows.direction[k] in (FORWARD, REVERSE) else None
                ),
                "p_send_mw": float(flows.p_send_mw[k]),
                "p_recv_mw": float(flows.p_recv_mw[k]),
                "density_g_per_kwh": _number(acc.branch_density_g_per_kwh[k]),
                "carbon_send_t_per_h": float(acc.branch_carbon_send_t_per_h[k]),
                "carbon_recv_t_per_h": float(acc.branch_carbon_recv_t_per_h[k]),
                "loss_carbon_t_per_h": float(acc.branch_loss_carbon_t_per_h[k]),
            }
            for k, branch_id in enumerate(snap.branch_ids)
        ],
        "generators": _element_records(result, "generator"),
        "loads": _element_records(result, "load"),
        "totals": result.totals,
    }
    if snap.storage_ids:
        document["storage"] = _element_records(result, "storage")
    if origin is not None:
        document["origin"] = origin_document(result, origin)
    return document

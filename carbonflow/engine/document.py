"""A result as a plain document (contract C1 output): JSON-ready dicts, ``None`` for undefined."""

from __future__ import annotations

from typing import Any

import numpy as np

from carbonflow.engine.cef import CefResult
from carbonflow.engine.flows import BOTH_SENDING, FORWARD, IDLE, REVERSE
from carbonflow.engine.origin import Origin

_DIRECTION_NAMES = {IDLE: "idle", FORWARD: "forward", REVERSE: "reverse", BOTH_SENDING: "both_sending"}
_SHARE_FLOOR = 1e-12  # shares below this are round-off, not origin


def _element_records(result: CefResult, kind: str) -> list[dict[str, Any]]:
    snap = result.snapshot
    ids, bus, p_mw = {
        "generator": (snap.gen_ids, snap.gen_bus, snap.gen_p_mw),
        "load": (snap.load_ids, snap.load_bus, snap.load_p_mw),
        "storage": (snap.storage_ids, snap.storage_bus, snap.storage_p_mw),
    }[kind]
    injected = result.injected_carbon_t_per_h(kind).tolist()
    absorbed = result.absorbed_carbon_t_per_h(kind).tolist()
    buses, powers = bus.tolist(), p_mw.tolist()
    intensities = snap.gen_intensity_g_per_kwh.tolist() if kind == "generator" else []
    records = []
    for k, element_id in enumerate(ids):
        record: dict[str, Any] = {"id": element_id, "bus": snap.bus_ids[buses[k]], "p_mw": powers[k]}
        if kind == "generator":
            record["intensity_g_per_kwh"] = intensities[k]
            record["carbon_t_per_h"] = injected[k]
            record["absorbed_carbon_t_per_h"] = absorbed[k]
        elif kind == "load":
            record["carbon_t_per_h"] = absorbed[k]
            record["injected_carbon_t_per_h"] = injected[k]
        else:
            record["charge_carbon_t_per_h"] = absorbed[k]
            record["discharge_carbon_t_per_h"] = injected[k]
        records.append(record)
    return records


def _sparse_rows(matrix: np.ndarray, names: tuple[str, ...]) -> list[dict[str, float]]:
    """Each row of ``matrix`` (N x K) as ``{source: value}`` of its entries above the floor (NaN never
    is), in source order, all rows at once: a 10,000-bus grid has millions of shares to look at."""
    rows, columns = np.nonzero(matrix > _SHARE_FLOOR)  # row-major order, as row by row
    values = matrix[rows, columns].tolist()
    labels = [names[k] for k in columns.tolist()]
    bounds = np.searchsorted(rows, np.arange(len(matrix) + 1)).tolist()
    return [dict(zip(labels[a:b], values[a:b])) for a, b in zip(bounds, bounds[1:])]


def origin_document(result: CefResult, origin: Origin) -> dict[str, Any]:
    snap = result.snapshot
    names = origin.source_ids
    undefined = np.isnan(origin.bus_power_share).any(axis=1).tolist()
    with np.errstate(invalid="ignore"):
        shares = _sparse_rows(origin.bus_power_share, names)
    buses = [
        {"id": bus_id, "power_share": None if undefined[n] else shares[n]}
        for n, bus_id in enumerate(snap.bus_ids)
    ]
    carbon = origin.load_carbon_t_per_h
    totals = [row.sum() for row in carbon]  # each load's total, as the share below divides by it
    fractions = [row / total if total > 0 else row for row, total in zip(carbon, totals)]
    power, carbons = _sparse_rows(origin.load_power_mw, names), _sparse_rows(carbon, names)
    carbon_shares = _sparse_rows(np.array(fractions).reshape(carbon.shape), names)
    loads = [
        {
            "id": load_id,
            "bus": snap.bus_ids[bus],
            "power_mw": power[k],
            "carbon_t_per_h": carbons[k],
            "carbon_share": carbon_shares[k] if totals[k] > 0 else None,
        }
        for k, (load_id, bus) in enumerate(zip(snap.load_ids, snap.load_bus.tolist()))
    ]
    return {
        "sources": [
            {"id": name, "intensity_g_per_kwh": float(e)}
            for name, e in zip(names, origin.source_intensity_g_per_kwh)
        ],
        "buses": buses,
        "loads": loads,
    }


def _numbers(values: np.ndarray) -> list[float | None]:
    """Every entry as a Python float, None for NaN (undefined)."""
    return [None if v != v else v for v in values.tolist()]


def result_document(result: CefResult, origin: Origin | None = None) -> dict[str, Any]:
    snap, acc, flows = result.snapshot, result.accounts, result.flows
    bus_ids = snap.bus_ids
    direction, sending = flows.direction.tolist(), flows.sending_bus.tolist()
    document: dict[str, Any] = {
        "losses": result.losses,
        "buses": [
            {"id": bus_id, "flux_mw": flux, "intensity_g_per_kwh": intensity, "load_mw": load,
             "load_carbon_t_per_h": load_carbon}
            for bus_id, flux, intensity, load, load_carbon in zip(
                bus_ids, acc.bus_flux_mw.tolist(), _numbers(acc.bus_intensity_g_per_kwh),
                acc.bus_load_mw.tolist(), acc.bus_load_carbon_t_per_h.tolist(),
            )
        ],
        "branches": [
            {
                "id": branch_id,
                "from_bus": bus_ids[from_bus],
                "to_bus": bus_ids[to_bus],
                "direction": _DIRECTION_NAMES[code],
                "sending_bus": bus_ids[sending_bus] if code in (FORWARD, REVERSE) else None,
                "p_send_mw": p_send,
                "p_recv_mw": p_recv,
                "density_g_per_kwh": density,
                "carbon_send_t_per_h": carbon_send,
                "carbon_recv_t_per_h": carbon_recv,
                "loss_carbon_t_per_h": loss_carbon,
            }
            for (branch_id, from_bus, to_bus, code, sending_bus, p_send, p_recv, density, carbon_send,
                 carbon_recv, loss_carbon) in zip(
                snap.branch_ids, snap.branch_from.tolist(), snap.branch_to.tolist(), direction, sending,
                flows.p_send_mw.tolist(), flows.p_recv_mw.tolist(), _numbers(acc.branch_density_g_per_kwh),
                acc.branch_carbon_send_t_per_h.tolist(), acc.branch_carbon_recv_t_per_h.tolist(),
                acc.branch_loss_carbon_t_per_h.tolist(),
            )
        ],
        "generators": _element_records(result, "generator"),
        "loads": _element_records(result, "load"),
        "totals": result.totals,
    }  # fmt: skip
    if snap.storage_ids:
        document["storage"] = _element_records(result, "storage")
    if origin is not None:
        document["origin"] = origin_document(result, origin)
    return document

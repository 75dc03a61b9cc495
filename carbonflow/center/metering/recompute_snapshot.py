"""Recomputing an interval from its stored snapshot, on arrays (the hot path of issue 17 §3).

A chunk's stored snapshots describe one network: :class:`SnapshotDecoder` validates the first one with
``snapshot_from_dict`` and keeps its structure (ids, bus references), and decodes every further one
that has the same structure by reading its numbers into arrays, checked as ``snapshot_from_dict``
checks them (a plain finite number within the limits; anything else — another structure, a string,
a bool, a missing field — goes through ``snapshot_from_dict``, which names the offending record).

:func:`snapshot_record` then solves with ``solve()`` (the very function live metering uses, so that
the result hash of an unchanged interval is the stored one) and makes the interval's record without
building a dict per element row: the rows are columns taken straight from the result's arrays
(``IntervalRecord.columns``), the result hash is made from the arrays too (scheme 2, ``result_hash``:
no result document, no canonical JSON of it), and the origin shares are stored packed from the same
sparse parts (``IntervalRecord.origin_packed``, store/packed_origin.py: no document, no JSON).
tests/test_recompute_snapshot.py checks that the record equals ``interval_from_document``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from carbonflow.center.store import IntervalRecord
from carbonflow.center.store.packed_origin import pack_origin_of
from carbonflow.center.store.results import KWH_PER_MWH
from carbonflow.center.store.types import utc
from carbonflow.engine import Snapshot, SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.document import (
    document_hash_v1,
    origin_document,
    origin_parts,
    result_document,
    result_hash,
)
from carbonflow.engine.flows import SENDING_CODES
from carbonflow.engine.origin import origin_shares
from carbonflow.engine.snapshot import MAX_ABS_POWER_MW, MAX_INTENSITY_G_PER_KWH

_FAST_ERRORS = (KeyError, TypeError, ValueError, OverflowError, AttributeError, IndexError)


class _Fallback(Exception):
    """The fast decoding does not apply: ``snapshot_from_dict`` decides."""


def _numbers(values: list[Any], limit: float, optional: bool = False) -> np.ndarray:
    """``values`` as floats if each is a plain finite number within ``limit`` (or, when ``optional``,
    None: NaN) — else ``_Fallback``."""
    absent = [v is None for v in values] if optional else []
    if any(absent):
        values = [0.0 if v is None else v for v in values]
    if not all(type(v) is float or type(v) is int for v in values):
        raise _Fallback
    array = np.array(values, dtype=float)
    if not (np.isfinite(array).all() and (np.abs(array) <= limit).all()):
        raise _Fallback
    if any(absent):
        array[np.array(absent)] = np.nan
    return array


def _intensities(values: list[Any], optional: bool) -> np.ndarray:
    array = _numbers(values, MAX_INTENSITY_G_PER_KWH, optional)
    if (array < 0).any():  # NaN compares False
        raise _Fallback
    return array


class SnapshotDecoder:
    """Decodes stored C1 snapshots of one network; any other document goes through
    ``snapshot_from_dict`` (and becomes the network it knows)."""

    def __init__(self) -> None:
        self.template: Snapshot | None = None
        self.structure: tuple[Any, ...] | None = None

    @staticmethod
    def _structure(data: Mapping[str, Any]) -> tuple[Any, ...]:
        buses = data.get("buses")
        return (
            None if buses is None else tuple(b["id"] for b in buses),
            tuple((g["id"], g["bus"]) for g in data["generators"]),
            tuple((ld["id"], ld["bus"]) for ld in data["loads"]),
            tuple((b["id"], b["from_bus"], b["to_bus"]) for b in data["branches"]),
            tuple((s["id"], s["bus"]) for s in data.get("storage") or ()),
        )

    def decode(self, data: Any) -> Snapshot:
        if self.template is not None and isinstance(data, Mapping):
            try:
                return self._fast(data)
            except (_Fallback, *_FAST_ERRORS):
                pass
        snapshot = snapshot_from_dict(data)
        try:
            structure = self._structure(data)
        except _FAST_ERRORS:
            return snapshot
        declared, *sections = structure
        texts = [*(declared or ()), *(x for section in sections for item in section for x in item)]
        if all(type(x) is str for x in texts):  # ids as validated, never a number equal to a bool
            self.template, self.structure = snapshot, structure
        return snapshot

    def _fast(self, data: Mapping[str, Any]) -> Snapshot:
        if self._structure(data) != self.structure:
            raise _Fallback
        template = self.template
        assert template is not None
        gens, loads, branches = data["generators"], data["loads"], data["branches"]
        storage = data.get("storage") or ()
        p_from = _numbers([b["p_from_mw"] for b in branches], MAX_ABS_POWER_MW)
        p_to = _numbers([b.get("p_to_mw") for b in branches], MAX_ABS_POWER_MW, optional=True)
        missing = np.isnan(p_to)
        if missing.any():
            p_to[missing] = -p_from[missing]
        return Snapshot(
            bus_ids=template.bus_ids,
            gen_ids=template.gen_ids,
            gen_bus=template.gen_bus,
            gen_p_mw=_numbers([g["p_mw"] for g in gens], MAX_ABS_POWER_MW),
            gen_intensity_g_per_kwh=_intensities([g["intensity_g_per_kwh"] for g in gens], False),
            load_ids=template.load_ids,
            load_bus=template.load_bus,
            load_p_mw=_numbers([ld["p_mw"] for ld in loads], MAX_ABS_POWER_MW),
            load_intensity_g_per_kwh=_intensities([ld.get("intensity_g_per_kwh") for ld in loads], True),
            branch_ids=template.branch_ids,
            branch_from=template.branch_from,
            branch_to=template.branch_to,
            branch_p_from_mw=p_from,
            branch_p_to_mw=p_to,
            storage_ids=template.storage_ids,
            storage_bus=template.storage_bus,
            storage_p_mw=_numbers([s["p_mw"] for s in storage], MAX_ABS_POWER_MW).reshape(-1),
            storage_intensity_g_per_kwh=_intensities(
                [s.get("intensity_g_per_kwh") for s in storage], True
            ).reshape(-1),
        )


def corrected_document(document: Mapping[str, Any], factors: Mapping[str, float]) -> dict[str, Any]:
    """The stored snapshot document with the corrected factors (what ``with_factors`` makes of a copy)."""
    if not factors:
        return dict(document)  # the same generators list: nothing corrected
    generators = [
        {**g, "intensity_g_per_kwh": factors[g["id"]]} if g.get("id") in factors else g
        for g in document.get("generators", [])
    ]
    return {**document, "generators": generators}


def corrected_text(stored_text: str | None, stored: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    """The JSON text of ``document`` (``stored`` with corrected factors) for the ``snapshot`` column,
    made from the stored text (``stored``'s, as ``json.dumps`` wrote it) by replacing its generators
    rather than serialising the whole snapshot again; ``json.dumps(document)`` when the stored text is
    not laid out so (another writer) or the generators' text is not found exactly once."""
    if stored_text is None:
        return json.dumps(document)
    if document.get("generators") is stored.get("generators"):
        return stored_text  # no factor changed
    needle = '"generators": ' + json.dumps(stored.get("generators"))
    at = stored_text.find(needle)
    if at < 0 or stored_text.find(needle, at + 1) >= 0:
        return json.dumps(document)
    replaced = '"generators": ' + json.dumps(document["generators"])
    return stored_text[:at] + replaced + stored_text[at + len(needle) :]


def _none_for_nan(values: np.ndarray) -> list[float | None]:
    out = values.tolist()
    if np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


def element_columns(snapshot: Snapshot, result: Any, interval_s: int) -> dict[str, dict[str, list[Any]]]:
    """The element rows of ``result`` by kind, as columns (what ``interval_from_document`` computes per
    row from the result document, the same floating-point operations in the same order)."""
    hours = interval_s / 3600.0
    acc, flows = result.accounts, result.flows
    bus_ids = snapshot.bus_ids
    flux = acc.bus_flux_mw
    bus_energy = flux * hours * KWH_PER_MWH
    intensity = acc.bus_intensity_g_per_kwh
    columns: dict[str, dict[str, list[Any]]] = {
        "bus": {
            "element_id": list(bus_ids),
            "bus_id": list(bus_ids),
            "flux_mw": flux.tolist(),
            "intensity_g_per_kwh": _none_for_nan(intensity),
            "energy_kwh": bus_energy.tolist(),
            "carbon_kg": (bus_energy * np.where(np.isnan(intensity), 0.0, intensity) / 1000.0).tolist(),
            "load_mw": acc.bus_load_mw.tolist(),
            "load_carbon_t_per_h": acc.bus_load_carbon_t_per_h.tolist(),
        }
    }
    sending = [
        bus_ids[s] if d in SENDING_CODES else None
        for d, s in zip(flows.direction.tolist(), flows.sending_bus.tolist())
    ]
    columns["branch"] = {
        "element_id": list(snapshot.branch_ids),
        "bus_id": [bus_ids[b] for b in snapshot.branch_from.tolist()],
        "sending_bus": sending,
        "intensity_g_per_kwh": _none_for_nan(acc.branch_density_g_per_kwh),
        "p_send_mw": flows.p_send_mw.tolist(),
        "p_recv_mw": flows.p_recv_mw.tolist(),
        "energy_kwh": (flows.p_send_mw * hours * KWH_PER_MWH).tolist(),
        "carbon_kg": (acc.branch_carbon_send_t_per_h * hours * 1000.0).tolist(),
        "carbon_send_t_per_h": acc.branch_carbon_send_t_per_h.tolist(),
        "carbon_recv_t_per_h": acc.branch_carbon_recv_t_per_h.tolist(),
        "loss_carbon_t_per_h": acc.branch_loss_carbon_t_per_h.tolist(),
        "loss_carbon_kg": (acc.branch_loss_carbon_t_per_h * hours * 1000.0).tolist(),
    }
    generated, consumed = result.injected_carbon_t_per_h("generator"), result.absorbed_carbon_t_per_h("load")
    for kind, ids, bus, p_mw, rate in (
        ("generator", snapshot.gen_ids, snapshot.gen_bus, snapshot.gen_p_mw, generated),
        ("load", snapshot.load_ids, snapshot.load_bus, snapshot.load_p_mw, consumed),
    ):
        with np.errstate(divide="ignore", invalid="ignore"):
            per_kwh = rate * 1000.0 / p_mw
        columns[kind] = {
            "element_id": list(ids),
            "bus_id": [bus_ids[b] for b in bus.tolist()],
            "p_mw": p_mw.tolist(),
            "carbon_t_per_h": rate.tolist(),
            "intensity_g_per_kwh": [v if p else None for v, p in zip(per_kwh.tolist(), p_mw.tolist())],
            "energy_kwh": (p_mw * hours * KWH_PER_MWH).tolist(),
            "carbon_kg": (rate * hours * 1000.0).tolist(),
        }
    return columns


def snapshot_record(
    ts: datetime,
    interval_s: int,
    level: str,
    snapshot: Snapshot,
    losses: str,
    *,
    document: dict[str, Any],
    estimation: dict[str, Any] | None,
    snapshot_text: str | None = None,
    scheme1: bool = False,
) -> IntervalRecord:
    """The record of the interval ``snapshot`` gives under ``losses`` (raises ``SnapshotError``):
    equal to ``interval_from_document(ts, interval_s, result document, ..., origin=its origin)``, its
    result hash made from the arrays (scheme 2) without the result document; with ``scheme1`` also the
    scheme-1 hash (``hash_v1``, from the document), to compare with an interval stored under scheme 1."""
    result = solve(snapshot, losses)
    origin = origin_shares(result)
    parts = origin_parts(origin)  # once, for the origin column and the hash
    columns = element_columns(snapshot, result, interval_s)
    texts = {} if snapshot_text is None else {"snapshot": snapshot_text}
    digest = result_hash(result, origin, parts, ts=ts, interval_s=interval_s)
    record = IntervalRecord(
        utc(ts), interval_s, level, result.losses, document, estimation, result.totals, None, digest,
        columns=columns, texts=texts, origin_packed=pack_origin_of(result, origin, parts),
    )  # fmt: skip
    if scheme1:
        origin_doc = origin_document(result, origin, parts)
        record.hash_v1 = document_hash_v1({**result_document(result), "origin": origin_doc})
    return record


__all__ = ["SnapshotDecoder", "SnapshotError", "corrected_document", "corrected_text", "snapshot_record"]

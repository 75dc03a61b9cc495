"""A result as a plain document (contract C1 output): JSON-ready dicts, ``None`` for undefined; and the
result's hash (docs/tamper-evidence.md, "The result hash"), made from the arrays or from the document."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from numba import njit

from carbonflow.engine.cef import CefResult
from carbonflow.engine.flows import BOTH_SENDING, FORWARD, IDLE, REVERSE
from carbonflow.engine.origin import Origin, origin_shares
from carbonflow.engine.origin import warm_up as warm_up_origin

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


SparseRows = tuple[np.ndarray, np.ndarray, np.ndarray]  # per row its count (-1: undefined), columns, values


def _sparse_form(matrix: np.ndarray, defined: np.ndarray) -> SparseRows:
    """A matrix as the document keeps it: per row the number of entries above the floor (NaN never is;
    -1 for an undefined row, which keeps none), their columns and values, row-major — in one compiled
    pass over the rows (a 10,000-bus grid has millions of shares to look at, ~0.7 % of them kept)."""
    return _sparse_rows(np.ascontiguousarray(matrix, dtype=np.float64), defined.astype(np.bool_), None)


@njit(cache=True, error_model="numpy")
def _sparse_rows(matrix, defined, totals) -> SparseRows:  # pragma: no cover - compiled
    """Per row of ``matrix`` (``totals``: of ``matrix / totals[:, None]``, a row defined where its total is
    > 0, each entry divided as numpy divides it) the entries > ``_SHARE_FLOOR`` in column order: counts
    (-1: undefined), columns, values.  Two passes: count, then fill."""
    n_rows, n_cols = matrix.shape
    counts = np.empty(n_rows, np.int64)
    total = 0
    for r in range(n_rows):
        if not (defined[r] if totals is None else totals[r] > 0):
            counts[r] = -1
            continue
        kept = 0
        row = matrix[r]
        if totals is None:
            for k in range(n_cols):
                if row[k] > _SHARE_FLOOR:
                    kept += 1
        else:
            t = totals[r]
            for k in range(n_cols):
                if row[k] / t > _SHARE_FLOOR:
                    kept += 1
        counts[r] = kept
        total += kept
    columns = np.empty(total, np.int64)
    values = np.empty(total, np.float64)
    at = 0
    for r in range(n_rows):
        if counts[r] <= 0:
            continue
        row = matrix[r]
        if totals is None:
            for k in range(n_cols):
                if row[k] > _SHARE_FLOOR:
                    columns[at] = k
                    values[at] = row[k]
                    at += 1
        else:
            t = totals[r]
            for k in range(n_cols):
                v = row[k] / t
                if v > _SHARE_FLOOR:
                    columns[at] = k
                    values[at] = v
                    at += 1
    return counts, columns, values


def _carbon_fractions(carbon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each load's carbon by source over its total (the row itself where the total is not > 0), and the
    totals, as dense matrices: the reference :func:`origin_parts`' compiled pass is tested against
    (tests/test_origin_parts.py).  ``sum(axis=1)`` of the C-contiguous rows sums each row as ``row.sum()``
    does (the same pairwise loop; tests/test_result_hash.py holds them bitwise equal), and the division
    is elementwise."""
    carbon = np.ascontiguousarray(carbon, dtype=np.float64)
    totals = carbon.sum(axis=1)
    positive = totals > 0
    return np.where(positive[:, None], carbon / np.where(positive, totals, 1.0)[:, None], carbon), totals


OriginParts = tuple[SparseRows, SparseRows, SparseRows, SparseRows]


def origin_parts(origin: Origin) -> OriginParts:
    """The four matrices of the origin document in sparse form — bus power shares, load power, load
    carbon, load carbon shares — made once for the document and the result hash.  The carbon shares
    (``_carbon_fractions``: each row over its total, kept where the total is > 0) are divided entry by
    entry in the compiled pass, not as a dense matrix; the totals are numpy's row sums as there."""
    bus_defined = ~np.isnan(origin.bus_power_share).any(axis=1)
    carbon = np.ascontiguousarray(origin.load_carbon_t_per_h, dtype=np.float64)
    totals = carbon.sum(axis=1)
    every_load = np.ones(len(totals), dtype=bool)
    return (
        _sparse_form(origin.bus_power_share, bus_defined),
        _sparse_form(origin.load_power_mw, every_load),
        _sparse_rows(carbon, every_load, None),
        _sparse_rows(carbon, every_load, totals),
    )


def warm_up() -> CefResult:
    """``origin.warm_up`` and the sparse rows of the origin parts: load (or compile) every compiled part
    of metering an interval, so that the first real interval pays no compilation; the two-bus result."""
    result = warm_up_origin()
    origin_parts(origin_shares(result))
    return result


def _row_dicts(part: SparseRows, names: tuple[str, ...]) -> list[dict[str, float] | None]:
    counts, columns, values = part
    labels, numbers = [names[k] for k in columns.tolist()], values.tolist()
    sizes = counts.tolist()
    bounds = np.concatenate(([0], np.cumsum(np.maximum(counts, 0)))).tolist()
    return [
        None if size < 0 else dict(zip(labels[a:b], numbers[a:b]))
        for size, a, b in zip(sizes, bounds, bounds[1:])
    ]


def origin_document(result: CefResult, origin: Origin, parts: OriginParts | None = None) -> dict[str, Any]:
    """The origin part of the result document (``parts``: ``origin_parts(origin)`` when made already)."""
    snap = result.snapshot
    return origin_document_of(
        origin.source_ids,
        origin.source_intensity_g_per_kwh.tolist(),
        snap.bus_ids,
        snap.load_ids,
        [snap.bus_ids[bus] for bus in snap.load_bus.tolist()],
        parts or origin_parts(origin),
    )


def origin_document_of(
    source_ids: Sequence[str],
    intensities: Sequence[float],
    bus_ids: Sequence[str],
    load_ids: Sequence[str],
    load_buses: Sequence[str],
    parts: OriginParts,
    *,
    buses: bool = True,
) -> dict[str, Any]:
    """The origin document of the ids and the sparse parts (``origin_document``'s, and the stored packed
    form's: store/packed_origin.py); ``buses=False`` leaves the per-bus shares out (``"buses": []``)."""
    names = tuple(source_ids)
    loads_power, loads_carbon, loads_share = (_row_dicts(p, names) for p in parts[1:])
    shares = _row_dicts(parts[0], names) if buses else []
    return {
        "sources": [{"id": name, "intensity_g_per_kwh": e} for name, e in zip(names, intensities)],
        "buses": [{"id": bus_id, "power_share": share} for bus_id, share in zip(bus_ids, shares)],
        "loads": [
            {
                "id": load_id,
                "bus": bus,
                "power_mw": loads_power[k],
                "carbon_t_per_h": loads_carbon[k],
                "carbon_share": loads_share[k],
            }
            for k, (load_id, bus) in enumerate(zip(load_ids, load_buses))
        ],
    }


def _numbers(values: np.ndarray) -> list[float | None]:
    """Every entry as a Python float, None for NaN (undefined)."""
    return [None if v != v else v for v in values.tolist()]


def result_document(
    result: CefResult, origin: Origin | None = None, parts: OriginParts | None = None
) -> dict[str, Any]:
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
        document["origin"] = origin_document(result, origin, parts)
    return document


# --- the result hash ----------------------------------------------------------------------------------
# Scheme 1: SHA-256 (hex) of the whole result document as canonical JSON — ~3 ms per interval of the
# reference grid, most of it ``repr`` of ~2,600 floats.  Scheme 2 (stored as "2:" + base64url): SHA-256
# of a small JSON header and the result's numbers as little-endian float64 in a fixed order, made straight
# from the engine's arrays.  Both stay verifiable: a stored hash says its scheme (``hash_scheme``).

HASH_SCHEME = 2
_SCHEME_PREFIX = "2:"
_DIRECTION_CODES = {name: code for code, name in _DIRECTION_NAMES.items()}
_TOTALS = (  # the order of the totals in the hashed numbers
    "generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h", "residual_t_per_h",
    "generation_mw", "load_mw", "loss_mw",
)  # fmt: skip
_FIELDS = {  # kind -> the numbers of each record hashed, in this order (document field names)
    "buses": ("flux_mw", "intensity_g_per_kwh", "load_mw", "load_carbon_t_per_h"),
    "branches": (
        "direction", "p_send_mw", "p_recv_mw", "density_g_per_kwh", "carbon_send_t_per_h",
        "carbon_recv_t_per_h", "loss_carbon_t_per_h",
    ),
    "generators": ("p_mw", "intensity_g_per_kwh", "carbon_t_per_h", "absorbed_carbon_t_per_h"),
    "loads": ("p_mw", "carbon_t_per_h", "injected_carbon_t_per_h"),
    "storage": ("p_mw", "charge_carbon_t_per_h", "discharge_carbon_t_per_h"),
}  # fmt: skip
_KINDS = tuple(_FIELDS)
_ORIGIN_MATRICES = (("buses", "power_share"), ("loads", "power_mw"), ("loads", "carbon_t_per_h"),
                    ("loads", "carbon_share"))  # fmt: skip


def hash_scheme(stored: str) -> int:
    """The scheme a stored result hash was made under: 2 for "2:…", else 1 (64 hex digits)."""
    return 2 if stored.startswith(_SCHEME_PREFIX) else 1


def document_hash_v1(document: Any) -> str:
    """Scheme 1: SHA-256 (hex) of the document as JSON with sorted keys and no spaces (``ensure_ascii``)."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _listing_digest(items: list[Any]) -> str:
    return hashlib.sha256(_canonical(items)).hexdigest()


@lru_cache(maxsize=64)
def _structure_digest(ids: tuple[str, ...], bus_ids: tuple[str, ...], refs: bytes, width: int) -> str:
    """Digest of a kind's listing from the arrays: ids alone (``width`` 0), or [id, bus ids of its
    ``width`` bus references] — the same network every interval, so kept."""
    if width == 0:
        return _listing_digest(list(ids))
    columns = np.frombuffer(refs, dtype=np.int64).reshape(width, len(ids)).tolist()
    return _listing_digest([[i, *(bus_ids[c[k]] for c in columns)] for k, i in enumerate(ids)])


def _refs_digest(ids: tuple[str, ...], bus_ids: tuple[str, ...], *refs: np.ndarray) -> str:
    stacked = np.array(refs, dtype=np.int64).reshape(len(refs), len(ids))
    return _structure_digest(tuple(ids), tuple(bus_ids), stacked.tobytes(), len(refs))


def _floats(values: np.ndarray) -> bytes:
    """float64 little-endian, -0.0 as +0.0 and every NaN as the one quiet NaN 0x7FF8000000000000."""
    array = np.asarray(values, dtype="<f8") + 0.0  # -0.0 + 0.0 is +0.0
    array[np.isnan(array)] = np.nan
    return array.tobytes()


def _ints(values: Any) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def _timestamp(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError(f"naive timestamp {ts.isoformat()} (timestamps must carry a time zone)")
    # 2025-03-01T00:15:00.000000Z (isoformat: strftime costs ~0.1 ms a call)
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _digest(
    ts: datetime,
    interval_s: int,
    losses: str,
    listings: dict[str, str],
    numbers: np.ndarray,
    origin: tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] | None,
) -> str:
    """The one scheme-2 hash: header, newline, numbers, then the origin part (both fronts end here)."""
    header = {
        "scheme": HASH_SCHEME, "ts": _timestamp(ts), "interval_s": int(interval_s), "losses": losses,
        "origin": origin is not None, "ids": listings,
    }  # fmt: skip
    digest = hashlib.sha256(_canonical(header))
    digest.update(b"\n")
    digest.update(_floats(numbers))
    if origin is not None:
        intensities, matrices = origin
        digest.update(_floats(intensities))
        for counts, columns, values in matrices:
            digest.update(_ints(counts))
            digest.update(_ints(columns))
            digest.update(_floats(values))
    return _SCHEME_PREFIX + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def result_hash(
    result: CefResult,
    origin: Origin | None,
    parts: OriginParts | None = None,
    *,
    ts: datetime,
    interval_s: int,
) -> str:
    """The scheme-2 hash of ``result_document(result, origin)`` for the interval ending ``ts``, made from
    the arrays (equal to ``document_hash`` of that document; ``parts``: ``origin_parts(origin)`` when
    made already for the document)."""
    snap, acc, flows = result.snapshot, result.accounts, result.flows
    bus_ids = snap.bus_ids
    listings = {
        "buses": _refs_digest(bus_ids, bus_ids),
        "branches": _refs_digest(snap.branch_ids, bus_ids, snap.branch_from, snap.branch_to),
        "generators": _refs_digest(snap.gen_ids, bus_ids, snap.gen_bus),
        "loads": _refs_digest(snap.load_ids, bus_ids, snap.load_bus),
        "storage": _refs_digest(snap.storage_ids, bus_ids, snap.storage_bus),
    }
    totals = result.totals
    numbers = np.concatenate([
        acc.bus_flux_mw, acc.bus_intensity_g_per_kwh, acc.bus_load_mw, acc.bus_load_carbon_t_per_h,
        flows.direction.astype(np.float64), flows.p_send_mw, flows.p_recv_mw, acc.branch_density_g_per_kwh,
        acc.branch_carbon_send_t_per_h, acc.branch_carbon_recv_t_per_h, acc.branch_loss_carbon_t_per_h,
        snap.gen_p_mw, snap.gen_intensity_g_per_kwh, result.injected_carbon_t_per_h("generator"),
        result.absorbed_carbon_t_per_h("generator"),
        snap.load_p_mw, result.absorbed_carbon_t_per_h("load"), result.injected_carbon_t_per_h("load"),
        snap.storage_p_mw, result.absorbed_carbon_t_per_h("storage"),
        result.injected_carbon_t_per_h("storage"),
        np.array([totals[name] for name in _TOTALS], dtype=np.float64),
    ]).astype(np.float64, copy=False)  # fmt: skip
    part = None
    if origin is not None:
        listings["sources"] = _refs_digest(origin.source_ids, bus_ids)
        part = (origin.source_intensity_g_per_kwh, list(parts or origin_parts(origin)))
    return _digest(ts, interval_s, result.losses, listings, numbers, part)


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def document_hash(document: Mapping[str, Any], *, ts: datetime, interval_s: int) -> str:
    """The scheme-2 hash of a result document (any part missing counts as empty; a missing or null
    number as NaN) for the interval ending ``ts``."""
    records = {kind: list(document.get(kind) or ()) for kind in _KINDS}
    listings = {
        "buses": _listing_digest([r.get("id") for r in records["buses"]]),
        "branches": _listing_digest(
            [[r.get("id"), r.get("from_bus"), r.get("to_bus")] for r in records["branches"]]
        ),
        **{
            kind: _listing_digest([[r.get("id"), r.get("bus")] for r in records[kind]])
            for kind in ("generators", "loads", "storage")
        },
    }  # fmt: skip
    numbers: list[float] = []
    for kind, fields in _FIELDS.items():
        for name in fields:
            if name == "direction":
                numbers += [_DIRECTION_CODES.get(r.get("direction"), np.nan) for r in records[kind]]
            else:
                numbers += [_number(r.get(name)) for r in records[kind]]
    totals = document.get("totals") or {}
    numbers += [_number(totals.get(name)) for name in _TOTALS]
    part = None
    origin = document.get("origin")
    if origin is not None:
        sources = list(origin.get("sources") or ())
        names = [s.get("id") for s in sources]
        listings["sources"] = _listing_digest(names)
        column_of = {name: k for k, name in enumerate(names)}
        matrices = []
        for kind, field in _ORIGIN_MATRICES:
            counts, columns, values = [], [], []
            for record in origin.get(kind) or ():
                row = record.get(field)
                if row is None:
                    counts.append(-1)
                    continue
                entries = sorted((column_of[name], value) for name, value in row.items())
                counts.append(len(entries))
                columns += [c for c, _ in entries]
                values += [_number(v) for _, v in entries]
            matrices.append((np.array(counts, dtype=np.int64), np.array(columns, dtype=np.int64),
                             np.array(values, dtype=np.float64)))  # fmt: skip
        part = (
            np.array([_number(s.get("intensity_g_per_kwh")) for s in sources], dtype=np.float64),
            matrices,
        )
    losses = document.get("losses", "receiving")
    return _digest(ts, interval_s, losses, listings, np.array(numbers, dtype=np.float64), part)

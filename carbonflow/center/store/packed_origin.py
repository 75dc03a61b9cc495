"""An interval's origin shares as one compact value (``intervals.origin_packed``, issue 17 §3).

The origin document (``engine.document.origin_document``: per source its intensity, per bus its power
shares, per load its power, carbon and carbon shares by source) was stored as JSON in ``intervals.origin``
— ~36 kB per interval of the reference grid, most of a recomputed interval's text to make and to write.
It is stored packed since migration 0018, the sparse parts of ``engine.document.origin_parts`` as they
are:

    b"CFO1" | uint32 LE length of the header
    | header: UTF-8 JSON [[source ids], [bus ids], [load ids], [each load's bus id]]
    | float64 LE source intensities (K)
    | four parts — bus power shares (a row per bus), load power, load carbon, load carbon shares (a row
      per load) — each: int32 LE per row its number of entries (-1: undefined, ``null`` in the document)
      | int32 LE the entries' source columns | float64 LE the entries' values

Reading it back gives the very document ``origin_document`` made (the same floats bit for bit, the same
keys in the same order); rows stored before keep their JSON column and are read from it (``origin_of``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from carbonflow.engine.document import OriginParts, origin_document_of

MAGIC = b"CFO1"
_LENGTH = struct.Struct("<I")
_PART_NAMES = ("power_mw", "carbon_t_per_h", "carbon_share")


def pack_origin(
    source_ids: Sequence[str],
    intensities: np.ndarray,
    bus_ids: Sequence[str],
    load_ids: Sequence[str],
    load_buses: Sequence[str],
    parts: OriginParts,
) -> bytes:
    """The packed value of the origin document of these ids and ``origin_parts``."""
    header = json.dumps(
        [list(source_ids), list(bus_ids), list(load_ids), list(load_buses)], separators=(",", ":")
    )
    blocks = [
        MAGIC,
        _LENGTH.pack(len(header)),
        header.encode(),
        np.asarray(intensities, dtype="<f8").tobytes(),
    ]
    for counts, columns, values in parts:
        blocks += (
            counts.astype("<i4").tobytes(),
            columns.astype("<i4").tobytes(),
            values.astype("<f8").tobytes(),
        )
    return b"".join(blocks)


def pack_origin_of(result, origin, parts: OriginParts) -> bytes:
    """:func:`pack_origin` of an engine result, its ``Origin`` and their ``origin_parts``."""
    snap = result.snapshot
    load_buses = [snap.bus_ids[bus] for bus in snap.load_bus.tolist()]
    return pack_origin(
        origin.source_ids, origin.source_intensity_g_per_kwh, snap.bus_ids, snap.load_ids, load_buses, parts
    )


def unpack_origin(value: bytes, *, buses: bool = True) -> dict[str, Any]:
    """The origin document :func:`pack_origin` packed (``buses=False``: without the per-bus shares, whose
    entries are then not read — ``"buses": []``)."""
    data = bytes(value)
    if data[:4] != MAGIC:
        raise ValueError("not a packed origin document")
    (length,) = _LENGTH.unpack_from(data, 4)
    at = 8 + length
    sources, bus_ids, load_ids, load_buses = json.loads(data[8:at])
    intensities = np.frombuffer(data, dtype="<f8", count=len(sources), offset=at)
    at += 8 * len(sources)
    parts = []
    for rows in (len(bus_ids), len(load_ids), len(load_ids), len(load_ids)):
        counts = np.frombuffer(data, dtype="<i4", count=rows, offset=at).astype(np.int64)
        at += 4 * rows
        entries = int(np.maximum(counts, 0).sum())
        columns = np.frombuffer(data, dtype="<i4", count=entries, offset=at).astype(np.int64)
        values = np.frombuffer(data, dtype="<f8", count=entries, offset=at + 4 * entries)
        at += 12 * entries
        parts.append((counts, columns, values.astype(np.float64)))
    if at != len(data):
        raise ValueError("a packed origin document of the wrong length")
    return origin_document_of(
        sources, intensities.tolist(), bus_ids, load_ids, load_buses, tuple(parts), buses=buses
    )


def pack_origin_document(document: dict[str, Any] | None) -> bytes | None:
    """The packed value of an origin document given as a document (made by ``origin_document``, or read
    back from JSON), or None where it has no packed form that reads back as the same document (it is then
    kept as JSON): every share's source among the sources, no other keys."""
    if not document:
        return None
    try:
        sources = [s["id"] for s in document["sources"]]
        column = {name: k for k, name in enumerate(sources)}
        bus_rows = [b["power_share"] for b in document["buses"]]
        loads = document["loads"]
        parts = tuple(
            _sparse(rows, column)
            for rows in (bus_rows, *([load[name] for load in loads] for name in _PART_NAMES))
        )
        value = pack_origin(
            sources,
            np.array([s["intensity_g_per_kwh"] for s in document["sources"]], dtype=np.float64),
            [b["id"] for b in document["buses"]],
            [load["id"] for load in loads],
            [load["bus"] for load in loads],
            parts,  # type: ignore[arg-type]
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    return value if _same(unpack_origin(value), document) else None


def _sparse(rows: list[dict[str, float] | None], column: dict[str, int]):
    counts, columns, values = [], [], []
    for row in rows:
        if row is None:
            counts.append(-1)
            continue
        counts.append(len(row))
        columns += [column[name] for name in row]
        values += row.values()
    return (
        np.array(counts, dtype=np.int64),
        np.array(columns, dtype=np.int64),
        np.array(values, dtype=np.float64),
    )


def _same(a: Any, b: Any) -> bool:
    """Equal documents, floats bit for bit (key order aside: a document read back from sorted JSON)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def origin_of(
    document: dict[str, Any] | None, packed: bytes | None, *, buses: bool = True
) -> dict[str, Any] | None:
    """An interval's origin document from its two columns: the packed one when set, else the JSON one."""
    if packed is not None:
        return unpack_origin(packed, buses=buses)
    return document or None


__all__ = ["MAGIC", "origin_of", "pack_origin", "pack_origin_document", "pack_origin_of", "unpack_origin"]

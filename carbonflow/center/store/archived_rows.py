"""The element rows of a replaced (archived) interval result as one compact value (issue 17 §3).

A recomputation moves the result it replaces to the archive.  Its element rows (bus, branch,
generator, load: id, bus, intensity, energy, carbon — 319 rows per interval of the reference grid)
used to be copied row by row into ``archived_results``, the biggest single cost of writing a chunk
(an index entry per row in a table that only grows).  They are now packed into one value per
interval, ``archived_intervals.element_rows``, read back only when someone asks for that version:

    b"CFR1" | uint32 LE length of the header | header: UTF-8 JSON [[kind, [element ids], [bus ids]], ...]
    | float64 LE, per kind in the header's order: intensity (NaN = none) × n, energy × n, carbon × n

Kinds and rows keep the order they were read in (by element id), so the same stored rows always give
the same bytes (a pool and a Dask cluster write byte-identical archives).  ``archived_results`` keeps
the rows archived before this format, and stays readable (store/version_reads.py reads both).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAGIC = b"CFR1"
_LENGTH = struct.Struct("<I")
ROW_FIELDS = ("element_id", "bus_id", "intensity_g_per_kwh", "energy_kwh", "carbon_kg")


def pack_rows(rows: Mapping[str, Sequence[Sequence[Any]]]) -> bytes:
    """``{kind: [(element_id, bus_id, intensity or None, energy, carbon), ...]}`` as one value."""
    return pack_columns({kind: tuple(zip(*items)) or ((),) * 5 for kind, items in rows.items()})


def pack_columns(columns: Mapping[str, Sequence[Sequence[Any]]]) -> bytes:
    """:func:`pack_rows` of the rows given as columns, ``{kind: (element ids, bus ids, intensities (None:
    none), energies, carbons)}`` — the same bytes, without a Python step per row (recomputation packs
    the rows it reads back transposed once, store/result_versions.py)."""
    header = []
    numbers: list[np.ndarray] = []
    for kind, (ids, buses, intensity, energy, carbon) in columns.items():
        header.append([kind, list(ids), list(buses)])
        numbers.append(np.array([intensity, energy, carbon], dtype="<f8"))  # None -> NaN
    text = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(block.tobytes() for block in numbers)
    return MAGIC + _LENGTH.pack(len(text)) + text + body


def unpack_rows(value: bytes) -> dict[str, list[dict[str, Any]]]:
    """The rows :func:`pack_rows` packed, by kind, as dicts of :data:`ROW_FIELDS` (intensity None for NaN)."""
    data = bytes(value)
    if data[:4] != MAGIC:
        raise ValueError("not a packed archive of element rows")
    (length,) = _LENGTH.unpack_from(data, 4)
    at = 8 + length
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, ids, buses in json.loads(data[8:at]):
        n = len(ids)
        block = np.frombuffer(data, dtype="<f8", count=3 * n, offset=at).reshape(3, n)
        at += 24 * n
        intensity, energy, carbon = (column.tolist() for column in block)
        columns = zip(ids, buses, (None if i != i else i for i in intensity), energy, carbon)
        out[kind] = [dict(zip(ROW_FIELDS, values)) for values in columns]
    return out


__all__ = ["MAGIC", "ROW_FIELDS", "pack_columns", "pack_rows", "unpack_rows"]

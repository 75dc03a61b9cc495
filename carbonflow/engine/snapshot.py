"""The engine's only input: one power-flow snapshot of a network (contract C1).

Records keep their string ids; buses are mapped to positions once, here, so that the solver works on
integer arrays.  Sign conventions follow DESIGN.md §3: generator ``p_mw`` is injected power, load
``p_mw`` is consumed power, storage ``p_mw`` is power drawn from the grid (charging positive, as in
pandapower), branch ``p_from_mw`` / ``p_to_mw`` is power injected into the branch at that end
(MATPOWER's sign).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonflow.engine.errors import SnapshotError

_SECTIONS = ("generators", "loads", "branches")


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One network state.  Arrays are aligned with the id tuples of their element kind."""

    bus_ids: tuple[str, ...]
    gen_ids: tuple[str, ...]
    gen_bus: np.ndarray
    gen_p_mw: np.ndarray
    gen_intensity_g_per_kwh: np.ndarray
    load_ids: tuple[str, ...]
    load_bus: np.ndarray
    load_p_mw: np.ndarray
    # Intensity of power a load injects when its p_mw is negative (NaN: zero-carbon, e.g. rooftop PV).
    load_intensity_g_per_kwh: np.ndarray
    branch_ids: tuple[str, ...]
    branch_from: np.ndarray
    branch_to: np.ndarray
    branch_p_from_mw: np.ndarray
    branch_p_to_mw: np.ndarray
    storage_ids: tuple[str, ...] = ()
    storage_bus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    storage_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Intensity of discharged power (NaN: unknown, must come from a carbon state).
    storage_intensity_g_per_kwh: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_bus(self) -> int:
        return len(self.bus_ids)

    def bus_index(self) -> dict[str, int]:
        return {bus_id: i for i, bus_id in enumerate(self.bus_ids)}

    def with_values(self, **arrays: np.ndarray) -> Snapshot:
        """A snapshot of the same network with some value arrays replaced (ids and buses kept)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, array in arrays.items():
            if name not in values or name.endswith("_ids") or name.endswith("_bus"):
                raise KeyError(f"not a value array of a snapshot: {name}")
            values[name] = np.asarray(array, dtype=float)
        return Snapshot(**values)


def _record_name(section: str, position: int, record: Any) -> str:
    # (a dict tested first: the ABC check costs ~1 µs a record, 30,000 records at 10,000 buses)
    if (type(record) is dict or isinstance(record, Mapping)) and isinstance(record.get("id"), str | int):
        return f'{section}[{position}] (id "{record["id"]}")'
    return f"{section}[{position}]"


def _as_id(value: Any, where: str, name: str) -> str:
    if type(value) is str and value and value.isascii():  # the usual id: nothing to check further
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SnapshotError(f"{where}: {name} must be a string id, got {json_repr(value)}")
    text = str(value)
    if not text:
        raise SnapshotError(f"{where}: {name} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SnapshotError(f"{where}: {name} is not valid Unicode text") from None
    return text


# Bounds far beyond any real grid (world generation is ~3e6 MW; the dirtiest fuels ~1.5e3 g/kWh) that
# keep every product MW x g/kWh and every sum of them well inside float range, so that absurd input
# is named instead of overflowing into inf/NaN somewhere inside the solve.
MAX_ABS_POWER_MW = 1e12
MAX_INTENSITY_G_PER_KWH = 1e9


def _as_number(value: Any, where: str, name: str, limit: float = MAX_ABS_POWER_MW) -> float:
    if type(value) is float and math.isfinite(value) and abs(value) <= limit:  # the usual number
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotError(f"{where}: {name} must be a number, got {json_repr(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise SnapshotError(f"{where}: {name} is too large, got {json_repr(value)}") from None
    if not math.isfinite(number):
        raise SnapshotError(f"{where}: {name} must be finite, got {value}")
    if abs(number) > limit:
        raise SnapshotError(f"{where}: {name} = {json_repr(value)} is implausibly large (limit {limit:g})")
    return number


def json_repr(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


class _SectionReader:
    """Reads one list of records, checking fields, types and duplicate ids."""

    def __init__(self, data: Mapping[str, Any], section: str, required: bool) -> None:
        records = data.get(section)
        if records is None:
            if required:
                raise SnapshotError(f'snapshot: missing field "{section}"')
            records = []
        if not isinstance(records, list):
            raise SnapshotError(f'snapshot: "{section}" must be a list of records')
        self.section = section
        self.records: Sequence[Any] = records
        self.ids: list[str] = []

    def rows(self):
        seen: set[str] = set()
        for position, record in enumerate(self.records):
            where = _record_name(self.section, position, record)
            if type(record) is not dict and not isinstance(record, Mapping):
                raise SnapshotError(f"{where}: must be an object")
            record_id = _as_id(self.field(record, "id", where), where, "id")
            if record_id in seen:
                raise SnapshotError(f'{where}: duplicate {self.section} id "{record_id}"')
            seen.add(record_id)
            self.ids.append(record_id)
            yield where, record

    @staticmethod
    def field(record: Mapping[str, Any], name: str, where: str) -> Any:
        if name not in record:
            raise SnapshotError(f'{where}: missing field "{name}"')
        return record[name]


class _BusTable:
    """Maps bus ids to positions; declared buses are closed, otherwise buses appear as referenced."""

    def __init__(self, declared: list[str] | None) -> None:
        self.closed = declared is not None
        self.ids: list[str] = list(declared or [])
        self.index = {bus_id: i for i, bus_id in enumerate(self.ids)}

    def position(self, record: Mapping[str, Any], name: str, where: str) -> int:
        bus_id = _as_id(_SectionReader.field(record, name, where), where, name)
        if bus_id not in self.index:
            if self.closed:
                raise SnapshotError(f'{where}: unknown bus id "{bus_id}" in {name}')
            self.index[bus_id] = len(self.ids)
            self.ids.append(bus_id)
        return self.index[bus_id]


def _intensity(record: Mapping[str, Any], where: str, required: bool) -> float:
    name = "intensity_g_per_kwh"
    if name not in record or (record[name] is None and not required):
        if required:
            raise SnapshotError(f'{where}: missing field "{name}"')
        return math.nan
    value = _as_number(record[name], where, name, MAX_INTENSITY_G_PER_KWH)
    if value < 0:
        raise SnapshotError(f"{where}: {name} must not be negative, got {record[name]}")
    return value


def snapshot_from_dict(data: Any) -> Snapshot:
    """Validate a C1 snapshot document and build a :class:`Snapshot`.

    Raises :class:`SnapshotError` naming the first offending record; nothing is partially built.
    """
    if not isinstance(data, Mapping):
        raise SnapshotError("snapshot: top level must be a JSON object")
    declared = None
    if data.get("buses") is not None:
        buses = _SectionReader(data, "buses", required=False)
        for _where, _record in buses.rows():
            pass
        declared = buses.ids
    table = _BusTable(declared)

    gens = _SectionReader(data, "generators", required=True)
    gen_bus, gen_p, gen_e = [], [], []
    for where, record in gens.rows():
        gen_bus.append(table.position(record, "bus", where))
        gen_p.append(_as_number(gens.field(record, "p_mw", where), where, "p_mw"))
        gen_e.append(_intensity(record, where, required=True))

    loads = _SectionReader(data, "loads", required=True)
    load_bus, load_p, load_e = [], [], []
    for where, record in loads.rows():
        load_bus.append(table.position(record, "bus", where))
        load_p.append(_as_number(loads.field(record, "p_mw", where), where, "p_mw"))
        load_e.append(_intensity(record, where, required=False))

    branches = _SectionReader(data, "branches", required=True)
    br_from, br_to, br_pf, br_pt = [], [], [], []
    for where, record in branches.rows():
        from_bus = table.position(record, "from_bus", where)
        to_bus = table.position(record, "to_bus", where)
        if from_bus == to_bus:
            raise SnapshotError(f'{where}: from_bus and to_bus are the same bus "{table.ids[from_bus]}"')
        p_from = _as_number(branches.field(record, "p_from_mw", where), where, "p_from_mw")
        p_to = record.get("p_to_mw")
        br_from.append(from_bus)
        br_to.append(to_bus)
        br_pf.append(p_from)
        br_pt.append(-p_from if p_to is None else _as_number(p_to, where, "p_to_mw"))

    storage = _SectionReader(data, "storage", required=False)
    st_bus, st_p, st_e = [], [], []
    for where, record in storage.rows():
        st_bus.append(table.position(record, "bus", where))
        st_p.append(_as_number(storage.field(record, "p_mw", where), where, "p_mw"))
        st_e.append(_intensity(record, where, required=False))

    def ints(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.intp).reshape(-1)

    def floats(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(-1)

    return Snapshot(
        bus_ids=tuple(table.ids),
        gen_ids=tuple(gens.ids),
        gen_bus=ints(gen_bus),
        gen_p_mw=floats(gen_p),
        gen_intensity_g_per_kwh=floats(gen_e),
        load_ids=tuple(loads.ids),
        load_bus=ints(load_bus),
        load_p_mw=floats(load_p),
        load_intensity_g_per_kwh=floats(load_e),
        branch_ids=tuple(branches.ids),
        branch_from=ints(br_from),
        branch_to=ints(br_to),
        branch_p_from_mw=floats(br_pf),
        branch_p_to_mw=floats(br_pt),
        storage_ids=tuple(storage.ids),
        storage_bus=ints(st_bus),
        storage_p_mw=floats(st_p),
        storage_intensity_g_per_kwh=floats(st_e),
    )


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The C1 document of a snapshot (inverse of :func:`snapshot_from_dict`)."""
    bus = snapshot.bus_ids

    def optional_intensity(value: float) -> dict[str, float]:
        return {} if math.isnan(value) else {"intensity_g_per_kwh": float(value)}

    document: dict[str, Any] = {
        "buses": [{"id": bus_id} for bus_id in bus],
        "generators": [
            {"id": gid, "bus": bus[b], "p_mw": float(p), "intensity_g_per_kwh": float(e)}
            for gid, b, p, e in zip(
                snapshot.gen_ids, snapshot.gen_bus, snapshot.gen_p_mw, snapshot.gen_intensity_g_per_kwh
            )
        ],
        "loads": [
            {"id": lid, "bus": bus[b], "p_mw": float(p), **optional_intensity(e)}
            for lid, b, p, e in zip(
                snapshot.load_ids, snapshot.load_bus, snapshot.load_p_mw, snapshot.load_intensity_g_per_kwh
            )
        ],
        "branches": [
            {"id": bid, "from_bus": bus[f], "to_bus": bus[t], "p_from_mw": float(pf), "p_to_mw": float(pt)}
            for bid, f, t, pf, pt in zip(
                snapshot.branch_ids,
                snapshot.branch_from,
                snapshot.branch_to,
                snapshot.branch_p_from_mw,
                snapshot.branch_p_to_mw,
            )
        ],
    }
    if snapshot.storage_ids:
        document["storage"] = [
            {"id": sid, "bus": bus[b], "p_mw": float(p), **optional_intensity(e)}
            for sid, b, p, e in zip(
                snapshot.storage_ids,
                snapshot.storage_bus,
                snapshot.storage_p_mw,
                snapshot.storage_intensity_g_per_kwh,
            )
        ]
    return document

"""MATPOWER cases: a small ``.m`` reader, a power-flow bridge (pandapower) and the snapshot builder.

Ids are what users see on every screen and in every stored result, so they are fixed here:

* bus id = the MATPOWER bus number as text (``"9533"``), never a position (cef-model pitfall 6);
* generator ``"G{k}"`` and branch ``"{k}"``, ``k`` = 1-based row of ``mpc.gen`` / ``mpc.branch``;
  out-of-service rows keep their number, so ids do not shift when a unit is switched off;
* load ``"L{bus}"`` for ``Pd != 0``.  A negative ``Pd`` stays a negative load: the engine turns it into a
  zero-carbon source unless the intensities give ``"L{bus}"`` one (cef-model §5.3);
* bus shunt conductance is a load ``"SH{bus}"`` drawing ``Gs·Vm²`` MW (``Gs`` is MW at 1 p.u.; a DC
  solution has ``Vm = 1``), otherwise the nodal balance fails (§4.4, pitfall 4).

Isolated buses (type 4) are left out together with every generator, branch and load attached to them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from carbonflow.engine.snapshot import Snapshot, snapshot_from_dict
from carbonflow.sim.errors import GridImportError
from carbonflow.sim.intensities import IntensityTable

# MATPOWER column indices (idx_bus, idx_gen, idx_brch).
BUS_I, BUS_TYPE, PD, GS, VM, VA, BASE_KV = 0, 1, 2, 4, 7, 8, 9
GEN_BUS, PG, QG, GEN_STATUS = 0, 1, 2, 7
F_BUS, T_BUS, BR_STATUS, PF, QF, PT, QT = 0, 1, 10, 13, 14, 15, 16
ISOLATED = 4

NO_RESULTS = "case has no power-flow results (branch PF/PT); solve it first (--solve dc|ac)"
_MIN_COLUMNS = {"bus": 13, "gen": 10, "branch": 11, "gencost": 4}
_STATEMENT = re.compile(r"(?:mpc\.)?([A-Za-z]\w*)\s*(\([^=]*\))?\s*=(?!=)\s*(.*)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan, "+nan": math.nan}
_CLOSE = {"[": "]", "{": "}"}


def _strip_comment(raw: str) -> tuple[str, bool]:
    """Code of one line without its ``%`` (or Octave ``#``) comment, and whether it ends in ``...``.

    A quote opens a string only where a value may start; after a name or ``]`` it is MATLAB's
    transpose, which is how ``]';`` closes a transposed matrix.
    """
    quote = ""
    previous = ""
    for position, char in enumerate(raw):
        if quote:
            if char == quote:
                quote = ""
        elif char in "%#":
            return raw[:position], False
        elif raw.startswith("...", position):
            return raw[:position], True
        elif char == '"' or (char == "'" and not (previous.isalnum() or previous in "_])}.'")):
            quote = char
        if not char.isspace():
            previous = char
    return raw, False


def _number(token: str, line: int, name: str) -> float:
    if _NUMBER.fullmatch(token):
        return float(token)
    special = _SPECIAL.get(token.lower())
    if special is None:
        raise GridImportError(f'line {line}: cannot read "{token}" in mpc.{name}')
    return special


def _collect_block(lines: list[tuple[int, str, bool]], start: int, first: str, name: str, line: int):
    """Pieces of a ``[...]`` or ``{...}`` block, the index of the next line, and the text after it."""
    close = _CLOSE[first[0]]
    pieces: list[tuple[int, str, bool]] = []
    text, lineno, continued, index = first[1:], line, lines[start - 1][2], start
    while True:
        end = text.find(close)
        if end >= 0:
            pieces.append((lineno, text[:end], False))
            return pieces, index, text[end + 1 :]
        pieces.append((lineno, text, continued))
        if index >= len(lines):
            raise GridImportError(f"line {line}: mpc.{name} = {first[0]} is never closed with {close}")
        lineno, text, continued = lines[index]
        index += 1


def _matrix(pieces: list[tuple[int, str, bool]], name: str, line: int, transpose: bool) -> np.ndarray:
    rows: list[tuple[int, list[float]]] = []
    current: list[float] = []
    current_line = line

    def end_row() -> None:
        nonlocal current
        if current:
            rows.append((current_line, current))
        current = []

    for lineno, text, continued in pieces:
        segments = text.split(";")
        for number, segment in enumerate(segments):
            for token in re.split(r"[\s,]+", segment.strip()):
                if token:
                    if not current:
                        current_line = lineno
                    current.append(_number(token, lineno, name))
            if number < len(segments) - 1:
                end_row()
        if not continued:
            end_row()
    end_row()
    if not rows:
        return np.zeros((0, _MIN_COLUMNS.get(name, 0)))
    width = len(rows[0][1])
    for row_line, values in rows:
        if len(values) != width:
            raise GridImportError(
                f"line {row_line}: row of mpc.{name} has {len(values)} values, the first row has {width}"
            )
    array = np.array([values for _, values in rows], dtype=float)
    return array.T.copy() if transpose else array


def parse_matpower_case(text: str) -> dict[str, Any]:
    """Read a MATPOWER case file (version 2, or version 1 with bare ``bus = [...]`` names).

    Only literal data is understood; a case that edits its tables with code (``mpc.bus(:, 3) = ...``)
    is refused rather than read without the edit.
    """
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        code, continued = _strip_comment(raw)
        lines.append((number, code, continued))
    case: dict[str, Any] = {}
    where: dict[str, int] = {}
    index = 0
    while index < len(lines):
        lineno, code, _continued = lines[index]
        index += 1
        match = _STATEMENT.fullmatch(code.strip())
        if match is None:
            continue
        name, subscript, value = match.group(1), match.group(2), match.group(3).strip()
        known = name in _MIN_COLUMNS or name in ("baseMVA", "version")
        if known and subscript:
            raise GridImportError(f"line {lineno}: assignment to part of mpc.{name} is not supported")
        if value[:1] in _CLOSE:
            pieces, index, tail = _collect_block(lines, index, value, name, lineno)
            if not known:
                continue
            tail = tail.strip()
            if not re.fullmatch(r"'?\s*;?", tail):
                raise GridImportError(f'line {pieces[-1][0]}: unexpected "{tail}" after mpc.{name}')
            if name not in _MIN_COLUMNS:
                raise GridImportError(f"line {lineno}: mpc.{name} must be a single value")
            case[name] = _matrix(pieces, name, lineno, transpose=tail.startswith("'"))
            where[name] = lineno
        elif name == "version":
            case["version"] = value.split(";")[0].strip().strip("'\"")
        elif name == "baseMVA":
            base = _number(value.split(";")[0].strip(), lineno, name)
            if not math.isfinite(base) or base <= 0:
                raise GridImportError(f"line {lineno}: mpc.baseMVA must be a positive number")
            case["baseMVA"] = base
        elif known:
            raise GridImportError(f"line {lineno}: mpc.{name} must be a matrix [...]")
    for name in ("baseMVA", "bus", "gen", "branch"):
        if name not in case:
            raise GridImportError(f"case has no mpc.{name}")
    for name, columns in _MIN_COLUMNS.items():
        if name in case and case[name].shape[1] < columns and len(case[name]):
            raise GridImportError(
                f"line {where[name]}: mpc.{name} has {case[name].shape[1]} columns, needs at least {columns}"
            )
    return case


def load_matpower_case(path: str | Path) -> dict[str, Any]:
    """Read a ``.m`` case file from disk (comments in any 8-bit encoding are tolerated)."""
    return parse_matpower_case(Path(path).read_text(encoding="utf-8", errors="replace"))


def _table(ppc: Mapping[str, Any], name: str) -> np.ndarray:
    """A case table as a 2-D float copy: integer arrays truncate solved values (pitfall 7)."""
    if name not in ppc:
        raise GridImportError(f"case has no {name} table")
    try:
        array = np.array(ppc[name], dtype=float)
    except (TypeError, ValueError) as exc:
        raise GridImportError(f"case {name} table is not numeric: {exc}") from None
    if array.size == 0:
        return np.zeros((0, _MIN_COLUMNS[name]))
    array = array.reshape(1, -1) if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] < _MIN_COLUMNS[name]:
        raise GridImportError(f"case {name} table needs at least {_MIN_COLUMNS[name]} columns")
    return array


def _bus_ids(bus: np.ndarray) -> dict[float, str]:
    ids: dict[float, str] = {}
    for row, number in enumerate(bus[:, BUS_I], start=1):
        if not math.isfinite(number) or number != int(number):
            raise GridImportError(f"bus row {row}: bus number {number} is not an integer")
        if number in ids:
            raise GridImportError(f"bus row {row}: duplicate bus number {int(number)}")
        ids[number] = str(int(number))
    return ids


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise GridImportError(f"{where} is not a finite number")
    return float(value)


def snapshot_dict_from_ppc(
    ppc: Mapping[str, Any],
    intensities: Mapping[str, float] | None = None,
    *,
    default_intensity: float | None = None,
) -> dict[str, Any]:
    """The C1 snapshot document of a solved MATPOWER/PYPOWER case (``PF``/``PT`` filled)."""
    bus, gen, branch = _table(ppc, "bus"), _table(ppc, "gen"), _table(ppc, "branch")
    if branch.shape[1] <= PT and len(branch):
        raise GridImportError(NO_RESULTS)
    ids = _bus_ids(bus)
    live = {number for number, kind in zip(bus[:, BUS_I], bus[:, BUS_TYPE], strict=True) if kind != ISOLATED}
    known = {f"G{k}" for k in range(1, len(gen) + 1)}
    known |= {f"{prefix}{bus_id}" for bus_id in ids.values() for prefix in ("L", "SH")}
    table = IntensityTable(intensities, default_intensity, known)

    def end(number: float, where: str) -> str | None:
        if number not in ids:
            raise GridImportError(f"{where}: bus {number:g} is not in the bus table")
        return ids[number] if number in live else None

    buses, loads = [], []
    for row in bus:
        if row[BUS_I] not in live:
            continue
        bus_id = ids[row[BUS_I]]
        buses.append({"id": bus_id})
        demand = _finite(row[PD], f"bus {bus_id}: Pd")
        if demand != 0:
            loads.append({"id": f"L{bus_id}", "bus": bus_id, "p_mw": demand, **table.optional(f"L{bus_id}")})
        conductance = _finite(row[GS], f"bus {bus_id}: Gs")
        if conductance != 0:
            vm = _finite(row[VM], f"bus {bus_id}: Vm")
            shunt_id = f"SH{bus_id}"
            loads.append(
                {"id": shunt_id, "bus": bus_id, "p_mw": conductance * vm**2, **table.optional(shunt_id)}
            )

    generators = []
    for k, row in enumerate(gen, start=1):
        gen_id = f"G{k}"
        bus_id = end(row[GEN_BUS], f"gen row {k}")
        if row[GEN_STATUS] > 0 and bus_id is not None:
            p_mw = _finite(row[PG], f"generator {gen_id}: Pg")
            generators.append(
                {"id": gen_id, "bus": bus_id, "p_mw": p_mw, "intensity_g_per_kwh": table.generator(gen_id)}
            )

    branches = []
    for k, row in enumerate(branch, start=1):
        from_bus, to_bus = end(row[F_BUS], f"branch row {k}"), end(row[T_BUS], f"branch row {k}")
        if row[BR_STATUS] <= 0 or from_bus is None or to_bus is None:
            continue
        if from_bus == to_bus:
            raise GridImportError(f"branch row {k}: connects bus {from_bus} to itself")
        if not (math.isfinite(row[PF]) and math.isfinite(row[PT])):
            raise GridImportError(NO_RESULTS)
        values = (str(k), from_bus, to_bus, float(row[PF]), float(row[PT]))
        branches.append(dict(zip(("id", "from_bus", "to_bus", "p_from_mw", "p_to_mw"), values, strict=True)))
    return {"buses": buses, "generators": generators, "loads": loads, "branches": branches}


def snapshot_from_ppc(
    ppc: Mapping[str, Any],
    intensities: Mapping[str, float] | None = None,
    *,
    default_intensity: float | None = None,
) -> Snapshot:
    """The engine snapshot of a solved case, validated like any C1 document."""
    return snapshot_from_dict(snapshot_dict_from_ppc(ppc, intensities, default_intensity=default_intensity))


def _pad(array: np.ndarray, columns: int) -> np.ndarray:
    padded = np.zeros((array.shape[0], max(columns, array.shape[1])))
    padded[:, : array.shape[1]] = array
    return padded


def solve_ppc(ppc: Mapping[str, Any], mode: str = "dc") -> dict[str, Any]:
    """Run a DC or AC power flow with pandapower and return the case with MATPOWER's result columns.

    The returned case keeps the input's rows (so ids stay MATPOWER's): bus ``VM``/``VA``, gen ``PG``/``QG``
    and branch ``PF``/``QF``/``PT``/``QT`` (branch padded to 17 columns; out-of-service rows carry zeros,
    as MATPOWER writes them).  AC uses Newton-Raphson with the pi transformer model and no Q limits,
    MATPOWER's defaults.  A bus left without supply (no slack in its island) is marked isolated when
    nothing is attached to it, and is an error otherwise.
    """
    if mode not in ("dc", "ac"):
        raise GridImportError(f'unknown power-flow mode "{mode}" (use dc or ac)')
    import pandapower as pp
    from pandapower.converter.pypower import from_ppc

    bus, gen, branch = _table(ppc, "bus"), _pad(_table(ppc, "gen"), 21), _table(ppc, "branch")
    ids = _bus_ids(bus)
    for name, table, columns in (("gen", gen, [GEN_BUS]), ("branch", branch, [F_BUS, T_BUS])):
        unknown = [
            (k, number) for k, row in enumerate(table, 1) for number in row[columns] if number not in ids
        ]
        if unknown:
            raise GridImportError(
                f"{name} row {unknown[0][0]}: bus {unknown[0][1]:g} is not in the bus table"
            )
    model_bus = bus[:, :13].copy()
    # pandapower needs physical voltage levels; a MATPOWER case is per-unit, so any positive base
    # voltage describes the same network (case14 ships baseKV = 0).
    model_bus[model_bus[:, BASE_KV] <= 0, BASE_KV] = 100.0
    model = {
        "baseMVA": float(ppc["baseMVA"]),
        "bus": model_bus,
        "gen": gen[:, :21],
        "branch": _pad(branch[:, :13], 13),
    }
    if branch.shape[1] < 13:  # version-1 cases have no angle limits
        model["branch"][:, 11:13] = (-360.0, 360.0)
    # pandapower logs a warning per converted transformer; a user importing a case needs none of them.
    logger, level = logging.getLogger("pandapower"), logging.getLogger("pandapower").level
    logger.setLevel(logging.ERROR)
    try:
        net = from_ppc(model, f_hz=50, validate_conversion=False, check_costs=False)
        branch_lookup = net._from_ppc_lookups["branch"]
        gen_lookup = net._from_ppc_lookups["gen"]
        for kind in ("line", "trafo", "impedance"):
            rows = (branch_lookup.element_type == kind).to_numpy()
            elements = branch_lookup.element[rows].astype(int).to_numpy()
            net[kind].loc[elements, "in_service"] = branch[rows, BR_STATUS] > 0
        try:
            if mode == "dc":
                pp.rundcpp(net, calculate_voltage_angles=True)
            else:
                pp.runpp(net, calculate_voltage_angles=True, trafo_model="pi", numba=False)
        except pp.LoadflowNotConverged:
            raise GridImportError(f"{mode.upper()} power flow did not converge") from None
    finally:
        logger.setLevel(level)

    solved_bus = bus.copy()
    vm = net.res_bus.vm_pu.reindex(bus[:, BUS_I].astype(np.int64)).to_numpy(dtype=float)
    va = net.res_bus.va_degree.reindex(bus[:, BUS_I].astype(np.int64)).to_numpy(dtype=float)
    for row in np.flatnonzero(~np.isfinite(vm) & (bus[:, BUS_TYPE] != ISOLATED)):
        number = bus[row, BUS_I]
        attached = bus[row, PD] != 0 or bus[row, GS] != 0
        attached |= bool(np.any((gen[:, GEN_BUS] == number) & (gen[:, GEN_STATUS] > 0) & (gen[:, PG] != 0)))
        if attached:
            raise GridImportError(f"bus {ids[number]} has load or generation but no slack bus in its island")
        solved_bus[row, BUS_TYPE] = ISOLATED
    live = np.isfinite(vm)
    solved_bus[live, VM] = 1.0 if mode == "dc" else vm[live]
    solved_bus[live, VA] = va[live]

    solved_gen = gen.copy()
    for k, (kind, element) in enumerate(zip(gen_lookup.element_type, gen_lookup.element, strict=True)):
        if kind and gen[k, GEN_STATUS] > 0:
            result = net[f"res_{kind}"]
            solved_gen[k, PG] = result.p_mw.at[int(element)]
            solved_gen[k, QG] = 0.0 if mode == "dc" else result.q_mvar.at[int(element)]

    solved_branch = _pad(branch, QT + 1)
    solved_branch[:, PF : QT + 1] = 0.0
    for k, (kind, element) in enumerate(zip(branch_lookup.element_type, branch_lookup.element, strict=True)):
        if branch[k, BR_STATUS] <= 0:
            continue
        result = net[f"res_{kind}"].loc[int(element)]
        if kind == "trafo":
            ends = ("hv", "lv") if net.trafo.hv_bus.at[int(element)] == branch[k, F_BUS] else ("lv", "hv")
            values = [result[f"{q}_{e}_{u}"] for e in ends for q, u in (("p", "mw"), ("q", "mvar"))]
        else:
            values = [result["p_from_mw"], result["q_from_mvar"], result["p_to_mw"], result["q_to_mvar"]]
        solved_branch[k, PF : QT + 1] = np.nan_to_num(np.array(values, dtype=float))
        if mode == "dc":
            solved_branch[k, [QF, QT]] = 0.0
    solved = {"baseMVA": float(ppc["baseMVA"]), "bus": solved_bus, "gen": solved_gen, "branch": solved_branch}
    for optional in ("version", "gencost"):
        if optional in ppc:
            solved[optional] = ppc[optional]
    return solved

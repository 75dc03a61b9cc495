"""Bring your own grid: a MATPOWER case or a pandapower network file, with carbonflow's metadata defaulted.

Defaults (only where the file does not carry the column already):

* ids: MATPOWER bus numbers as bus ids, generators ``"G{k}"`` and branches ``"{k}"`` by row, loads
  ``"L{bus}"`` and shunts ``"SH{bus}"`` (the ids of ``carbonflow import matpower``); pandapower files keep
  their ``name`` columns when those are unique, else ``"{table}:{index}"``;
* bus ``kind``: ``plant`` if an in-service generator sits on it, else ``user`` if a load does, else
  ``substation``;
* bus ``region``: ``{province}/C1/Z{zone}`` from the bus zone (MATPOWER ``ZONE``, pandapower
  ``bus.zone``), ``{province}/C1/Z1`` without one; ``province`` defaults to ``"XX"``;
* load ``industry``: ``mixed_urban`` (its daily profile); generator ``intensity_g_per_kwh``: the default
  intensity (820 g/kWh, a coal-heavy fleet average, unless ``--default-intensity`` says otherwise);
* dispatch: ``proportional`` — every unit keeps its share of the case's generation, scaled with demand.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandapower as pp

from carbonflow.sim.errors import GridImportError
from carbonflow.sim.matpower import BASE_KV, BR_STATUS, load_matpower_case

ZONE = 10  # MATPOWER bus column


def _from_matpower(path: Path) -> pp.pandapowerNet:
    from pandapower.converter.pypower import from_ppc

    from carbonflow.sim.matpower import _pad, _table

    case = load_matpower_case(path)
    bus, gen, branch = _table(case, "bus"), _pad(_table(case, "gen"), 21), _table(case, "branch")
    model_bus = bus[:, :13].copy()
    model_bus[model_bus[:, BASE_KV] <= 0, BASE_KV] = 100.0
    model = {
        "baseMVA": float(case["baseMVA"]),
        "bus": model_bus,
        "gen": gen[:, :21],
        "branch": _pad(branch[:, :13], 13),
    }
    if branch.shape[1] < 13:
        model["branch"][:, 11:13] = (-360.0, 360.0)
    logger = logging.getLogger("pandapower")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        net = from_ppc(model, f_hz=50, validate_conversion=False, check_costs=False)
    except Exception as error:  # pandapower raises many types for a case it cannot convert
        raise GridImportError(f"{path}: cannot convert the case ({type(error).__name__}: {error})") from None
    finally:
        logger.setLevel(level)
    numbers = [str(int(number)) for number in bus[:, 0]]
    net.bus["name"] = numbers
    net.bus["zone"] = [int(z) if bus.shape[1] > ZONE and z > 0 else 1 for z in bus[:, ZONE]]
    lookup = net._from_ppc_lookups
    for k, (table, element) in enumerate(zip(lookup["gen"].element_type, lookup["gen"].element, strict=True)):
        if table:
            net[table].loc[int(element), "name"] = f"G{k + 1}"
    branch_lookup = lookup["branch"]
    for k, (table, element) in enumerate(zip(branch_lookup.element_type, branch_lookup.element, strict=True)):
        net[table].loc[int(element), "name"] = str(k + 1)
        net[table].loc[int(element), "in_service"] = bool(branch[k, BR_STATUS] > 0)
    bus_name = net.bus.name
    net.load["name"] = [f"L{bus_name[b]}" for b in net.load.bus]
    if len(net.shunt):
        net.shunt["name"] = [f"SH{bus_name[b]}" for b in net.shunt.bus]
    return net


def load_grid(
    path: str | Path, *, province: str = "XX", default_intensity: float = 820.0
) -> pp.pandapowerNet:
    """A MATPOWER ``.m`` case, a pandapower ``.json`` network or a CGMES set (a directory or ``.zip`` of
    CIM/XML profiles), with the defaults of the module doc."""
    path = Path(path)
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        from carbonflow.sim.cgmes_import import load_cgmes

        net = load_cgmes(path, default_intensity=default_intensity).net
        return with_defaults(net, province=province, default_intensity=default_intensity)
    if not path.is_file():
        raise GridImportError(f"{path}: no such file")
    if path.suffix.lower() == ".m":
        net = _from_matpower(path)
    elif path.suffix.lower() == ".json":
        try:
            net = pp.from_json(str(path))
        except Exception as error:  # pandapower raises many types for a file that is not a network
            raise GridImportError(f"{path}: not a pandapower network file ({type(error).__name__})") from None
    else:
        raise GridImportError(
            f"{path}: unknown grid format (use a MATPOWER .m case, a pandapower .json file or a CGMES "
            "directory or .zip)"
        )
    if len(net.bus) == 0:
        raise GridImportError(f"{path}: the network has no buses")
    return with_defaults(net, province=province, default_intensity=default_intensity)


def _zone_code(zone: object) -> str:
    """``3`` for 3 or 3.0, the text for other zone names, ``1`` when there is none."""
    if zone is None or str(zone).strip() in ("", "nan", "None"):
        return "1"
    try:
        number = float(zone)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(zone).strip()
    return str(int(number)) if number.is_integer() else str(zone)


def with_defaults(net: pp.pandapowerNet, *, province: str = "XX", default_intensity: float = 820.0):
    """Fill carbonflow's metadata columns that ``net`` lacks (see the module docstring)."""
    bus = net.bus
    if "kind" not in bus or bus["kind"].isna().any():
        kind = np.full(len(bus), "substation", dtype=object)
        loads = net.load[net.load.in_service].bus if len(net.load) else []
        kind[bus.index.get_indexer(list(loads))] = "user"
        for table in ("gen", "sgen", "ext_grid"):
            if len(net[table]):
                kind[bus.index.get_indexer(list(net[table][net[table].in_service].bus))] = "plant"
        if "kind" in bus:
            kind = np.where(bus["kind"].isna(), kind, bus["kind"])
        bus["kind"] = kind
    if "region" not in bus or bus["region"].isna().any():
        zones = bus["zone"] if "zone" in bus else [None] * len(bus)
        region = [f"{province}/C1/Z{_zone_code(z)}" for z in zones]
        bus["region"] = bus["region"].where(bus["region"].notna(), region) if "region" in bus else region
    if len(net.load) and ("industry" not in net.load or net.load["industry"].isna().any()):
        net.load["industry"] = net.load.get("industry", None)
        net.load["industry"] = net.load["industry"].where(net.load["industry"].notna(), "mixed_urban")
    for table in ("gen", "sgen", "ext_grid"):
        frame = net[table]
        if len(frame) and ("intensity_g_per_kwh" not in frame or frame["intensity_g_per_kwh"].isna().any()):
            current = frame.get("intensity_g_per_kwh", np.nan)
            frame["intensity_g_per_kwh"] = np.where(
                np.isfinite(np.asarray(current, dtype=float)), current, float(default_intensity)
            )
            frame["intensity_source"] = frame.get("intensity_source", "default intensity of an imported grid")
    return net

"""The 104-node reference grid: 10 plants, 80 substations, 14 users, built with pandapower.

A *node* is one pandapower bus (one busbar at one voltage level); the grid has exactly 104 buses and no
auxiliary ones.  A plant node is the plant's high-voltage switchyard: its units are attached there
directly (unit step-up transformers are not modelled).  A substation node is one busbar of a substation
at one voltage level: a 500/220 kV station appears as a 500 kV node and a 220 kV node joined by a
transformer, each counted as one substation node (the way dispatch models list busbars).  A user node is
the user's own busbar (10, 35 or 110 kV) behind its supply line or transformer.

Everything the rest of carbonflow needs besides the electrical model lives in the net's own tables, so it
survives ``pandapower.to_json``:

* ``net.bus``: ``name`` (the bus id, e.g. ``"P03"``, ``"S041"``, ``"U07"``), ``kind``
  (plant | substation | user), ``region`` (``province/city/county``), ``name_en``, ``name_zh``,
  ``industry`` (users), ``x_km``/``y_km`` (layout for pictures);
* ``net.gen``/``net.sgen``: ``name`` (unit id ``"G3-1"``; rooftop PV ``"U04-PV"``), ``plant`` (bus id),
  ``fuel``, ``technology``, ``intensity_g_per_kwh``, ``intensity_source``, ``p_min_mw``, ``p_max_mw``,
  ``ramp_mw_per_min``, ``merit`` (dispatch order, lower first), ``profile`` (thermal|hydro|wind|solar);
* ``net.load``: ``name`` (``"U07"`` for users, ``"S041-LD"`` for the area load a substation feeds),
  ``industry`` (the profile used), ``pf``; ``p_mw`` is the peak demand;
* ``net.storage``: ``name``, ``max_e_mwh``, ``p_max_mw``, ``eta``;
* ``net["cf_region"]``: region path, Chinese and English names; ``net["cf_plant"]``: one row per plant.

Plants (units, intensities and their source notes), users and regions are data in
``carbonflow/sim/data/reference_grid.json``; the topology (substation positions, lines, transformers,
area loads) is derived from them by code with a fixed layout seed, so the grid is the same on every
machine.  ``carbonflow sim grid --export FILE`` writes the whole grid as data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from importlib import resources
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd


def _load_data() -> dict[str, Any]:
    """Plants, users and regions of the reference grid (``carbonflow/sim/data/reference_grid.json``)."""
    text = resources.files("carbonflow.sim").joinpath("data", "reference_grid.json").read_text("utf-8")
    return json.loads(text)


_DATA = _load_data()
PROVINCE = tuple(_DATA["province"])
CITIES = {code: tuple(names) for code, names in _DATA["cities"].items()}
# county code -> (city, name_zh, name_en, x range km, y range km)
COUNTIES = {
    code: (c["city"], c["name_zh"], c["name_en"], tuple(c["x_km"]), tuple(c["y_km"]))
    for code, c in _DATA["counties"].items()
}
_COAL, _GAS, _ZERO = (_DATA["intensity_notes"][k] for k in ("coal", "gas", "zero"))
# Plants: id, names, kV, layout position, technology, fuel, units (id, MW, g/kWh, consumption basis),
# p_min share, ramp %/min, merit order and profile.
PLANTS: list[dict[str, Any]] = [
    dict(
        p,
        xy=tuple(p["xy"]),
        units=[(u["id"], u["p_max_mw"], u["intensity_g_per_kwh"], u["basis"]) for u in p["units"]],
    )
    for p in _DATA["plants"]
]
# Users: id, names, industry, kV, peak MW, power factor, rooftop PV (MWp), battery (MW, MWh).
USERS: list[dict[str, Any]] = [
    dict(u, battery=(u["battery"]["p_max_mw"], u["battery"]["e_max_mwh"])) if "battery" in u else dict(u)
    for u in _DATA["users"]
]

# Line parameters per voltage level (pandapower std type where one fits; else typical Chinese conductors).
_LINE = {
    500: dict(r_ohm_per_km=0.018, x_ohm_per_km=0.27, c_nf_per_km=13.5, max_i_ka=3.0, note="4xLGJ-400/35"),
    220: "490-AL1/64-ST1A 220.0",
    110: "243-AL1/39-ST1A 110.0",
    35: dict(r_ohm_per_km=0.132, x_ohm_per_km=0.37, c_nf_per_km=9.5, max_i_ka=0.61, note="LGJ-240/30"),
    10: dict(
        r_ohm_per_km=0.125, x_ohm_per_km=0.10, c_nf_per_km=400.0, max_i_ka=0.45, note="YJV22 3x300 cable"
    ),
}
# Transformers by (hv, lv): std type or parameters; all without phase shift.
_TRAFO = {
    (500, 220): dict(sn_mva=1000, vk_percent=14.0, vkr_percent=0.22, pfe_kw=260, i0_percent=0.08),
    (220, 110): dict(sn_mva=180, vk_percent=14.0, vkr_percent=0.28, pfe_kw=110, i0_percent=0.08),
    (110, 35): dict(sn_mva=63, vk_percent=10.5, vkr_percent=0.38, pfe_kw=45, i0_percent=0.10),
    (110, 10): dict(sn_mva=40, vk_percent=10.5, vkr_percent=0.40, pfe_kw=32, i0_percent=0.12),
    (35, 10): dict(sn_mva=20, vk_percent=8.0, vkr_percent=0.55, pfe_kw=18, i0_percent=0.20),
}
N_SUBSTATIONS = {500: 8, 220: 20, 110: 28, 35: 24}
_LAYOUT_SEED = 104


def county_at(x_km: float, y_km: float) -> str:
    """Region path of a point of the layout."""
    for code, (city, _zh, _en, (x0, x1), (y0, y1)) in COUNTIES.items():
        if x0 <= x_km < x1 + (x1 == 200) and y0 <= y_km < y1 + (y1 == 150):
            return f"{PROVINCE[0]}/{city}/{code}"
    raise ValueError(f"point ({x_km}, {y_km}) is outside the layout")


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(math.hypot(a[0] - b[0], a[1] - b[1]), 2.0)


class _Builder:
    def __init__(self) -> None:
        self.net = pp.create_empty_network(
            name="carbonflow reference grid (104 nodes)", f_hz=50.0, sn_mva=100.0
        )
        self.xy: dict[str, tuple[float, float]] = {}
        self.bus: dict[str, int] = {}
        self.kv: dict[str, float] = {}
        self.rows: list[dict[str, Any]] = []
        self.n_line = 0
        self.n_trafo = 0

    def add_bus(
        self, bus_id: str, kv: float, kind: str, xy: tuple[float, float], zh: str, en: str, industry: str = ""
    ) -> str:
        index = pp.create_bus(self.net, vn_kv=kv, name=bus_id)
        self.bus[bus_id], self.kv[bus_id], self.xy[bus_id] = index, kv, xy
        region = county_at(*xy)
        self.rows.append(
            dict(
                kind=kind,
                region=region,
                name_en=en,
                name_zh=zh,
                industry=industry,
                x_km=float(xy[0]),
                y_km=float(xy[1]),
            )
        )
        return bus_id

    def line(self, a: str, b: str, circuits: int = 1) -> None:
        kv = int(self.kv[a])
        if kv != int(self.kv[b]):
            raise ValueError(f"line {a}-{b} joins {self.kv[a]} kV and {self.kv[b]} kV")
        self.n_line += 1
        length = round(_distance(self.xy[a], self.xy[b]) * 1.15, 1)  # routes are longer than straight lines
        name = f"L{self.n_line:03d}"
        spec = _LINE[kv if kv in _LINE else 10]
        if isinstance(spec, str):
            pp.create_line(self.net, self.bus[a], self.bus[b], length, spec, name=name, parallel=circuits)
        else:
            params = {k: v for k, v in spec.items() if k != "note"}
            pp.create_line_from_parameters(
                self.net,
                self.bus[a],
                self.bus[b],
                length,
                name=name,
                parallel=circuits,
                type="ol" if kv > 10 else "cs",
                **params,
            )

    def trafo(self, hv: str, lv: str, units: int = 1, tap_pos: int = 0) -> None:
        key = (int(self.kv[hv]), int(self.kv[lv]))
        self.n_trafo += 1
        name = f"T{self.n_trafo:03d}"
        spec = _TRAFO[key]
        if isinstance(spec, str):
            pp.create_transformer(
                self.net, self.bus[hv], self.bus[lv], spec, name=name, parallel=units, tap_pos=tap_pos
            )
        else:
            pp.create_transformer_from_parameters(
                self.net,
                self.bus[hv],
                self.bus[lv],
                vn_hv_kv=key[0],
                vn_lv_kv=key[1],
                shift_degree=0.0,
                name=name,
                parallel=units,
                tap_side="hv",
                tap_neutral=0,
                tap_min=-8,
                tap_max=8,
                tap_step_percent=1.25,
                tap_pos=tap_pos,
                **spec,
            )

    def nearest(self, point: str, candidates: list[str], k: int = 1) -> list[str]:
        ordered = sorted(candidates, key=lambda c: _distance(self.xy[point], self.xy[c]))
        return ordered[:k]


def _scatter(rng: np.random.Generator, n: int, margin: float = 6.0) -> list[tuple[float, float]]:
    """``n`` points spread over the layout, at least one per county for every 8."""
    points = []
    codes = list(COUNTIES)
    for k in range(n):
        _city, _zh, _en, (x0, x1), (y0, y1) = COUNTIES[codes[k % len(codes)]]
        points.append(
            (
                round(float(rng.uniform(x0 + margin, x1 - margin)), 1),
                round(float(rng.uniform(y0 + margin, y1 - margin)), 1),
            )
        )
    return points


def _near(
    rng: np.random.Generator, xy: tuple[float, float], low_km: float, high_km: float
) -> tuple[float, float]:
    """A point ``low_km``..``high_km`` away from ``xy`` in a random direction, inside the layout."""
    angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(low_km, high_km)
    x = min(max(xy[0] + radius * math.cos(angle), 3.0), 197.0)
    y = min(max(xy[1] + radius * math.sin(angle), 3.0), 147.0)
    return round(float(x), 1), round(float(y), 1)


def _mesh(b: _Builder, nodes: list[str], extra: int, circuits: int = 1) -> None:
    """A spanning tree of shortest links (Prim) plus the ``extra`` shortest links not yet used."""
    inside, edges = [nodes[0]], set()
    while len(inside) < len(nodes):
        best = min(
            ((a, c) for a in inside for c in nodes if c not in inside),
            key=lambda e: _distance(b.xy[e[0]], b.xy[e[1]]),
        )
        inside.append(best[1])
        edges.add(tuple(sorted(best)))
    pairs = sorted(
        ((a, c) for i, a in enumerate(nodes) for c in nodes[i + 1 :]),
        key=lambda e: _distance(b.xy[e[0]], b.xy[e[1]]),
    )
    for pair in pairs:
        if extra <= 0:
            break
        if pair not in edges:
            edges.add(pair)
            extra -= 1
    for a, c in sorted(edges):
        b.line(a, c, circuits)


def reference_grid() -> pp.pandapowerNet:
    """Build the reference grid (same result on every call); it solves with ``pp.runpp`` as built."""
    rng = np.random.default_rng(_LAYOUT_SEED)
    b = _Builder()
    n = 0

    def substation(kv: int, xy: tuple[float, float], role: str) -> str:
        nonlocal n
        n += 1
        bus_id = f"S{n:03d}"
        county = COUNTIES[county_at(*xy).split("/")[2]]
        return b.add_bus(
            bus_id,
            kv,
            "substation",
            xy,
            f"{county[1][:-1]}{n:03d}号{kv}kV变电站",
            f"{county[2]} {kv} kV substation {n:03d} ({role})",
        )

    # 500 kV: a ring of eight stations with two chords (meshed transmission backbone).
    ring = [
        (100 + 75 * math.cos(a), 75 + 58 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 9)[:-1] + 0.2
    ]
    s500 = [substation(500, (round(x, 1), round(y, 1)), "500 kV hub") for x, y in ring]
    for k in range(8):
        b.line(s500[k], s500[(k + 1) % 8], circuits=2)
    b.line(s500[0], s500[4])
    b.line(s500[2], s500[6])
    # 220 kV: eight busbars under the 500 kV hubs, twelve more spread out; meshed.
    s220 = [substation(220, (x + 1.5, y + 1.5), "500/220 kV hub") for x, y in ring]
    for hv, lv in zip(s500, s220, strict=True):
        b.trafo(hv, lv, units=2)
    s220 += [substation(220, xy, "220 kV") for xy in _scatter(rng, 12)]
    _mesh(b, s220, extra=10, circuits=2)
    # 110 kV: sixteen busbars under 220 kV stations, twelve radial ones with a few ties.
    s110 = [substation(110, (b.xy[s][0] + 1.5, b.xy[s][1] - 1.5), "220/110 kV") for s in s220[:16]]
    for hv, lv in zip(s220[:16], s110, strict=True):
        b.trafo(hv, lv, units=2)
    radial110 = [substation(110, _near(rng, b.xy[s110[k]], 12, 25), "110 kV") for k in range(12)]
    for k, s in enumerate(radial110):
        b.line(s, s110[k], circuits=2)
        if k % 3 == 0:  # a few ties make the 110 kV level weakly meshed
            b.line(s, b.nearest(s, [t for t in s110 if t != s110[k]], 1)[0])
    s110 += radial110
    # 35 kV: twelve busbars under 110 kV stations, twelve radial ones.
    s35 = [substation(35, (b.xy[s][0] - 1.5, b.xy[s][1] + 1.5), "110/35 kV") for s in s110[4:16]]
    for hv, lv in zip(s110[4:16], s35, strict=True):
        b.trafo(hv, lv, units=2, tap_pos=-2)  # +2.5 % on the 35 kV side for the radial feeders
    radial35 = [substation(35, _near(rng, b.xy[s35[k]], 6, 12), "35 kV") for k in range(12)]
    for k, s in enumerate(radial35):
        b.line(s, s35[k], circuits=2)
    s35 += radial35
    assert n == sum(N_SUBSTATIONS.values())

    _plants(b, s500, s220, s110)
    _users(b, rng, s110, s35)
    _area_loads(b, rng, s110, s35)
    _finish(b)
    return b.net


def _plants(b: _Builder, s500: list[str], s220: list[str], s110: list[str]) -> None:
    by_kv = {500: s500, 220: s220, 110: s110}
    plant_rows = []
    for plant in PLANTS:
        pid = b.add_bus(plant["id"], plant["kv"], "plant", plant["xy"], plant["zh"], plant["en"])
        capacity = sum(unit[1] for unit in plant["units"])
        # outlets: two lines to the two nearest stations of the plant's level, sized to the capacity
        per_circuit = {500: 2000, 220: 330, 110: 110}[plant["kv"]]
        circuits = max(1, math.ceil(capacity / per_circuit / 2 * 1.3))
        for station in b.nearest(pid, by_kv[plant["kv"]], 2):
            b.line(pid, station, circuits)
        for unit_id, mw, intensity, basis in plant["units"]:
            note = _ZERO
            if plant["fuel"] == "coal":
                note = f"{_COAL}: {basis}"
            elif plant["fuel"] == "gas":
                note = f"{_GAS}: {basis}"
            meta = dict(
                name=unit_id,
                plant=pid,
                fuel=plant["fuel"],
                technology=plant["tech"],
                intensity_g_per_kwh=intensity,
                intensity_source=note,
                p_min_mw=plant["pmin"] * mw,
                p_max_mw=float(mw),
                ramp_mw_per_min=plant["ramp"] / 100 * mw,
                merit=plant["merit"],
                profile=plant["profile"],
            )
            if plant["profile"] in ("wind", "solar"):
                index = pp.create_sgen(
                    b.net,
                    b.bus[pid],
                    p_mw=0.5 * mw,
                    q_mvar=0.0,
                    name=unit_id,
                    sn_mva=mw / 0.95,
                    type="WP" if plant["profile"] == "wind" else "PV",
                )
                table = "sgen"
            else:
                slack = unit_id == "G1-1"
                index = pp.create_gen(
                    b.net,
                    b.bus[pid],
                    p_mw=0.6 * mw,
                    vm_pu=1.03 if plant["kv"] == 500 else 1.04,
                    name=unit_id,
                    slack=slack,
                    sn_mva=mw / 0.9,
                    max_p_mw=float(mw),
                    min_p_mw=0.0,
                )
                table = "gen"
            for column, value in meta.items():
                b.net[table].loc[index, column] = value
        plant_rows.append(
            dict(
                id=pid,
                name_zh=plant["zh"],
                name_en=plant["en"],
                technology=plant["tech"],
                fuel=plant["fuel"],
                capacity_mw=float(capacity),
                units=len(plant["units"]),
                region=county_at(*plant["xy"]),
            )
        )
    b.net["cf_plant"] = pd.DataFrame(plant_rows)


def _users(b: _Builder, rng: np.random.Generator, s110: list[str], s35: list[str]) -> None:
    """Each user next to its own supply station; stations taken in turn so no station feeds two."""
    at110, at35, at110_for_10kv = iter(s110[1:16:2]), iter(s35[:12]), iter(s110[2:16:2])
    for user in USERS:
        kv = user["kv"]
        if kv == 110:
            parent = next(at110)
        elif kv == 35 or user["mw"] <= 15:
            parent = next(at35)
        else:
            parent = next(at110_for_10kv)
        near = {110: (4, 10), 35: (2, 6), 10: (0.5, 2)}[kv]
        uid = b.add_bus(
            user["id"], kv, "user", _near(rng, b.xy[parent], *near), user["zh"], user["en"], user["industry"]
        )
        if kv == 110:
            b.line(uid, parent, circuits=2 if user["mw"] > 90 else 1)
        elif kv == 35:
            b.line(uid, parent, circuits=2 if user["mw"] > 30 else 1)
        else:
            b.trafo(parent, uid, tap_pos=-2)  # the user's own 110/10 or 35/10 kV station
        index = pp.create_load(b.net, b.bus[uid], p_mw=float(user["mw"]), q_mvar=0.0, name=uid)
        b.net.load.loc[index, ["industry", "pf"]] = [user["industry"], user["pf"]]
        if "pv_mwp" in user:
            pv = pp.create_sgen(
                b.net, b.bus[uid], p_mw=0.0, name=f"{uid}-PV", type="PV", sn_mva=user["pv_mwp"]
            )
            meta = dict(
                plant=uid,
                fuel="solar",
                technology="rooftop PV",
                intensity_g_per_kwh=0.0,
                intensity_source=_ZERO,
                p_min_mw=0.0,
                p_max_mw=user["pv_mwp"],
                ramp_mw_per_min=100.0,
                merit=0,
                profile="solar",
            )
            for column, value in meta.items():
                b.net.sgen.loc[pv, column] = value
        if "battery" in user:
            p_max, e_max = user["battery"]
            index = pp.create_storage(
                b.net, b.bus[uid], p_mw=0.0, max_e_mwh=e_max, name=f"{uid}-BESS", sn_mva=p_max
            )
            b.net.storage.loc[index, ["p_max_mw", "eta"]] = [p_max, 0.95]


def _area_loads(b: _Builder, rng: np.random.Generator, s110: list[str], s35: list[str]) -> None:
    """What each 110 and 35 kV station feeds on its 10 kV feeders, as one load per station."""
    mixes = ["mixed_urban", "mixed_rural", "mixed_industrial"]
    for k, s in enumerate(s110 + s35):
        peak = float(rng.uniform(38, 68)) if b.kv[s] == 110 else float(rng.uniform(7, 15))
        index = pp.create_load(b.net, b.bus[s], p_mw=round(peak, 1), q_mvar=0.0, name=f"{s}-LD")
        b.net.load.loc[index, ["industry", "pf"]] = [mixes[k % 3], 0.95]


def _finish(b: _Builder) -> None:
    net = b.net
    meta = pd.DataFrame(b.rows, index=net.bus.index)
    for column in meta:
        net.bus[column] = meta[column]
    for table in ("gen", "sgen"):
        for column in ("merit",):
            net[table][column] = net[table][column].astype(int)
    net.load["q_mvar"] = net.load.p_mw * np.tan(np.arccos(net.load.pf.astype(float)))
    regions = [dict(path=PROVINCE[0], name_zh=PROVINCE[1], name_en=PROVINCE[2], level="province")]
    regions += [
        dict(path=f"{PROVINCE[0]}/{c}", name_zh=zh, name_en=en, level="city")
        for c, (zh, en) in CITIES.items()
    ]
    regions += [
        dict(path=f"{PROVINCE[0]}/{city}/{code}", name_zh=zh, name_en=en, level="county")
        for code, (city, zh, en, _x, _y) in COUNTIES.items()
    ]
    net["cf_region"] = pd.DataFrame(regions)


def grid_summary(net: pp.pandapowerNet) -> dict[str, Any]:
    """Counts by kind, voltage level and region, and the installed capacity by fuel."""
    bus = net.bus
    kinds = Counter(bus["kind"]) if "kind" in bus else Counter()
    levels = Counter(f"{kv:g} kV" for kv in bus.vn_kv)
    regions = Counter(bus["region"]) if "region" in bus else Counter()
    fuel: Counter[str] = Counter()
    for table in ("gen", "sgen", "ext_grid"):
        frame = net[table]
        if "fuel" in frame and "p_max_mw" in frame:
            for f, mw in zip(frame.fuel, frame.p_max_mw, strict=True):
                fuel[str(f)] += float(mw)
    return {
        "name": net.name,
        "nodes": len(bus),
        "by_kind": dict(sorted(kinds.items())),
        "by_voltage_kv": dict(sorted(levels.items(), key=lambda kv: -float(kv[0].split()[0]))),
        "by_region": dict(sorted(regions.items())),
        "lines": len(net.line),
        "transformers": len(net.trafo),
        "generators": int(len(net.gen) + len(net.sgen) + len(net.ext_grid)),
        "loads": len(net.load),
        "storage": len(net.storage),
        "capacity_mw_by_fuel": {k: round(v, 1) for k, v in sorted(fuel.items())},
        "peak_load_mw": round(float(net.load.p_mw.sum()), 1),
    }

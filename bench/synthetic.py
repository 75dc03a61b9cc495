"""A synthetic multi-voltage grid and a year of hourly flows for benchmarks (and, later, tests).

``synthetic_grid(n_bus, seed)`` builds a pandapower network that solves an AC power flow:

* a meshed 220 kV backbone (~10 % of the buses; minimum spanning tree of random substation sites
  plus the shortest Delaunay edges, double-circuit ``679-AL1/86-ST1A 220.0``) carrying the large
  units — coal, gas, hydro, nuclear ``gen`` s, an ``ext_grid`` (slack, treated as an import) and
  large wind farms (``sgen``);
* 220/110 kV substations (``100 MVA 220/110 kV``) feeding radial 110 kV networks
  (``243-AL1/39-ST1A 110.0``), weakly meshed by tie lines between neighbouring substations, with
  loads, capacitor banks (``shunt``) and wind farms;
* 110/35 kV transformers feeding radial 35 kV feeders (``149-AL1/24-ST1A 110.0`` conductor) with
  loads and rooftop/field PV (``sgen``), a few feeders closed into loops.

Element tables get two extra columns: ``fuel`` (gen, sgen, ext_grid) and ``profile`` (load:
residential / commercial / industrial), and ``max_p_mw`` for every generating element.

``hourly_year(net, seed)`` produces 8,760 hourly operating points — loads with daily, weekly and
seasonal shapes plus noise, wind as a correlated random process, PV following the sun and clouds,
conventional units committed in merit order with planned outages — and the branch flows of every
hour from a **lossless DC power flow** (one sparse LU of the reduced B matrix, solved for all hours
at once).  Running 8,760 AC power flows would take minutes; the carbon engine only needs consistent
flows (KCL holds at every bus), and DC flows are that.  Directions change over the year (PV
back-feeding at noon, wind, unit commitment), which is what exercises pattern grouping.

Everything is deterministic for a given ``seed``.  No network access, no data files.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.signal import lfilter
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import Delaunay, cKDTree

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandapower as pp

HOURS_PER_YEAR = 8760

# Fuel → (emission intensity range g/kWh, merit-order cost range).
FUELS = {
    "nuclear": ((0.0, 0.0), (5.0, 10.0)),
    "hydro": ((0.0, 0.0), (8.0, 15.0)),
    "coal": ((820.0, 1000.0), (20.0, 40.0)),
    "import": ((500.0, 650.0), (18.0, 30.0)),
    "gas": ((350.0, 500.0), (50.0, 90.0)),
    "wind": ((0.0, 0.0), (0.0, 0.0)),
    "pv": ((0.0, 0.0), (0.0, 0.0)),
}
CONVENTIONAL = ("nuclear", "hydro", "coal", "import", "gas")

LINE_220 = "679-AL1/86-ST1A 220.0"
LINE_110 = "243-AL1/39-ST1A 110.0"
LINE_35 = "149-AL1/24-ST1A 110.0"  # LGJ-150-class conductor, used here at 35 kV
TRAFO_220_110 = "100 MVA 220/110 kV"
POWER_FACTOR_TAN = math.tan(math.acos(0.95))


def _tree_by_growth(rng: np.random.Generator, points: np.ndarray, root: int) -> list[tuple[int, int]]:
    """Radial tree over ``points``: each point (nearest to the root first) joins the nearest point
    already in the tree, sometimes the second nearest — branchy feeders, not stars."""
    order = np.argsort(np.linalg.norm(points - points[root], axis=1), kind="stable")
    order = np.r_[root, order[order != root]]
    edges = []
    for k in range(1, len(order)):
        placed = order[:k]
        distance = np.linalg.norm(points[placed] - points[order[k]], axis=1)
        nearest = np.argsort(distance)[: 2 if k > 2 and rng.random() < 0.3 else 1]
        edges.append((int(placed[nearest[-1]]), int(order[k])))
    return edges


def _length_km(a: np.ndarray, b: np.ndarray, minimum: float) -> float:
    return max(minimum, 1.15 * float(np.linalg.norm(a - b)))


class _Builder:
    """Collects elements and creates them with pandapower's vectorised ``create_*`` functions."""

    def __init__(self) -> None:
        self.bus_vn: list[float] = []
        self.bus_name: list[str] = []
        self.bus_xy: list[tuple[float, float]] = []
        self.lines: dict[str, list] = {
            "from": [],
            "to": [],
            "length": [],
            "type": [],
            "name": [],
            "parallel": [],
        }

    def bus(self, vn_kv: float, name: str, xy: np.ndarray) -> int:
        self.bus_vn.append(vn_kv)
        self.bus_name.append(name)
        self.bus_xy.append((float(xy[0]), float(xy[1])))
        return len(self.bus_vn) - 1

    def line(self, a: int, b: int, length_km: float, std_type: str, name: str, parallel: int = 1) -> None:
        for key, value in zip(self.lines, (a, b, length_km, std_type, name, parallel)):
            self.lines[key].append(value)

    def point(self, bus: int) -> np.ndarray:
        return np.asarray(self.bus_xy[bus])

    def create(self, net: pp.pandapowerNet) -> None:
        pp.create_buses(
            net,
            len(self.bus_vn),
            self.bus_vn,
            index=np.arange(len(self.bus_vn)),
            name=self.bus_name,
            geodata=self.bus_xy,
        )
        lines = self.lines
        for std_type in dict.fromkeys(lines["type"]):  # one call per std type, in first-use order
            pick = [k for k, t in enumerate(lines["type"]) if t == std_type]
            pp.create_lines(
                net,
                [lines["from"][k] for k in pick],
                [lines["to"][k] for k in pick],
                [lines["length"][k] for k in pick],
                std_type,
                name=[lines["name"][k] for k in pick],
                parallel=[lines["parallel"][k] for k in pick],
            )


def synthetic_grid(n_bus: int = 2000, seed: int = 0) -> pp.pandapowerNet:
    """A three-level (220/110/35 kV) grid of ``n_bus`` buses whose AC power flow converges
    (``pp.runpp``; checked by the benchmark)."""
    if n_bus < 60:
        raise ValueError("synthetic_grid needs at least 60 buses")
    rng = np.random.default_rng(seed)
    net = pp.create_empty_network(name=f"synthetic-{n_bus}-seed{seed}", sn_mva=100.0)
    grid = _Builder()
    n_220 = max(8, round(0.10 * n_bus))
    n_110 = max(4, round(0.40 * n_bus))
    n_35 = n_bus - n_220 - n_110
    n_110_substations = max(2, round(0.3 * n_220))
    n_35_substations = max(2, round(n_35 / 9))  # each: 35 kV busbar + ~8 feeder buses
    side_km = 30.0 * math.sqrt(n_220)  # ~30 km between neighbouring 220 kV substations

    # ---- 220 kV meshed backbone -----------------------------------------------------------------
    sites = rng.uniform(0.0, side_km, size=(n_220, 2))
    hv = [grid.bus(220.0, f"T{i}", sites[i]) for i in range(n_220)]
    distance = np.linalg.norm(sites[:, None, :] - sites[None, :, :], axis=2)
    tree = minimum_spanning_tree(sp.csr_array(np.triu(distance))).tocoo()
    backbone = {(int(min(a, b)), int(max(a, b))) for a, b in zip(tree.row, tree.col)}
    candidates = {
        (int(min(a, b)), int(max(a, b)))
        for s in Delaunay(sites).simplices
        for a, b in ((s[0], s[1]), (s[1], s[2]), (s[0], s[2]))
    }
    extra = sorted(candidates - backbone, key=lambda e: distance[e])
    backbone |= set(extra[: round(0.6 * n_220)])
    for a, b in sorted(backbone):
        grid.line(hv[a], hv[b], _length_km(sites[a], sites[b], 8.0), LINE_220, f"T{a}-T{b}", parallel=2)

    # ---- 220/110 kV substations with radial, weakly meshed 110 kV networks ----------------------
    substation_sites = rng.choice(n_220, size=n_110_substations, replace=False)
    per_substation = np.full(n_110_substations, n_110 // n_110_substations)
    per_substation[: n_110 % n_110_substations] += 1
    mv_buses: list[int] = []
    mv_area: list[int] = []
    substations: list[tuple[int, int, int]] = []  # (220 kV bus, 110 kV busbar, parallel trafos)
    for s, (site, count) in enumerate(zip(substation_sites, per_substation)):
        points = sites[site] + rng.normal(0.0, 10.0, size=(count, 2))
        points[0] = sites[site]
        buses = [grid.bus(110.0, f"S{s}.{k}", points[k]) for k in range(count)]
        substations.append((hv[site], buses[0], 2 if count < 12 else 3))
        for a, b in _tree_by_growth(rng, points, 0):
            grid.line(buses[a], buses[b], _length_km(points[a], points[b], 2.0), LINE_110, f"S{s}.{a}-{b}")
        mv_buses += buses
        mv_area += [s] * count
    mv_points = np.asarray([grid.point(b) for b in mv_buses])
    mv_area_arr = np.asarray(mv_area)
    # tie lines between neighbouring substation areas (weak meshing in parallel with 220 kV)
    index = cKDTree(mv_points)
    ties: set[tuple[int, int]] = set()
    for i in rng.permutation(len(mv_buses)):
        if len(ties) >= max(1, n_110_substations // 2):
            break
        for dist, j in zip(*index.query(mv_points[i], k=8)):
            pair = (int(min(mv_area_arr[i], mv_area_arr[j])), int(max(mv_area_arr[i], mv_area_arr[j])))
            if pair[0] != pair[1] and dist < 30.0:
                if pair not in ties:
                    ties.add(pair)
                    grid.line(
                        mv_buses[i],
                        mv_buses[j],
                        _length_km(mv_points[i], mv_points[j], 3.0),
                        LINE_110,
                        f"tie S{pair[0]}-S{pair[1]}",
                    )
                break

    # ---- 110/35 kV transformers and 35 kV feeders -------------------------------------------------
    feeder_roots = rng.choice(len(mv_buses), size=min(n_35_substations, len(mv_buses)), replace=False)
    per_feeder = np.full(len(feeder_roots), n_35 // len(feeder_roots))
    per_feeder[: n_35 % len(feeder_roots)] += 1
    lv_buses: list[int] = []
    feeders: list[tuple[int, int]] = []  # (110 kV bus, 35 kV busbar)
    for f, (root, count) in enumerate(zip(feeder_roots, per_feeder)):
        points = mv_points[root] + rng.normal(0.0, 4.0, size=(count, 2))
        points[0] = mv_points[root]
        buses = [grid.bus(35.0, f"D{f}.{k}", points[k]) for k in range(count)]
        feeders.append((mv_buses[root], buses[0]))
        edges = _tree_by_growth(rng, points, 0)
        for a, b in edges:
            grid.line(buses[a], buses[b], _length_km(points[a], points[b], 1.0), LINE_35, f"D{f}.{a}-{b}")
        if count > 4 and rng.random() < 0.15:  # close a loop between two feeder buses
            a, b = (int(x) for x in rng.choice(np.arange(1, count), size=2, replace=False))
            if not any({a, b} == {u, v} for u, v in edges):
                grid.line(buses[a], buses[b], _length_km(points[a], points[b], 1.0), LINE_35, f"D{f}.loop")
        lv_buses += buses[1:]
    grid.create(net)

    for hv_bus, mv_bus, parallel in substations:
        pp.create_transformer(
            net, hv_bus, mv_bus, TRAFO_220_110, name=f"TR {hv_bus}-{mv_bus}", parallel=parallel
        )
    pp.create_transformers_from_parameters(
        net,
        [a for a, _ in feeders],
        [b for _, b in feeders],
        sn_mva=50.0,
        vn_hv_kv=110.0,
        vn_lv_kv=35.0,
        vkr_percent=0.35,
        vk_percent=10.5,
        pfe_kw=30.0,
        i0_percent=0.05,
        name=[f"TD {a}-{b}" for a, b in feeders],
    )
    pp.create_shunts(
        net,
        [mv for _, mv, _ in substations],
        q_mvar=[-6.0 * k for _, _, k in substations],
        p_mw=[0.02 * k for _, _, k in substations],
        name=[f"C{mv}" for _, mv, _ in substations],
    )

    # ---- loads --------------------------------------------------------------------------------
    classes = np.array(["residential", "commercial", "industrial"])
    lv_load = rng.uniform(0.4, 1.8, size=len(lv_buses))
    # every 110 kV bus without a 35 kV feeder has a load (no dead-end busbars); a third of the others too
    has_feeder = {a for a, _ in feeders}
    mv_with_load = [b for b in mv_buses if b not in has_feeder or rng.random() < 0.3]
    mv_load = rng.uniform(2.0, 10.0, size=len(mv_with_load))
    hv_with_load = [int(b) for b in rng.choice(hv, size=max(1, n_220 // 12), replace=False)]
    hv_load = rng.uniform(60.0, 160.0, size=len(hv_with_load))
    load_p = np.r_[lv_load, mv_load, hv_load]
    pp.create_loads(
        net, lv_buses + mv_with_load + hv_with_load, p_mw=load_p, q_mvar=load_p * POWER_FACTOR_TAN
    )
    net.load["profile"] = np.r_[
        rng.choice(classes, size=len(lv_buses), p=[0.55, 0.3, 0.15]),
        rng.choice(classes, size=len(mv_with_load), p=[0.3, 0.4, 0.3]),
        np.full(len(hv_with_load), "industrial"),
    ]
    # a 220 kV dead end with nothing at its bus would only carry line-charging losses: give it a load
    degree = np.bincount(np.asarray(sorted(backbone)).ravel(), minlength=n_220)
    equipped = set(hv_with_load) | {hv_bus for hv_bus, _, _ in substations}
    dead_ends = [hv[i] for i in range(n_220) if degree[i] == 1 and hv[i] not in equipped]
    if dead_ends:
        extra_p = rng.uniform(20.0, 60.0, size=len(dead_ends))
        pp.create_loads(net, dead_ends, p_mw=extra_p, q_mvar=extra_p * POWER_FACTOR_TAN)
        net.load.loc[net.load.index[-len(dead_ends) :], "profile"] = "industrial"
        load_p = np.r_[load_p, extra_p]
    total_load = float(load_p.sum())

    # ---- generation -----------------------------------------------------------------------------
    pv_buses = [int(b) for b in rng.choice(lv_buses, size=round(0.15 * len(lv_buses)), replace=False)]
    wind_mv = [int(b) for b in rng.choice(mv_buses, size=max(1, round(0.04 * len(mv_buses))), replace=False)]
    plant_sites = rng.choice(n_220, size=max(4, round(0.25 * n_220)), replace=False)
    wind_hv = [hv[s] for s in plant_sites[: max(1, len(plant_sites) // 8)]]
    unit_sites = plant_sites[len(wind_hv) :]
    sgen_capacity = np.r_[
        rng.uniform(1.0, 6.0, size=len(pv_buses)),
        rng.uniform(20.0, 60.0, size=len(wind_mv)),
        rng.uniform(150.0, 400.0, size=len(wind_hv)),
    ]
    fuel = ["pv"] * len(pv_buses) + ["wind"] * (len(wind_mv) + len(wind_hv))
    pp.create_sgens(
        net,
        pv_buses + wind_mv + wind_hv,
        p_mw=0.0,
        max_p_mw=sgen_capacity,
        name=[f"{f}-{k}" for k, f in enumerate(fuel)],
    )
    net.sgen["fuel"] = fuel
    # conventional capacity: 1.15 × the peak load of the year's profiles (see hourly_year), plus
    # cover for a quarter of the renewables
    peak = max(float(shape.max()) for shape in load_profiles(HOURS_PER_YEAR).values())
    conventional_capacity = 1.15 * peak * 1.1 * total_load + 0.25 * float(sgen_capacity.sum())
    unit_fuel = ["import"] + [
        str(f)
        for f in rng.choice(["coal", "coal", "gas", "gas", "hydro", "nuclear"], size=len(unit_sites) - 1)
    ]
    shares = rng.uniform(0.5, 1.5, size=len(unit_sites))
    shares[0] = 0.5  # the import (slack) is a modest interconnector
    capacity = conventional_capacity * shares / shares.sum()
    cost = np.asarray([rng.uniform(*FUELS[f][1]) for f in unit_fuel])
    pp.create_ext_grid(net, hv[unit_sites[0]], vm_pu=1.02, name="import")
    net.ext_grid["fuel"], net.ext_grid["max_p_mw"], net.ext_grid["cost"] = "import", capacity[0], cost[0]
    pp.create_gens(
        net,
        [hv[s] for s in unit_sites[1:]],
        p_mw=0.0,
        vm_pu=1.02,
        max_p_mw=capacity[1:],
        name=[f"{f}-{k}" for k, f in enumerate(unit_fuel[1:], start=1)],
    )
    net.gen["fuel"], net.gen["cost"] = unit_fuel[1:], cost[1:]

    # ---- a plausible base operating point for the AC snapshot ------------------------------------
    wind = (net.sgen.fuel == "wind").to_numpy()
    net.sgen["p_mw"] = np.where(wind, 0.45, 0.7) * net.sgen.max_p_mw.to_numpy(float)
    # every unit runs at the same share of its capacity (no long merit-order transfers); the slack
    # (import) takes the AC losses
    residual = total_load + float(net.shunt.p_mw.sum()) - float(net.sgen.p_mw.sum())
    net.gen["p_mw"] = capacity[1:] * residual / capacity.sum()
    return net


@dataclass(frozen=True)
class _Units:
    capacity_mw: np.ndarray  # (U,) ext_grid first, then gens in table order
    cost: np.ndarray


def _units(net: pp.pandapowerNet) -> _Units:
    capacity = np.r_[net.ext_grid.max_p_mw.to_numpy(float), net.gen.max_p_mw.to_numpy(float)]
    cost = np.r_[net.ext_grid.cost.to_numpy(float), net.gen.cost.to_numpy(float)]
    return _Units(capacity, cost)


def merit_dispatch(units: _Units, residual_mw: np.ndarray, available: np.ndarray) -> np.ndarray:
    """(T, U) outputs: commit available units in merit order until their capacity covers 110 % of
    the residual demand, then share the residual in proportion to committed capacity."""
    order = np.argsort(units.cost, kind="stable")
    capacity = units.capacity_mw[order] * available[:, order]
    before = np.cumsum(capacity, axis=1) - capacity
    committed = (before < 1.1 * residual_mw[:, None]) & (capacity > 0)
    committed_capacity = np.where(committed, capacity, 0.0)
    share = committed_capacity / committed_capacity.sum(axis=1, keepdims=True)
    out = np.empty_like(capacity)
    out[:, order] = share * residual_mw[:, None]
    return out


@dataclass(frozen=True)
class HourlyYear:
    """Hourly values; columns follow the row order of the pandapower tables.  Lossless flows:
    ``p_to = -p_from`` for every branch (``line_p_to_mw`` is therefore not stored)."""

    load_p_mw: np.ndarray  # (T, len(net.load))
    shunt_p_mw: np.ndarray  # (T, len(net.shunt))
    sgen_p_mw: np.ndarray  # (T, len(net.sgen))
    gen_p_mw: np.ndarray  # (T, len(net.gen))
    ext_grid_p_mw: np.ndarray  # (T, len(net.ext_grid)), balances the DC flow exactly
    line_p_from_mw: np.ndarray  # (T, len(net.line))
    trafo_p_hv_mw: np.ndarray  # (T, len(net.trafo))

    @property
    def n_time(self) -> int:
        return self.load_p_mw.shape[0]


def _ar1(rng: np.random.Generator, n_time: int, n_series: int, rho: float) -> np.ndarray:
    """(T, n) stationary AR(1) processes with unit variance."""
    noise = rng.standard_normal((n_time, n_series)) * math.sqrt(1.0 - rho * rho)
    noise[0] /= math.sqrt(1.0 - rho * rho)
    return lfilter([1.0], [1.0, -rho], noise, axis=0)


def load_profiles(n_time: int) -> dict[str, np.ndarray]:
    """Per-unit hourly shapes (mean ≈ 1) of the three load classes, starting on a Monday 1 January."""
    t = np.arange(n_time)
    hour, day = t % 24, t // 24
    weekend = (day % 7) >= 5
    season = (
        1.0 + 0.12 * np.cos(2 * np.pi * (day - 15) / 365.0) + 0.06 * np.cos(4 * np.pi * (day - 200) / 365.0)
    )
    bump = lambda centre, width: np.exp(-0.5 * ((hour - centre) / width) ** 2)  # noqa: E731
    residential = 0.55 + 0.35 * bump(8, 1.5) + 0.75 * bump(19.5, 2.5)
    commercial = 0.35 + 0.9 * np.clip(np.sin(np.pi * (hour - 7) / 12), 0, None)
    industrial = 0.85 + 0.2 * np.clip(np.sin(np.pi * (hour - 5) / 16), 0, None)
    shapes = {
        "residential": residential * np.where(weekend, 1.06, 1.0),
        "commercial": commercial * np.where(weekend, 0.6, 1.0),
        "industrial": industrial * np.where(weekend, 0.75, 1.0),
    }
    return {name: season * shape / shape.mean() for name, shape in shapes.items()}


def pv_availability(rng: np.random.Generator, n_time: int, n_plants: int) -> np.ndarray:
    """(T, n) PV output per unit of capacity: the sun's daily arc (longer in summer), daily cloudiness
    shared by all plants, and a little local variation."""
    t = np.arange(n_time)
    hour, day = t % 24, t // 24
    day_length = 12.0 - 3.0 * np.cos(2 * np.pi * (day + 10) / 365.0)
    sun = np.clip(np.sin(np.pi * (hour + 0.5 - (12.0 - day_length / 2)) / day_length), 0.0, None)
    clear = rng.beta(2.5, 1.2, size=n_time // 24 + 1)[day]
    local = np.clip(1.0 + 0.1 * _ar1(rng, n_time, n_plants, 0.8), 0.0, 1.2)
    return np.clip(0.85 * (sun * clear)[:, None] * local, 0.0, 1.0)


def wind_availability(rng: np.random.Generator, n_time: int, n_farms: int) -> np.ndarray:
    """(T, n) wind output per unit of capacity: a common weather process plus a local one, through a
    logistic power curve."""
    common = _ar1(rng, n_time, 1, 0.97)
    local = _ar1(rng, n_time, n_farms, 0.9)
    seasonal = 0.3 * np.cos(2 * np.pi * np.arange(n_time) / n_time)[:, None]
    return 1.0 / (1.0 + np.exp(-(1.4 * common + 0.8 * local + seasonal - 0.6) * 1.8))


def _planned_outages(rng: np.random.Generator, n_time: int, n_units: int) -> np.ndarray:
    """(T, U) availability: each unit but the import is out once a year for 2-5 weeks (not in winter)."""
    available = np.ones((n_time, n_units), dtype=bool)
    for unit in range(1, n_units):
        length = int(rng.integers(14, 36)) * 24
        start = int(rng.integers(60 * 24, max(60 * 24 + 1, min(n_time, 300 * 24) - length)))
        available[start : start + length, unit] = False
    return available


def dc_branch_susceptance(net: pp.pandapowerNet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(from position, to position, susceptance in per unit on ``net.sn_mva``) for lines then
    transformers (nominal ratios: the DC model ignores taps and shunts)."""
    position = {bus: i for i, bus in enumerate(net.bus.index)}
    line = net.line
    z_base = net.bus.vn_kv.loc[line.from_bus].to_numpy(float) ** 2 / net.sn_mva
    x_line = (
        line.x_ohm_per_km.to_numpy(float) * line.length_km.to_numpy(float) / line.parallel.to_numpy(float)
    )
    trafo = net.trafo
    vk, vkr = trafo.vk_percent.to_numpy(float), trafo.vkr_percent.to_numpy(float)
    x_trafo = (
        np.sqrt(vk**2 - vkr**2)
        / 100.0
        * net.sn_mva
        / trafo.sn_mva.to_numpy(float)
        / trafo.parallel.to_numpy(float)
    )
    frm = np.r_[line.from_bus.map(position).to_numpy(int), trafo.hv_bus.map(position).to_numpy(int)]
    to = np.r_[line.to_bus.map(position).to_numpy(int), trafo.lv_bus.map(position).to_numpy(int)]
    susceptance = 1.0 / np.r_[x_line / z_base, x_trafo]
    in_service = np.r_[line.in_service.to_numpy(bool), trafo.in_service.to_numpy(bool)]
    return frm, to, np.where(in_service, susceptance, 0.0)


def dc_flows(net: pp.pandapowerNet, injection_mw: np.ndarray) -> np.ndarray:
    """Branch flows (T, lines + trafos) in MW at the from/hv end for bus injections (T, N) in MW that
    sum to zero in every row.  One sparse LU of the reduced B matrix; the slack is the ext_grid bus."""
    frm, to, b = dc_branch_susceptance(net)
    n_bus = len(net.bus)
    incidence = sp.csr_array(
        (
            np.r_[np.ones(len(b)), -np.ones(len(b))],
            (np.r_[np.arange(len(b)), np.arange(len(b))], np.r_[frm, to]),
        ),
        shape=(len(b), n_bus),
    )
    b_bus = (incidence.T @ sp.diags_array(b) @ incidence).tocsc()
    slack = net.bus.index.get_loc(int(net.ext_grid.bus.iloc[0]))
    keep = np.flatnonzero(np.arange(n_bus) != slack)
    factor = sla.splu(b_bus[keep][:, keep].tocsc())
    theta = np.zeros((n_bus, injection_mw.shape[0]))
    theta[keep] = factor.solve(np.ascontiguousarray(injection_mw[:, keep].T) / net.sn_mva)
    return ((sp.diags_array(b) @ incidence) @ theta).T * net.sn_mva


def _incidence(net: pp.pandapowerNet, table: str) -> sp.csr_array:
    """(N, len(table)) element → bus position matrix."""
    position = net.bus.index.get_indexer(net[table].bus.to_numpy())
    count = len(net[table])
    return sp.csr_array((np.ones(count), (position, np.arange(count))), shape=(len(net.bus), count))


def hourly_year(net: pp.pandapowerNet, seed: int = 0, n_hours: int = HOURS_PER_YEAR) -> HourlyYear:
    """Hourly loads, generation and lossless DC branch flows for ``n_hours`` hours of ``net``
    (a :func:`synthetic_grid` network; its ``profile``, ``fuel``, ``max_p_mw`` and ``cost`` columns
    drive the shapes)."""
    rng = np.random.default_rng(seed)
    shapes = load_profiles(n_hours)
    load_base = net.load.p_mw.to_numpy(float)
    load_shape = np.stack([shapes[p] for p in net.load.profile], axis=1)  # (T, L)
    regional = 1.0 + 0.03 * _ar1(rng, n_hours, 1, 0.9)
    local = 1.0 + 0.05 * _ar1(rng, n_hours, len(load_base), 0.7)
    load = load_base * load_shape * regional * local
    shunt = np.broadcast_to(net.shunt.p_mw.to_numpy(float), (n_hours, len(net.shunt))).copy()

    is_pv = (net.sgen.fuel == "pv").to_numpy()
    sgen_capacity = net.sgen.max_p_mw.to_numpy(float)
    sgen = np.empty((n_hours, len(net.sgen)))
    sgen[:, is_pv] = pv_availability(rng, n_hours, int(is_pv.sum())) * sgen_capacity[is_pv]
    sgen[:, ~is_pv] = wind_availability(rng, n_hours, int((~is_pv).sum())) * sgen_capacity[~is_pv]
    demand = load.sum(axis=1) + shunt.sum(axis=1)
    # conventional units keep at least 25 % of the demand (inertia); curtail renewables beyond that
    curtail = np.minimum(1.0, 0.75 * demand / np.maximum(sgen.sum(axis=1), 1e-9))
    sgen *= curtail[:, None]

    units = _units(net)
    available = _planned_outages(rng, n_hours, len(units.capacity_mw))
    dispatch = merit_dispatch(units, demand - sgen.sum(axis=1), available)
    gen = dispatch[:, 1:]

    injection = (
        (_incidence(net, "sgen") @ sgen.T)
        + (_incidence(net, "gen") @ gen.T)
        - (_incidence(net, "load") @ load.T)
        - (_incidence(net, "shunt") @ shunt.T)
    ).T  # (T, N) without the slack's output
    ext_grid = -injection.sum(axis=1, keepdims=True)
    injection[:, net.bus.index.get_loc(int(net.ext_grid.bus.iloc[0]))] += ext_grid[:, 0]
    flows = dc_flows(net, injection)
    n_line = len(net.line)
    return HourlyYear(
        load_p_mw=load,
        shunt_p_mw=shunt,
        sgen_p_mw=sgen,
        gen_p_mw=gen,
        ext_grid_p_mw=ext_grid,
        line_p_from_mw=flows[:, :n_line],
        trafo_p_hv_mw=flows[:, n_line:],
    )

"""Random connected networks with consistent power flows, for property tests of the CEF engine.

A network is built in *flow order*: buses are ranked (the rank is independent of the random ids), a
random spanning tree joins every bus to a lower-ranked one, extra edges (parallel branches included)
join random pairs, and every edge carries power from the lower to the higher rank.  Walking the buses
in rank order, each bus's available power (delivered inflow plus its generation) is split between its
load and its outgoing branches, so KCL holds at every bus by construction; some branches lose part of
what they send (``p_to = -(p_from - loss)``).  Leaves take everything as load, so every load is >= 0.

``with_cycle=True`` adds a circulating flow around one loop of the graph, large enough that every
branch of the loop ends up carrying power in the loop's direction: the flow graph then has a
directed cycle while KCL still holds (the circulation enters and leaves every loop bus once).

The module also holds an independent dense oracle (:func:`reference_solution`) that solves the nodal
carbon balance straight from a C1 document, with numpy's dense solver.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

# Ids: short, random, sometimes numeric-looking or non-ASCII; never empty.
ID_ALPHABET = "abcdefgXYZ0123456789-_.:/ 节点"
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=6)

power = st.floats(min_value=1.0, max_value=400.0, allow_nan=False, allow_infinity=False)
intensity = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=1200.0, allow_nan=False, allow_infinity=False),
)


@dataclass
class Network:
    """A C1 snapshot document plus what the generator knows about it."""

    doc: dict[str, Any]
    bus_ids: list[str]  # in flow (rank) order
    edges: list[tuple[int, int]]  # (sending rank, receiving rank) per branch, in ``doc`` order
    cycle: list[str] = field(default_factory=list)  # branch ids of the directed flow cycle, if any

    @property
    def source_intensities(self) -> list[float]:
        return [g["intensity_g_per_kwh"] for g in self.doc["generators"] if g["p_mw"] > 0]


def _split(draw, total: float, parts: int) -> list[float]:
    weights = [draw(st.floats(min_value=0.1, max_value=1.0)) for _ in range(parts)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


def _tree_path(parent: list[int], a: int, b: int) -> list[int]:
    """Ranks on the tree path from a to b (both included)."""
    up_a = [a]
    while up_a[-1] != 0:
        up_a.append(parent[up_a[-1]])
    up_b = [b]
    while up_b[-1] != 0:
        up_b.append(parent[up_b[-1]])
    on_a = set(up_a)
    meet = next(x for x in up_b if x in on_a)
    return up_a[: up_a.index(meet) + 1] + list(reversed(up_b[: up_b.index(meet)]))


@st.composite
def networks(
    draw,
    *,
    min_buses: int = 1,
    max_buses: int = 9,
    max_extra_edges: int = 5,
    lossy: bool = True,
    with_cycle: bool = False,
    id_prefix: str = "",
) -> Network:
    if with_cycle:
        min_buses = max(min_buses, 2)
    n = draw(st.integers(min_value=min_buses, max_value=max_buses))
    bus_ids = [id_prefix + x for x in draw(st.lists(ids, min_size=n, max_size=n, unique=True))]

    parent = [-1] + [draw(st.integers(min_value=0, max_value=i - 1)) for i in range(1, n)]
    edges = [(parent[i], i) for i in range(1, n)]
    tree_edges = len(edges)
    n_extra = draw(st.integers(min_value=1 if with_cycle else 0, max_value=max_extra_edges)) if n > 1 else 0
    for _ in range(n_extra):
        a = draw(st.integers(min_value=0, max_value=n - 2))
        b = draw(st.integers(min_value=a + 1, max_value=n - 1))
        edges.append((a, b))  # may duplicate a tree edge: parallel branches
    out_edges: list[list[int]] = [[] for _ in range(n)]
    for k, (a, _b) in enumerate(edges):
        out_edges[a].append(k)

    # Generation: the root always, others sometimes; several generators per bus.
    generators: list[dict[str, Any]] = []
    gen_ids = draw(st.lists(ids, min_size=3 * n, max_size=3 * n, unique=True))
    gen_at = [0.0] * n
    for i in range(n):
        if i == 0 or draw(st.booleans()):
            gen_at[i] = draw(power)
            for part in _split(draw, gen_at[i], draw(st.integers(min_value=1, max_value=3))):
                generators.append(
                    {
                        "id": id_prefix + gen_ids.pop(),
                        "bus": bus_ids[i],
                        "p_mw": part,
                        "intensity_g_per_kwh": draw(intensity),
                    }
                )

    # Flows in rank order: available = delivered inflow + generation = load + sum of sent power.
    inflow = [0.0] * n
    p_send = [0.0] * len(edges)
    p_recv = [0.0] * len(edges)
    load_at = [0.0] * n
    for i in range(n):
        available = inflow[i] + gen_at[i]
        if not out_edges[i]:
            load_at[i] = available
            continue
        share = draw(st.one_of(st.just(0.0), st.floats(min_value=0.05, max_value=0.8)))
        load_at[i] = available * share
        for k, sent in zip(out_edges[i], _split(draw, available - load_at[i], len(out_edges[i]))):
            lost = draw(st.floats(min_value=0.001, max_value=0.3)) if lossy and draw(st.booleans()) else 0.0
            loss = sent * lost
            p_send[k], p_recv[k] = sent, sent - loss
            inflow[edges[k][1]] += sent - loss

    loads: list[dict[str, Any]] = []
    load_ids = draw(st.lists(ids, min_size=3 * n, max_size=3 * n, unique=True))
    for i in range(n):
        if load_at[i] > 0:
            for part in _split(draw, load_at[i], draw(st.integers(min_value=1, max_value=3))):
                loads.append({"id": id_prefix + load_ids.pop(), "bus": bus_ids[i], "p_mw": part})

    # Injection into the branch at the sending (lower rank) and receiving end, MATPOWER sign.
    at_send = list(p_send)
    at_recv = [-p for p in p_recv]
    branch_ids = [
        id_prefix + x for x in draw(st.lists(ids, min_size=len(edges), max_size=len(edges), unique=True))
    ]
    cycle: list[str] = []
    if with_cycle and len(edges) > tree_edges:
        # The loop: one extra edge a->b plus the tree path b -> ... -> a.
        k_extra = draw(st.integers(min_value=tree_edges, max_value=len(edges) - 1))
        a, b = edges[k_extra]
        path = _tree_path(parent, b, a)
        loop: list[tuple[int, int, int]] = [(k_extra, a, b)]  # (edge, from rank, to rank) in loop order
        for u, v in zip(path, path[1:]):
            k = (v - 1) if parent[v] == u else (u - 1)  # tree edge k joins parent[i] and i, k = i - 1
            loop.append((k, u, v))
        if draw(st.booleans()):
            loop = [(k, v, u) for k, u, v in reversed(loop)]
        against = [p_send[k] for k, u, _v in loop if edges[k][0] != u]
        circulation = max(against, default=0.0) + draw(st.floats(min_value=1.0, max_value=50.0))
        for k, u, _v in loop:
            if edges[k][0] == u:  # loop runs with the original flow
                at_send[k] += circulation
                at_recv[k] -= circulation
            else:  # loop runs against it: the branch reverses
                at_recv[k] += circulation
                at_send[k] -= circulation
        cycle = [branch_ids[k] for k, _u, _v in loop]
        edges = list(edges)
        for k, u, v in loop:
            edges[k] = (u, v)

    branches: list[dict[str, Any]] = [{"id": branch_id} for branch_id in branch_ids]
    # ``at_send`` is the injection at the lower-rank end (the sender before any circulation).
    for k, record in enumerate(branches):
        low, high = sorted(edges[k])
        p_low, p_high = at_send[k], at_recv[k]
        if draw(st.booleans()):
            record.update(from_bus=bus_ids[low], to_bus=bus_ids[high], p_from_mw=p_low, p_to_mw=p_high)
        else:
            record.update(from_bus=bus_ids[high], to_bus=bus_ids[low], p_from_mw=p_high, p_to_mw=p_low)
        if p_low + p_high == 0.0 and draw(st.booleans()):
            del record["p_to_mw"]  # lossless: p_to may be omitted

    # Keep every flow and load well above the engine's 1e-6 MW noise floor (deep, wide graphs can
    # otherwise split power into vanishing slivers, which is a different test).
    assume(min(p_recv, default=1.0) > 1e-3 and min((x["p_mw"] for x in loads), default=1.0) > 1e-3)
    doc = {"generators": generators, "loads": loads, "branches": branches}
    if draw(st.booleans()):
        doc["buses"] = [{"id": bus_id} for bus_id in draw(st.permutations(bus_ids))]
    return Network(doc=doc, bus_ids=bus_ids, edges=edges, cycle=cycle)


# --------------------------------------------------------------------------------------------------
# Document transformations used by the invariance properties.


def shuffled(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for records in out.values():
        rng.shuffle(records)
    return out


def renamed(doc: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """Every id replaced by a fresh one; returns the document and ``(kind, old) -> new``."""
    out = copy.deepcopy(doc)
    mapping: dict[tuple[str, str], str] = {}
    used: set[str] = set()

    def fresh() -> str:
        while True:
            name = "".join(rng.choice("QRSTUVW987") for _ in range(rng.randint(1, 8)))
            if name not in used:
                used.add(name)
                return name

    def bus(old: str) -> str:
        return mapping.setdefault(("bus", old), fresh())

    for record in out.get("buses", []):
        record["id"] = bus(record["id"])
    for section, kind in (("generators", "gen"), ("loads", "load"), ("branches", "branch")):
        for record in out[section]:
            record["id"] = mapping.setdefault((kind, record["id"]), fresh())
            for key in ("bus", "from_bus", "to_bus"):
                if key in record:
                    record[key] = bus(record[key])
    return out, mapping


def scaled(doc: dict[str, Any], alpha: float) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for section in ("generators", "loads", "branches"):
        for record in out[section]:
            for key in ("p_mw", "p_from_mw", "p_to_mw"):
                if key in record:
                    record[key] *= alpha
    return out


def with_branch_split(doc: dict[str, Any], k: int) -> dict[str, Any]:
    """Branch ``k`` replaced by two parallel halves (ids ``<id>#a`` and ``<id>#b``)."""
    out = copy.deepcopy(doc)
    original = out["branches"][k]
    halves = []
    for suffix in ("#a", "#b"):
        half = dict(original, id=original["id"] + suffix)
        for key in ("p_from_mw", "p_to_mw"):
            if key in half:
                half[key] = original[key] / 2
        halves.append(half)
    out["branches"][k : k + 1] = halves
    return out


def with_generator_intensities(doc: dict[str, Any], values: list[float]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for record, value in zip(out["generators"], values):
        record["intensity_g_per_kwh"] = value
    return out


def merged(*docs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"generators": [], "loads": [], "branches": []}
    for doc in docs:
        for section in out:
            out[section].extend(copy.deepcopy(doc[section]))
    return out


# --------------------------------------------------------------------------------------------------
# Independent oracle: dense solve of the nodal carbon balance straight from the document.


@dataclass
class Reference:
    bus_ids: list[str]
    intensity: dict[str, float]  # NaN where the bus carries no power
    flux: dict[str, float]
    generation_carbon: float
    load_carbon: float
    loss_carbon: float


def reference_solution(doc: dict[str, Any], losses: str = "receiving") -> Reference:
    """Nodal intensities by ``numpy.linalg.solve`` of ``(diag(P_N) - W^T) e = P_G^T E_G``.

    ``W`` holds delivered power (``receiving``) or sent power (``consumer``); the flux is always built
    from delivered power (reference §4.1, §4.3).  Negative loads are sources (intensity given or 0),
    negative generators are sinks.
    """
    names: list[str] = [b["id"] for b in doc.get("buses", [])]
    for section, keys in (
        ("generators", ("bus",)),
        ("loads", ("bus",)),
        ("branches", ("from_bus", "to_bus")),
    ):
        for record in doc[section]:
            for key in keys:
                if record[key] not in names:
                    names.append(record[key])
    pos = {name: i for i, name in enumerate(names)}
    n = len(names)
    source_mw = np.zeros(n)
    source_carbon = np.zeros(n)
    sink_mw = np.zeros(n)
    for g in doc["generators"]:
        if g["p_mw"] > 0:
            source_mw[pos[g["bus"]]] += g["p_mw"]
            source_carbon[pos[g["bus"]]] += g["p_mw"] * g["intensity_g_per_kwh"]
        else:
            sink_mw[pos[g["bus"]]] -= g["p_mw"]
    for load in doc["loads"]:
        if load["p_mw"] < 0:
            source_mw[pos[load["bus"]]] -= load["p_mw"]
            source_carbon[pos[load["bus"]]] -= load["p_mw"] * (load.get("intensity_g_per_kwh") or 0.0)
        else:
            sink_mw[pos[load["bus"]]] += load["p_mw"]
    flux = source_mw.copy()
    carry = np.zeros((n, n))
    sends = []  # (sender, p_send, p_recv)
    for br in doc["branches"]:
        pf = br["p_from_mw"]
        pt = br.get("p_to_mw", -pf)
        if pf > 0:
            s, r, send, recv = pos[br["from_bus"]], pos[br["to_bus"]], pf, -pt
        elif pt > 0:
            s, r, send, recv = pos[br["to_bus"]], pos[br["from_bus"]], pt, -pf
        else:
            continue
        flux[r] += recv
        carry[s, r] += recv if losses == "receiving" else send
        sends.append((s, send, recv))
    live = np.flatnonzero(flux > 1e-9)
    matrix = np.diag(flux) - carry.T
    e = np.full(n, np.nan)
    if len(live):
        e[live] = np.linalg.solve(matrix[np.ix_(live, live)], source_carbon[live])
    ez = np.nan_to_num(e)
    loss = sum(ez[s] * (send - recv) for s, send, recv in sends) if losses == "receiving" else 0.0
    return Reference(
        bus_ids=names,
        intensity={name: float(e[i]) for i, name in enumerate(names)},
        flux={name: float(flux[i]) for i, name in enumerate(names)},
        generation_carbon=float(source_carbon.sum() / 1000),
        load_carbon=float((sink_mw * ez).sum() / 1000),
        loss_carbon=float(loss / 1000),
    )

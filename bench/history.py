"""Benchmark: one year of 15-minute interval results of a 104-node grid, then the monthly report query.

    .venv/bin/python bench/history.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/history.py --backends postgresql --days 365

The grid mirrors the reference grid's shape (10 plants with 20 units, 80 substations, 14 users; 94
loads = 80 area loads + 14 users; regions AH/HF/* and AH/WH/*; user industries).  Results are
generated with numpy (plausible daily load shapes, per-unit intensities), loaded in bulk (PostgreSQL
``COPY`` into the partitioned tables; SQLite ``executemany``) — loading speed is reported but is not
the target — then the queries a monthly report makes are timed through ``carbonflow.center.store``:
energy-weighted load intensity of one month by county and by industry, generation by unit, and the
whole year by month and city.  Target (issue 6): the monthly report < 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carbonflow.center.store import Store, aggregate, upsert_topology
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.schema import TIME_SERIES_TABLES
from carbonflow.center.store.types import SQLITE_TS_FORMAT

COUNTIES = ["AH/HF/FX", "AH/HF/CF", "AH/HF/FD", "AH/HF/LJ", "AH/WH/NL", "AH/WH/WW", "AH/WH/FC", "AH/WH/WZ"]
INDUSTRIES = ["steel", "chemicals", "cement", "data_center", "automotive", "textiles", "glass"]
YEAR = datetime(2025, 1, 1, tzinfo=UTC)
CHINA = timezone(timedelta(hours=8))  # reports are in local time (no DST)


def topology(rng: np.random.Generator) -> dict:
    buses, generators, loads = [], [], []
    for k in range(10):
        buses.append(
            {
                "id": f"P{k + 1:02d}",
                "kind": "plant",
                "voltage_kv": [500.0, 220.0][k % 2],
                "region": COUNTIES[k % 8],
            }
        )
        for u in range(2):
            generators.append(
                {
                    "id": f"G{k + 1}-{u + 1}",
                    "bus_id": f"P{k + 1:02d}",
                    "plant": f"P{k + 1:02d}",
                    "fuel": "coal" if k < 6 else ("gas" if k < 8 else "hydro"),
                }
            )
    for k in range(80):
        bus = {
            "id": f"S{k + 1:02d}",
            "kind": "substation",
            "voltage_kv": [500.0, 220.0, 110.0, 35.0][k % 4],
            "region": COUNTIES[k % 8],
        }
        buses.append(bus)
        loads.append({"id": f"A{k + 1:02d}", "bus_id": bus["id"], "industry": "public"})
    for k in range(14):
        industry = INDUSTRIES[k % len(INDUSTRIES)]
        buses.append(
            {
                "id": f"U{k + 1:02d}",
                "kind": "user",
                "voltage_kv": [110.0, 10.0][k % 2],
                "region": COUNTIES[(3 * k) % 8],
                "industry": industry,
            }
        )
        loads.append(
            {
                "id": f"L{k + 1:02d}",
                "bus_id": f"U{k + 1:02d}",
                "user_name": f"user {k + 1}",
                "industry": industry,
            }
        )
    return {"buses": buses, "generators": generators, "loads": loads}


def generate(topo: dict, n: int, rng: np.random.Generator):
    """Per table: (element ids, bus ids, p_mw[n, m], intensity[n, m]) for a 15-minute year."""
    hours = (np.arange(n) * 0.25 + 0.25) % 24
    shape = 0.75 + 0.25 * np.sin((hours - 8) / 24 * 2 * np.pi)[:, None]
    n_loads, n_gens, n_buses = len(topo["loads"]), len(topo["generators"]), len(topo["buses"])
    load_p = shape * rng.uniform(5, 80, n_loads) * (1 + 0.05 * rng.standard_normal((n, n_loads)))
    unit_e = np.array(
        [800.0 if g["fuel"] == "coal" else 370.0 if g["fuel"] == "gas" else 0.0 for g in topo["generators"]]
    )
    gen_p = load_p.sum(axis=1, keepdims=True) * rng.dirichlet(np.ones(n_gens), 1) * 1.02
    grid_e = (gen_p * unit_e).sum(axis=1, keepdims=True) / gen_p.sum(axis=1, keepdims=True)
    load_e = grid_e * rng.uniform(0.9, 1.1, n_loads)
    bus_p = shape * rng.uniform(50, 900, n_buses)
    bus_e = grid_e * rng.uniform(0.85, 1.15, n_buses)
    return {
        "load_results": (
            [x["id"] for x in topo["loads"]],
            [x["bus_id"] for x in topo["loads"]],
            load_p,
            load_e,
        ),
        "generator_results": (
            [g["id"] for g in topo["generators"]],
            [g["bus_id"] for g in topo["generators"]],
            gen_p,
            np.broadcast_to(unit_e, gen_p.shape),
        ),
        "bus_results": ([b["id"] for b in topo["buses"]], [b["id"] for b in topo["buses"]], bus_p, bus_e),
    }


def rows_of(table: str, ids, buses, p, e, ts_text: list[str], n_from: int, n_to: int):
    extra = {"load_results": 2, "generator_results": 2, "bus_results": 3}[table]
    for i in range(n_from, n_to):
        for j, element in enumerate(ids):
            p_mw, intensity = float(p[i, j]), float(e[i, j])
            energy = p_mw * 250.0
            carbon = energy * intensity / 1000.0
            base = (ts_text[i], "", 900, element, buses[j], intensity, energy, carbon)
            if extra == 2:
                yield (*base, p_mw, p_mw * intensity / 1000.0)
            else:
                yield (*base, p_mw, 0.0, 0.0)


_KEY = "ts, level, interval_s, element_id, bus_id, intensity_g_per_kwh, energy_kwh, carbon_kg"
COLUMNS = {
    "load_results": f"{_KEY}, p_mw, carbon_t_per_h",
    "generator_results": f"{_KEY}, p_mw, carbon_t_per_h",
    "bus_results": f"{_KEY}, flux_mw, load_mw, load_carbon_t_per_h",
}


def load(store: Store, data, n: int) -> int:
    stamps = [YEAR + timedelta(minutes=15 * (i + 1)) for i in range(n)]
    total = 0
    if store.dialect == "postgresql":
        with store.write() as connection:
            ensure_partitions(connection, TIME_SERIES_TABLES, months_between(stamps[0], stamps[-1]))
        ts_text = [s.isoformat() for s in stamps]
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for table, (ids, buses, p, e) in data.items():
                with cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                    for row in rows_of(table, ids, buses, p, e, ts_text, 0, n):
                        copy.write_row(row)
                        total += 1
            raw.commit()
            cursor.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
        return total
    ts_text = [s.strftime(SQLITE_TS_FORMAT) for s in stamps]
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        for table, (ids, buses, p, e) in data.items():
            marks = ", ".join("?" * len(COLUMNS[table].split(",")))
            rows = list(rows_of(table, ids, buses, p, e, ts_text, 0, n))
            cursor.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", rows)
            total += len(rows)
        cursor.execute("COMMIT")
        cursor.execute("ANALYZE")
    finally:
        raw.close()
    return total


def timed(label: str, call, repeats: int = 3):
    best, result = None, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    print(f"  {label:<58} {best:7.3f} s  ({len(result)} rows)", flush=True)
    return best, result


def run(kind: str, args) -> dict:
    rng = np.random.default_rng(args.seed)
    tmp = tempfile.TemporaryDirectory()
    name = f"cf_hist_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp.name}/history.db"
    else:
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    try:
        store = Store.open(url)
        topo = topology(rng)
        upsert_topology(store, topo)
        n = args.days * 96
        start = time.perf_counter()
        data = generate(topo, n, rng)
        rows = load(store, data, n)
        load_s = time.perf_counter() - start
        print(
            f"{kind}: generated and loaded {rows:,} result rows ({n:,} intervals) in {load_s:.1f} s",
            flush=True,
        )
        month = (datetime(2025, 6, 1, tzinfo=CHINA), datetime(2025, 7, 1, tzinfo=CHINA))  # a local month
        year = (YEAR, YEAR + timedelta(days=args.days))
        china = {"utc_offset_minutes": 480}
        times = {}
        times["month_by_county"], _ = timed(
            "June: load intensity by county (energy-weighted)",
            lambda: aggregate(store, "load", "month", *month, group_by="region", **china),
        )
        times["month_by_industry"], _ = timed(
            "June: load intensity by industry",
            lambda: aggregate(store, "load", "month", *month, group_by="industry", **china),
        )
        times["month_by_unit"], _ = timed(
            "June: generation by unit",
            lambda: aggregate(store, "generator", "month", *month, group_by="element", **china),
        )
        times["year_by_month_city"], _ = timed(
            "year: load intensity by month and city",
            lambda: aggregate(store, "load", "month", *year, group_by="region", region_depth=2, **china),
        )
        times["year_bus_daily"], _ = timed(
            "year: one bus, daily intensity",
            lambda: aggregate(store, "bus", "day", *year, element_ids=["S07"], **china),
        )
        report = times["month_by_county"] + times["month_by_industry"] + times["month_by_unit"]
        print(f"  monthly report (the three June queries): {report:.3f} s (target < 2 s)\n", flush=True)
        store.close()
        return {"backend": kind, "rows": rows, "load_s": load_s, "monthly_report_s": report, **times}
    finally:
        if kind == "postgresql":
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for kind in args.backends.split(","):
        run(kind, args)


if __name__ == "__main__":
    main()

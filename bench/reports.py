"""Monthly carbon report of the 104-node reference grid: build + XLSX + PDF time, on SQLite and PostgreSQL.

    .venv/bin/python bench/reports.py [--days 31] [--no-postgres] [--pg URL]

Fills a store with one simulated day of 15-minute intervals (engine results of the reference grid),
repeated over ``--days`` days (2,976 intervals for a 31-day month), then times, best of ``--rounds``:

* baseline: the bare query the consumption side rests on (``store.aggregate`` of the loads by element
  over the month) — the ratio report / baseline is what carries between machines;
* ``build_report`` (every query of the three sides, the profile and the data version);
* rendering the built report as XLSX and as PDF.

Target (issue 14): build + XLSX < 3 s and build + PDF < 3 s on both backends.  Results: docs/reports.md.
Also timed (issue 19, docs/interop.md): the month's enterprise export (every user; energy, Scope 2,
origin by fuel from the stored origin shares) and the year's quota totals, each with its XLSX.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbonflow.center.reports.build import build_report
from carbonflow.center.reports.enterprise import enterprise_export, flat_rows
from carbonflow.center.reports.quota import QUOTA_COLUMNS, quota_export
from carbonflow.center.reports.render import render
from carbonflow.center.reports.tabular import write_table
from carbonflow.center.store import Store, aggregate, interval_from_document, save_interval, upsert_topology
from carbonflow.center.topology import topology_rows
from carbonflow.engine.document import origin_document
from carbonflow.engine.origin import origin_shares
from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

START = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 2026-12-01 00:00 Asia/Shanghai
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def one_day():
    net = reference_grid()
    simulation = Simulation(net, SimConfig(start=START, interval_s=900, count=96))
    records = []
    for truth in simulation.intervals():
        result = truth.result()
        origin = origin_document(result, origin_shares(result))  # stored by the center, read by exports
        records.append(
            interval_from_document(truth.ts, int(truth.interval_s), truth.result_document(), origin=origin)
        )
    return net, records


def fill(store: Store, net, records, days: int) -> int:
    upsert_topology(store, topology_rows(grid_document(net)))
    count = 0
    for day in range(days):
        for record in records:
            shifted = replace(record, ts=record.ts + timedelta(days=day), hash=f"{record.hash[:56]}{day:08d}")
            save_interval(store, shifted)
            count += 1
    return count


def best(fn, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return min(times), result


def run(name: str, url: str, net, records, days: int, rounds: int) -> dict:
    store = Store.open(url)
    try:
        began = time.perf_counter()
        n = fill(store, net, records, days)
        fill_s = time.perf_counter() - began
        first, last = START, START + timedelta(days=days)
        base, _ = best(lambda: aggregate(store, "load", "month", first, last, utc_offset_minutes=480), rounds)
        build, report = best(lambda: build_report(store, "month", "2026-12"), rounds)
        xlsx, data_x = best(lambda: render(report, "xlsx"), rounds)
        pdf, data_p = best(lambda: render(report, "pdf"), rounds)

        def enterprise_xlsx():
            export = enterprise_export(store, "month", "2026-12")
            return write_table("xlsx", *flat_rows(export), export.metadata(), title="users")

        def quota_xlsx():
            export = quota_export(store, "year", "2026")
            return write_table("xlsx", QUOTA_COLUMNS, export.rows, export.metadata(), title="totals")

        enterprise, _ = best(enterprise_xlsx, rounds)
        quota, _ = best(quota_xlsx, rounds)
    finally:
        store.close()
    row = {
        "backend": name,
        "intervals": n,
        "fill_s": fill_s,
        "baseline_s": base,
        "build_s": build,
        "xlsx_s": xlsx,
        "pdf_s": pdf,
        "xlsx_total_s": build + xlsx,
        "pdf_total_s": build + pdf,
        "ratio_build_to_baseline": build / base,
        "xlsx_bytes": len(data_x),
        "pdf_bytes": len(data_p),
        "enterprise_month_xlsx_s": enterprise,
        "quota_year_xlsx_s": quota,
    }
    print(
        f"{name:10s} {n} intervals (filled in {fill_s:.0f} s): baseline query {base * 1000:.0f} ms; "
        f"build {build * 1000:.0f} ms ({build / base:.1f}x baseline); XLSX {xlsx * 1000:.0f} ms "
        f"({len(data_x) // 1024} KiB); PDF {pdf * 1000:.0f} ms ({len(data_p) // 1024} KiB); "
        f"build+XLSX {build + xlsx:.2f} s, build+PDF {build + pdf:.2f} s (target < 3 s); "
        f"enterprise export month XLSX {enterprise:.2f} s ({enterprise / base:.0f}x baseline), "
        f"quota year XLSX {quota:.2f} s ({quota / base:.1f}x baseline)",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pg", default=PG_DEFAULT, help="a database we may create a schema in")
    args = parser.parse_args()
    net, records = one_day()
    with tempfile.TemporaryDirectory() as folder:
        run("sqlite", f"sqlite:///{folder}/bench.db", net, records, args.days, args.rounds)
    if not args.no_postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            run("postgresql", url.render_as_string(hide_password=False), net, records, args.days, args.rounds)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

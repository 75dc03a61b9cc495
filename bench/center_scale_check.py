"""Old against new metering in the center, byte for byte (issue 17 §4): the same stored readings metered by
an older checkout of carbonflow and by this one must store the same results.

For each size (the grids and stores of ``bench/center_scale.py``, from its cache), two copies of the
filled store: one metered by the carbonflow of ``--old`` (a directory holding an older tree, e.g.
``git archive main | tar -x -C /tmp/old``; run in a child process with that tree first on the path), one
by this tree.  Every interval is metered twice (the second time as a re-metering: a new version, the first
kept in ``interval_versions``).  With ``--thin`` a deterministic share of the readings is deleted first
(every 23rd counter loses its reading at one boundary, every 41st at two, every 31st point's reading at
one boundary is marked estimated: interpolated, held and missing counters, estimates).  Then every row
of ``intervals``, ``interval_versions`` and the result tables is compared (the creation times and the
chain hash, which covers the creation time, left out).

    .venv/bin/python bench/center_scale_check.py --old /tmp/old [--sizes 104 2000] [--thin]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

TABLES = (
    "intervals",
    "interval_versions",
    "bus_results",
    "branch_results",
    "generator_results",
    "load_results",
)
NOT_COMPARED = {"created_at", "superseded_at", "chain_hash"}  # times of the run, and the hash over them


def meter_all(db: Path, grid_path: Path, ends_path: Path, samples: int) -> None:
    """Meter every interval of ``ends_path`` twice in the store ``db`` (this process's carbonflow)."""
    import carbonflow
    from carbonflow.center.metering.service import MeteringService
    from carbonflow.center.store import Store

    print(f"    metering with {Path(carbonflow.__file__).parents[1]}", flush=True)
    grid = json.loads(grid_path.read_text())
    ends = [datetime.fromisoformat(ts) for ts in json.loads(ends_path.read_text())]
    store = Store.open(f"sqlite:///{db}")
    service = MeteringService(store, grid, 900, uncertainty_samples=samples)
    for reason in ("first metering", "late readings"):
        for end in ends:
            outcome = service.meter_interval(end, download_factors=False, reason=reason)
            print(f"    {end.isoformat()} v{outcome.version}: stored {outcome.stored}, estimates "
                  f"{outcome.estimates}, derived {outcome.derived}", flush=True)  # fmt: skip
    store.close()


def thinned(db: Path) -> None:
    counters = "SELECT id FROM points WHERE quantity LIKE '%energy_kwh' OR quantity = 'carbon_kg'"
    with sqlite3.connect(db) as connection:
        stamps = [row[0] for row in connection.execute("SELECT DISTINCT ts FROM readings ORDER BY ts")]
        for modulo, dropped in ((23, stamps[2:3]), (41, [stamps[1], stamps[-1]])):
            marks = ", ".join("?" for _ in dropped)
            connection.execute(
                f"DELETE FROM readings WHERE point_id IN ({counters} AND rowid % {modulo} = 0)"  # nosec B608
                f" AND ts IN ({marks})",
                dropped,
            )
        connection.execute(
            "UPDATE readings SET quality = 'estimated' WHERE ts = ? AND point_id IN "
            "(SELECT id FROM points WHERE rowid % 31 = 0)",
            (stamps[2],),
        )


def rows_of(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as connection:
        tables = {}
        for table in TABLES:
            names = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            kept = [name for name in names if name not in NOT_COMPARED]
            query = f"SELECT {', '.join(kept)} FROM {table} ORDER BY {', '.join(kept[:4])}"  # nosec B608
            tables[table] = [tuple(row) for row in connection.execute(query)]
        return tables


def check(n_bus: int, old: Path, cache: Path, samples: int, thin: bool) -> bool:
    source = cache / f"scale-{n_bus}-3x900s-v1"
    if not (source / "done").exists():
        raise SystemExit(f"{source}: not cached yet (run bench/center_scale.py --sizes {n_bus} first)")
    work = Path(tempfile.mkdtemp(prefix=f"cf-check-{n_bus}-"))
    stores = {}
    for name, tree in (("old", old), ("new", Path(__file__).resolve().parents[1])):
        db = stores[name] = work / f"{name}.db"
        shutil.copyfile(source / "center.db", db)
        if thin:
            thinned(db)
        # the child imports carbonflow from ``tree`` only: this script puts no tree on its path itself
        environment = {**os.environ, "PYTHONPATH": str(tree)}
        arguments = ["--meter", str(db), str(source / "grid.json"), str(source / "ends.json"), str(samples)]
        subprocess.run([sys.executable, __file__, *arguments], env=environment, check=True)
    before, after = rows_of(stores["old"]), rows_of(stores["new"])
    same = True
    for table in TABLES:
        count = len(before[table])
        differing = sum(a != b for a, b in zip(before[table], after[table])) + abs(count - len(after[table]))
        print(f"  {n_bus} buses{' (thinned)' if thin else ''}: {table}: {count} rows, {differing} differ")
        same &= differing == 0
    shutil.rmtree(work)
    return same


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--meter":
        db, grid, ends, samples = sys.argv[2:6]
        meter_all(Path(db), Path(grid), Path(ends), int(samples))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the older carbonflow tree")
    parser.add_argument("--sizes", type=int, nargs="+", default=[104, 2000])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--thin", action="store_true", help="delete a share of the readings first")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cf-bench-center-scale")
    args = parser.parse_args()
    results = [check(n_bus, args.old, args.cache, args.samples, args.thin) for n_bus in args.sizes]
    print("identical" if all(results) else "DIFFERENT")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()

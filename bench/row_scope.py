"""What the per-row region filter (issue 15 §1, ``RowScope``) costs on the lists it guards.

Seeds a center with devices in two cities and ``--commands`` routine commands (factor downloads, the
table that grows by millions a year), then times each list unscoped (a user of the whole center) and
scoped to one city (filtered in SQL: outer joins to devices and collectors for commands), in the same
run; and scoped to the province (``AH``, covering the center: every row but those of a region outside,
``NOT IN``).  Reported: ms per call, and in brackets scoped / unscoped (the city sees half the rows).

    .venv/bin/python bench/row_scope.py                       # SQLite (a temporary file)
    .venv/bin/python bench/row_scope.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbonflow.center.store import (
    Store,
    command_summary,
    list_commands,
    list_devices,
    register_devices,
    upsert_collector,
)
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Command

CITIES = ("AH/HF", "AH/WH")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def seed(store: Store, devices: int, commands: int) -> None:
    for city in CITIES:
        collector = f"C-{city[-2:]}"
        upsert_collector(store, collector, "secret", region=city)
        register_devices(
            store,
            [
                {"id": f"M-{city[-2:]}-{k:05d}", "protocol": "dlt645", "region": f"{city}/D{k % 7}"}
                | {"endpoint": {"host": "127.0.0.1", "port": 1}, "address": {"address": "110100000001"}}
                for k in range(devices // 2)
            ],
            collector,
        )
    rows = []
    for k in range(commands):
        city = CITIES[k % 2][-2:]
        at = T0 + timedelta(seconds=k)
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "collector_id": f"C-{city}",
                "device_id": f"M-{city}-{(k // 2) % (devices // 2):05d}",
                "kind": "set_carbon_factor",
                "params": {"factor": "0.58"},
                "status": "acknowledged",
                "attempts": 1,
                "created_at": at,
                "updated_at": at,
            }
        )
    with store.write() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(Command.__table__.insert(), rows[start : start + 10_000])


def timed(call, repeat: int) -> float:
    call()  # warm
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        seed(store, args.devices, args.commands)
        city = RowScope(CITIES[0])
        province = RowScope("AH", unregioned=True)  # every row but those of a region outside (NOT IN)
        cases = {
            "devices": lambda scope: list_devices(store, scope=scope),
            "commands (routine left out)": lambda scope: list_commands(
                store, exclude_kinds=["set_carbon_factor"], scope=scope
            ),
            "commands/summary": lambda scope: command_summary(store, scope=scope),
        }
        print(f"{store.dialect}: {args.devices} devices, {args.commands} commands, best of {args.repeat}")
        for name, call in cases.items():
            whole = timed(lambda c=call: c(None), args.repeat)
            scoped = [timed(lambda c=call, r=scope: c(r), args.repeat) for scope in (city, province)]
            print(
                f"  {name:28s} unscoped {whole:7.1f} ms   city {scoped[0]:7.1f} ms ({scoped[0] / whole:4.2f})"
                f"   province {scoped[1]:7.1f} ms ({scoped[1] / whole:4.2f})"
            )
        store.close()


if __name__ == "__main__":
    main()

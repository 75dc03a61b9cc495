"""Soak: the fault-injection suite's faults, over and over, on one long-running field — then the exact books.

One center and one collector (real processes) over the four simulated devices of tests/faults (DL/T 645,
DL/T 698.45, Modbus TCP, IEC 104); every ``--every`` seconds one fault, taken in turn from: kill -9 of
the center, kill -9 of the collector, a restart of the MQTT broker (``--transport mqtt``, a broker of
our own) and a crash of PostgreSQL (``--database own-postgres``: a throwaway cluster of our own).  After
``--minutes`` the collector is drained and the books must balance exactly (tests/faults/faultfield.py:
every reading appended at the collector stored once at the center, every batch seq once, the outbox
empty).  Reported: readings, batches, faults, and per kind of fault the recovery time (from the end of
the fault until a batch cut after it is stored at the center; median and worst).  Exit 1 when the
books do not balance.

    .venv/bin/python bench/soak.py [--minutes 10] [--every 20] [--transport http|mqtt]
                                   [--database sqlite|own-postgres|URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from faultfield import (  # noqa: E402
    Center,
    Collector,
    Field,
    assert_nothing_lost,
    center_ledger,
    outbox_ledger,
    wait_for,
)
from servers import Mosquitto, Postgres  # noqa: E402


def newest_seq(field: Field) -> int:
    assert field.store is not None
    try:
        seqs = center_ledger(field.store).seqs
    except Exception:  # the database is being restarted
        return -1
    return seqs[-1] if seqs else -1


async def soak(args: argparse.Namespace, tmp: Path, database_url: str, postgres: Postgres | None) -> int:
    broker = Mosquitto(tmp) if args.transport == "mqtt" else None
    field = Field(tmp, database_url, minutes=int(args.minutes) + 10)
    center = Center(database_url, tmp, mqtt_url=broker.url if broker else None)
    collector = Collector(tmp)
    faults = ["center", "collector"] + (["broker"] if broker else []) + (["postgres"] if postgres else [])
    recovery: dict[str, list[float]] = defaultdict(list)
    await field.start()
    try:
        if broker is not None:
            await broker.start()
        field.collector_config(broker.url if broker else center.url)
        await center.start()
        await collector.start()
        started, k = time.monotonic(), 0
        while time.monotonic() - started < args.minutes * 60:
            await asyncio.sleep(args.every)
            kind = faults[k % len(faults)]
            k += 1
            if kind == "center":
                await center.kill()
                await asyncio.sleep(1.0)
                await center.start()
            elif kind == "collector":
                await collector.kill()
                await collector.start()
            elif kind == "broker" and broker is not None:
                broker.stop(kill=True)
                await asyncio.sleep(1.0)
                await broker.start()
            elif kind == "postgres" and postgres is not None:
                await postgres.stop("immediate")
                await asyncio.sleep(1.0)
                await postgres.start()
            back, formed = time.monotonic(), outbox_ledger(field.outbox).formed
            # recovered: a batch cut after the fault ended is stored (not merely one resent from before)
            await wait_for(lambda f=formed: newest_seq(field) >= f, f"a batch after the {kind} fault", 120)
            recovery[kind].append(time.monotonic() - back)
            print(
                f"{time.monotonic() - started:7.1f} s  {kind:<9} recovered in {recovery[kind][-1]:.2f} s",
                flush=True,
            )
        await field.drain(collector, timeout_s=120)
        assert field.store is not None
        try:
            book, books = assert_nothing_lost(field.outbox, field.store)
        except AssertionError as error:
            print(f"BOOKS DO NOT BALANCE: {error}")
            return 1
        print(
            f"\n{args.minutes} min, {k} faults, transport {args.transport}, database {args.database}: "
            f"{book.appended} readings in {book.formed} batches, all stored once "
            f"(rows {books.rows}, distinct {books.distinct}, duplicates {books.duplicates})"
        )
        for kind, times in recovery.items():
            print(
                f"  {kind:<9} x{len(times):<3} recovery median {statistics.median(times):.2f} s, "
                f"worst {max(times):.2f} s"
            )
        return 0
    finally:
        await collector.kill()
        await center.kill()
        if broker is not None:
            broker.stop(kill=True)
        await field.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=float, default=20, help="seconds between faults")
    parser.add_argument("--transport", choices=("http", "mqtt"), default="http")
    parser.add_argument("--database", default="sqlite", help="sqlite | own-postgres | a PostgreSQL URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-soak-") as folder:
        tmp = Path(folder)
        postgres = None
        if args.database == "sqlite":
            url = f"sqlite:///{tmp / 'center.db'}"
        elif args.database == "own-postgres":
            postgres = Postgres()
            postgres.init()
            asyncio.run(postgres.start())
            url = postgres.url
        else:
            url = args.database
        try:
            return asyncio.run(soak(args, tmp, url, postgres))
        finally:
            if postgres is not None:
                postgres.remove()


if __name__ == "__main__":
    sys.exit(main())

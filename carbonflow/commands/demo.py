"""``carbonflow demo`` — contract C6: the whole metering chain on this machine."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from carbonflow.commands import CommandInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole system: simulated 104-node grid and devices, collector, center, web UI",
        description="Simulated grid and field devices -> collector -> center (metering, API, web UI).",
    )
    parser.add_argument("--dir", default="carbonflow-demo", help="data directory (kept between runs)")
    parser.add_argument("--port", type=int, default=8080, help="port of the center's web UI and API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--interval", type=int, default=60, help="metering interval, simulated seconds")
    parser.add_argument("--speed", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", metavar="URL", help="center database, e.g. postgresql+psycopg://...")
    parser.add_argument(
        "--mqtt", metavar="URL", help="collector -> center over MQTT, e.g. mqtt://127.0.0.1:1883"
    )
    parser.add_argument("--intervals", type=int, help="stop after metering this many intervals")
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="simulator fault scenario (JSON/TOML events, times after the start) applied to the demo",
    )
    parser.add_argument(
        "--single",
        action="store_true",
        help="one center for the whole grid; without it the demo runs the cascade of centers: province "
        "(on --port), 2 cities, 8 counties, each its own store and port, exchanging and verifying",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="HTTPS everywhere: a local CA and certificates in DIR/tls; the collector trusts the CA",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from carbonflow.demo import DemoOptions, run_demo

    if args.interval < 1 or args.speed <= 0 or args.hours <= 0:
        raise CommandInputError("--interval, --speed and --hours must be positive")
    if args.postgres and not args.postgres.startswith("postgresql"):
        raise CommandInputError(f"--postgres {args.postgres!r}: expected postgresql+psycopg://user@host/db")
    if args.mqtt and not args.mqtt.startswith(("mqtt://", "mqtts://")):
        raise CommandInputError(f"--mqtt {args.mqtt!r}: expected mqtt://host:port")
    scenario = None
    if args.scenario:
        from datetime import UTC, datetime

        from carbonflow.sim.scenarios import Scenario

        scenario = Path(args.scenario)
        if not scenario.is_file():
            raise CommandInputError(f"--scenario {args.scenario!r}: no such file")
        Scenario.load(scenario, datetime.now(UTC))  # a bad event: one line naming it, before anything starts
    options = DemoOptions(
        directory=Path(args.dir),
        host=args.host,
        port=args.port,
        interval_s=args.interval,
        speed=args.speed,
        hours=args.hours,
        seed=args.seed,
        database_url=args.postgres,
        mqtt_url=args.mqtt,
        max_intervals=args.intervals,
        scenario=scenario,
        cascade=not args.single,
        tls=args.tls,
    )
    try:
        report = asyncio.run(run_demo(options))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        print("stopped")
        return 130
    print(f"stopped: {report.intervals_metered} intervals metered; data kept in {options.directory}")
    return 0

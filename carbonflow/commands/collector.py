"""``carbonflow collector run|config|outbox`` — the field collector (docs/collector.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from carbonflow.commands import CommandInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collector",
        help="poll field devices and forward their readings to a center",
        description="Collector: polls devices (DL/T 645, DL/T 698.45, IEC 104, Modbus TCP), buffers in a "
        "local outbox and forwards to the monitoring management center over HTTP or MQTT.",
    )
    commands = parser.add_subparsers(dest="collector_command", required=True, metavar="COLLECTOR_COMMAND")

    run = commands.add_parser("run", help="run the collector until Ctrl-C")
    run.add_argument("config", metavar="CONFIG", help="collector configuration (TOML)")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(run=run_collector)

    config = commands.add_parser("config", help="write a configuration from a device map")
    config.add_argument("--from-device-map", required=True, metavar="MAP", help="device map JSON (sim grid)")
    config.add_argument("--out", required=True, metavar="CONFIG", help="the TOML file to write")
    config.add_argument("--id", default="collector-1", help="collector id (default collector-1)")
    config.add_argument(
        "--center",
        default="http://127.0.0.1:8000",
        metavar="URL",
        help="center URL: http://host:port or mqtt://host:port",
    )
    config.add_argument(
        "--secret-file",
        default="collector.secret",
        metavar="FILE",
        help="file holding the HMAC secret, relative to the config (default collector.secret)",
    )
    config.add_argument("--outbox", default="outbox.sqlite", metavar="FILE", help="outbox SQLite file")
    config.add_argument(
        "--period", type=float, default=10.0, metavar="SECONDS", help="poll period (default 10)"
    )
    config.add_argument("--device", action="append", metavar="ID", help="only this device (repeatable)")
    config.set_defaults(run=run_config)

    outbox = commands.add_parser("outbox", help="show the outbox (pending, batches, dead letters)")
    outbox.add_argument("config", metavar="CONFIG")
    outbox.add_argument(
        "--requeue-dead-letters",
        action="store_true",
        help="queue rejected batches again (same batch_id) after the center was fixed",
    )
    outbox.set_defaults(run=run_outbox)


def _load(path: str):
    from carbonflow.collector.config import load_config
    from carbonflow.messages.collector_config import ConfigError

    try:
        return load_config(path)
    except ConfigError as error:
        raise CommandInputError(str(error)) from None


def run_collector(args: argparse.Namespace) -> int:
    from carbonflow.collector.service import Collector
    from carbonflow.messages.collector_config import ConfigError

    config = _load(args.config)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much
    try:
        Collector(config, args.config).run_forever()
    except ConfigError as error:
        raise CommandInputError(str(error)) from None
    return 0


def run_config(args: argparse.Namespace) -> int:
    from carbonflow.collector.device_map_config import write_config_from_device_map
    from carbonflow.messages.collector_config import ConfigError

    try:
        written = write_config_from_device_map(
            Path(args.from_device_map),
            Path(args.out),
            collector_id=args.id,
            center_url=args.center,
            secret_file=args.secret_file,
            outbox_path=args.outbox,
            period_s=args.period,
            devices=args.device,
        )
    except ConfigError as error:
        raise CommandInputError(str(error)) from None
    points = sum(len(d["points"]) for d in written["devices"])
    print(f"{args.out}: {len(written['devices'])} devices, {points} points", file=sys.stderr)
    return 0


def run_outbox(args: argparse.Namespace) -> int:
    from carbonflow.collector.outbox import Outbox

    config = _load(args.config)
    if not config.outbox_path.exists():
        raise CommandInputError(f"{config.outbox_path}: no outbox yet (the collector has not run)")
    with Outbox(config.outbox_path, config.outbox.max_readings, config.outbox.max_bytes) as outbox:
        requeued = outbox.requeue_dead_letters() if args.requeue_dead_letters else 0
        stats = outbox.stats()
        report = {
            "outbox": str(config.outbox_path),
            "pending_readings": stats.pending_readings,
            "batches": stats.batches,
            "batched_readings": stats.batched_readings,
            "dead_letters": outbox.dead_letters(),
            "refused_readings": stats.refused_readings,
            "used_bytes": stats.used_bytes,
            "max_bytes": stats.max_bytes,
            "full": stats.full,
            "requeued": requeued,
        }
    print(json.dumps(report, indent=2))
    return 0

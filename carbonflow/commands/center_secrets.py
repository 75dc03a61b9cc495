"""``carbonflow center secrets keygen|rewrap`` and ``carbonflow center rotate-secret COLLECTOR`` — collector
secrets sealed at rest and rotated without downtime (docs/security.md#collector-secrets).
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

from carbonflow.commands import CommandInputError


def register_actions(actions: argparse._SubParsersAction, settings) -> None:
    """Add the secret commands to ``carbonflow center``; ``settings(args)`` resolves the database."""
    secrets = actions.add_parser("secrets", help="the key that seals collector secrets at rest")
    secret_actions = secrets.add_subparsers(dest="secrets_command", required=True, metavar="SECRETS_COMMAND")
    keygen = secret_actions.add_parser(
        "keygen", help="print a new secrets key (Fernet) for CARBONFLOW_SECRETS_KEY"
    )
    keygen.set_defaults(run=run_keygen)
    rewrap = secret_actions.add_parser(
        "rewrap",
        help="seal every collector secret under the first configured key (after adding or rotating one)",
    )
    rewrap.add_argument("--database", metavar="URL")
    rewrap.set_defaults(run=lambda args: run_rewrap(args, settings))

    rotate = actions.add_parser(
        "rotate-secret",
        help="give a collector a new secret; the old one stays valid until the collector uses the new one",
    )
    rotate.add_argument("collector")
    rotate.add_argument("--database", metavar="URL")
    rotate.add_argument(
        "--overlap-hours",
        type=float,
        default=168.0,
        help="how long the old secret stays valid at most (default 168; 0 cuts it off now: a stolen secret)",
    )
    rotate.add_argument(
        "--secret-file", metavar="FILE", help="write the new secret here (mode 0600), not stdout"
    )
    rotate.set_defaults(run=lambda args: run_rotate(args, settings))


def run_keygen(_args: argparse.Namespace) -> int:
    from carbonflow.center.store import new_secrets_key

    print(new_secrets_key())
    return 0


def run_rewrap(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.store import SecretsKeyError, Store, record_audit, rewrap_collector_secrets

    store = Store.open(settings(args).database_url)
    try:
        count = rewrap_collector_secrets(store)
        record_audit(store, "cli", "secrets.rewrap", "collectors", {"collectors": count})
    except SecretsKeyError as error:
        raise CommandInputError(str(error)) from None
    finally:
        store.close()
    print(f"{count} collector secret(s) sealed under the first secrets key")
    return 0


def run_rotate(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.store import Store, StoreError, record_audit, rotate_collector_secret

    if args.overlap_hours < 0:
        raise CommandInputError(f"--overlap-hours {args.overlap_hours:g}: must not be negative")
    store = Store.open(settings(args).database_url)
    try:
        rotated = rotate_collector_secret(store, args.collector, overlap=timedelta(hours=args.overlap_hours))
        until = None if rotated.previous_until is None else rotated.previous_until.isoformat()
        record_audit(store, "cli", "collector.rotate_secret", args.collector, {"previous_until": until})
    except StoreError as error:
        raise CommandInputError(str(error)) from None
    finally:
        store.close()
    if args.secret_file:
        path = Path(args.secret_file)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(rotated.secret + "\n")
        where = f"written to {path}"
    else:
        print(rotated.secret)
        where = "printed above"
    old = "cut off now" if until is None else f"valid until {until} or until the collector uses the new one"
    print(f"collector {args.collector}: new secret {where}; the old secret is {old}")
    return 0

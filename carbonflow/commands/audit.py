"""``carbonflow audit keygen|checkpoint|verify|log`` — tamper evidence (docs/tamper-evidence.md).

``verify`` exits 0 with one summary line when every chain and checkpoint holds, 1 with one line per
finding (then the summary) otherwise, 2 on bad input (unreadable key, unreachable database).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carbonflow.commands import CommandInputError

EXIT_FINDINGS = 1
KEY_ENV = "CARBONFLOW_AUDIT_KEY_FILE"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="tamper evidence: signing key, checkpoints, verification of the hash chains, the audit log",
        description="Hash chains over readings, interval results, releases and the audit log, "
        "and signed checkpoints of their heads.",
    )
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    keygen = actions.add_parser("keygen", help="write a new Ed25519 checkpoint key (0600) and KEY.pub")
    keygen.add_argument("--key-file", metavar="FILE", help=f"default: ${KEY_ENV} or carbonflow-audit.key")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    keygen.add_argument(
        "--rotate",
        action="store_true",
        help="replace the key; KEY.pub keeps the old public keys after the new one (old checkpoints verify)",
    )
    keygen.set_defaults(run=run_keygen)

    checkpoint = actions.add_parser("checkpoint", help="sign the current chain heads now")
    checkpoint.add_argument("--database", metavar="URL", required=True)
    checkpoint.add_argument("--key-file", metavar="FILE", help=f"default: ${KEY_ENV}")
    checkpoint.set_defaults(run=run_checkpoint)

    verify = actions.add_parser("verify", help="recompute every chain and check the checkpoints")
    verify.add_argument("--database", metavar="URL", required=True)
    verify.add_argument(
        "--public-key", metavar="FILE", help="the center's KEY.pub (without: the keys stored in the database)"
    )
    verify.set_defaults(run=run_verify)

    log = actions.add_parser("log", help="the audit log, newest first, one JSON object per line")
    log.add_argument("--database", metavar="URL", required=True)
    log.add_argument("--actor")
    log.add_argument("--action", help="action prefix, e.g. login or command.")
    log.add_argument("--limit", type=int, default=100)
    log.set_defaults(run=run_log)


def _key_path(args: argparse.Namespace, *, default: str | None = None) -> Path:
    path = args.key_file or os.environ.get(KEY_ENV) or default
    if not path:
        raise CommandInputError(f"no key file: give --key-file or set {KEY_ENV}")
    return Path(path)


@contextmanager
def _store(url: str, *, migrate: bool) -> Iterator[Any]:
    """The store at ``url`` (verify and log only read: no migration, no partitions made), closed after;
    a database error inside is one line naming the database (its password hidden), never a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from carbonflow.center.store import Store
    from carbonflow.center.store.engine import make_engine

    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise CommandInputError(f"bad database URL: {error}") from None
    shown = parsed.render_as_string(hide_password=True)
    if not migrate and parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise CommandInputError(f"{parsed.database or shown}: no such database file")
    store = None
    try:
        store = Store.open(url) if migrate else Store(make_engine(url))
        yield store
    except ValueError as error:  # make_engine: not SQLite or PostgreSQL
        if isinstance(error, CommandInputError):
            raise
        raise CommandInputError(f"bad database URL {shown!r}: {error}") from None
    except SQLAlchemyError as error:  # unreachable, or not a carbonflow database at the current schema
        first = str(error).splitlines()[0]
        hint = " (a carbonflow center database, migrated?)" if "table" in first or "relation" in first else ""
        raise CommandInputError(f"database {shown!r}: {first}{hint}") from None
    finally:
        if store is not None:
            store.close()


def run_keygen(args: argparse.Namespace) -> int:
    from carbonflow.center.audit import DEFAULT_KEY_FILE, AuditKeyError, public_key_path, write_key
    from carbonflow.center.store.checkpoints import public_key_text

    path = _key_path(args, default=DEFAULT_KEY_FILE)
    try:
        key = write_key(path, overwrite=args.force, rotate=args.rotate)
    except AuditKeyError as error:
        raise CommandInputError(str(error)) from None
    print(f"wrote {path} (0600) and {public_key_path(path)}; public key {public_key_text(key)}")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from carbonflow.center.audit import AuditKeyError, load_private_key
    from carbonflow.center.store import make_checkpoint

    try:
        key = load_private_key(_key_path(args))
    except AuditKeyError as error:
        raise CommandInputError(str(error)) from None
    with _store(args.database, migrate=True) as store:
        row = make_checkpoint(store, key)
    print(f"checkpoint {row['id']}: {row['n_heads']} chain heads signed at {row['created_at'].isoformat()}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from carbonflow.center.audit import AuditKeyError, load_public_keys
    from carbonflow.center.store import verify

    public_key = None
    if args.public_key:
        try:
            public_key = load_public_keys(args.public_key)
        except AuditKeyError as error:
            raise CommandInputError(str(error)) from None
    with _store(args.database, migrate=False) as store:
        report = verify(store, public_key)
    for finding in report.findings:
        print(finding)
    print(f"audit verify: {report.summary()}")
    return 0 if report.clean else EXIT_FINDINGS


def run_log(args: argparse.Namespace) -> int:
    from carbonflow.center.store.audit import list_audit

    with _store(args.database, migrate=False) as store:
        rows = list_audit(store, actor=args.actor, action=args.action, limit=args.limit)
    for row in rows:
        print(json.dumps(_shown(row), ensure_ascii=False, default=str))
    return 0


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}

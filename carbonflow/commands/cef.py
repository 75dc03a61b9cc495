"""``carbonflow cef SNAPSHOT.json`` — contract C1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from carbonflow.commands import CommandInputError
from carbonflow.commands.render import to_csv, to_table
from carbonflow.engine import snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.engine.origin import origin_shares


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cef",
        help="carbon emission flow of one power-flow snapshot",
        description="Nodal carbon intensity, branch carbon flow, load and loss carbon of a snapshot.",
    )
    parser.add_argument("snapshot", help="snapshot JSON file (contract C1), or - for stdin")
    parser.add_argument(
        "--losses",
        choices=("receiving", "consumer"),
        default="receiving",
        help="receiving: loss carbon reported separately (default); consumer: inside loads",
    )
    parser.add_argument("--format", choices=("json", "csv", "table"), default="json")
    parser.add_argument(
        "--origin",
        action="store_true",
        help="add the origin matrix: each bus's power and each load's carbon by source",
    )
    parser.set_defaults(run=run)


def read_json_document(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CommandInputError(f"{path}: not UTF-8 text ({error.reason})") from None
    except FileNotFoundError:
        raise CommandInputError(f"{path}: no such file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandInputError(
            f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except (ValueError, RecursionError) as error:  # integer of > 4300 digits, nesting too deep
        raise CommandInputError(f"{path}: JSON that cannot be read ({type(error).__name__})") from None


def run(args: argparse.Namespace) -> int:
    snapshot = snapshot_from_dict(read_json_document(args.snapshot))
    result = solve(snapshot, args.losses)
    document = result_document(result, origin_shares(result) if args.origin else None)
    if args.format == "json":
        output = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    elif args.format == "csv":
        output = to_csv(document)
    else:
        output = to_table(document)
    sys.stdout.write(output)
    return 0

"""``carbonflow frame decode|encode`` — contract C2: one field-protocol frame to JSON, or a request
frame from its parameters (byte-identical to what a master sends)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
from types import ModuleType

from carbonflow.commands import CommandInputError

CODECS = {
    "dlt645": "carbonflow.protocols.dlt645",
    "dlt698": "carbonflow.protocols.dlt698",
    "iec104": "carbonflow.protocols.iec104",
    "modbus-tcp": "carbonflow.protocols.modbus",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "frame",
        help="decode a captured field-protocol frame, or build a request frame",
        description="Decode one DL/T 645, DL/T 698.45, IEC 104 or Modbus TCP frame to JSON, or build a "
        "request.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    decode = actions.add_parser("decode", help="frame (hex, spaces allowed) -> JSON on stdout")
    decode.add_argument("--protocol", choices=sorted(CODECS), required=True)
    decode.add_argument("hex", nargs="+", help="the frame in hex; spaces, ':' and '-' between bytes allowed")
    decode.set_defaults(run=run_decode)
    encode = actions.add_parser(
        "encode",
        help="build a request frame: FUNCTION key=value ... -> hex on stdout",
        description="Build a request frame; `carbonflow frame encode --protocol P list` shows the functions.",
    )
    encode.add_argument("--protocol", choices=sorted(CODECS), required=True)
    encode.add_argument(
        "function", help="e.g. read (dlt645), get (dlt698), gi (iec104), read-holding (modbus-tcp)"
    )
    encode.add_argument("params", nargs="*", metavar="key=value")
    encode.add_argument("--compact", action="store_true", help="hex without spaces")
    encode.set_defaults(run=run_encode)


def codec(protocol: str) -> ModuleType:
    return importlib.import_module(CODECS[protocol])


def parse_hex(words: list[str]) -> bytes:
    text = re.sub(r"[\s:\-]", "", "".join(words))
    if text.lower().startswith("0x"):
        text = text[2:]
    if not text:
        raise CommandInputError("no frame given")
    if not re.fullmatch(r"[0-9A-Fa-f]*", text):
        bad = re.search(r"[^0-9A-Fa-f]", text).group()
        raise CommandInputError(f"frame is not hex: unexpected character {bad!r}")
    if len(text) % 2:
        raise CommandInputError(f"frame has an odd number of hex digits ({len(text)})")
    return bytes.fromhex(text)


def run_decode(args: argparse.Namespace) -> int:
    document = codec(args.protocol).describe(parse_hex(args.hex))
    print(json.dumps(document, ensure_ascii=False))
    return 0


def run_encode(args: argparse.Namespace) -> int:
    module = codec(args.protocol)
    if args.function == "list":
        for name, usage in module.ENCODE_FUNCTIONS.items():
            print(f"{name} {usage}")
        return 0
    params: dict[str, str] = {}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandInputError(f"parameter {item!r} is not key=value")
        if key in params:
            raise CommandInputError(f"parameter {key!r} given twice")
        params[key] = value
    frame = module.build_request(args.function, params)
    print(frame.hex() if args.compact else frame.hex(" ").upper())
    return 0

"""``carbonflow import matpower|pandapower|cgmes FILE`` — a C1 snapshot from a user's own grid model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from carbonflow.commands import CommandInputError
from carbonflow.commands.cef import read_json_document


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="build a C1 snapshot from a MATPOWER case, a solved pandapower network or a CGMES set",
        description="Write the C1 snapshot of a grid model (stdout, or --output) for `carbonflow cef`.",
    )
    parser.add_argument("format", choices=("matpower", "pandapower", "cgmes"))
    parser.add_argument(
        "model",
        help="MATPOWER .m case file, pandapower JSON (pandapower.to_json), or a CGMES set "
        "(directory or .zip of EQ, TP, SSH, SV CIM/XML files)",
    )
    parser.add_argument(
        "--solve",
        choices=("dc", "ac"),
        help="MATPOWER: run a power flow first (the case has no PF/PT results); CGMES: the power flow "
        "to run (default ac)",
    )
    parser.add_argument(
        "--intensities",
        metavar="FILE",
        help='JSON object of generator id -> gCO2/kWh, e.g. {"G1": 875, "gen:0": 520}',
    )
    parser.add_argument(
        "--default-intensity",
        type=float,
        metavar="G_PER_KWH",
        help="intensity for generators not listed in --intensities",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write the snapshot here instead of stdout")
    parser.set_defaults(run=run)


def _intensities(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    table = read_json_document(path)
    if not isinstance(table, dict):
        raise CommandInputError(f"{path}: must be a JSON object of generator id -> gCO2/kWh")
    return table


def _cgmes_document(args: argparse.Namespace, intensities: dict[str, Any] | None) -> dict[str, Any]:
    """Solve the imported set (AC unless --solve dc) and meter it; the set's own units' intensities
    (carbonflow extension, fuel factors, default) are overridden by --intensities entries."""
    import pandapower as pp

    from carbonflow.sim.cgmes_import import load_cgmes
    from carbonflow.sim.errors import GridImportError
    from carbonflow.sim.importers import snapshot_dict_from_pandapower
    from carbonflow.sim.powerflow import runpp

    default = 820.0 if args.default_intensity is None else args.default_intensity
    imported = load_cgmes(args.model, default_intensity=default)
    for note in imported.notes:
        sys.stderr.write(f"note: {note}\n")
    net = imported.net
    try:
        if args.solve == "dc":
            pp.rundcpp(net)
        else:
            runpp(net)
    except pp.LoadflowNotConverged:
        raise GridImportError(f"{args.model}: the imported grid's power flow does not converge") from None
    own = {
        f"{table}:{index}": float(value)
        for table in ("ext_grid", "gen", "sgen")
        for index, value in net[table].get("intensity_g_per_kwh", {}).items()
    }
    return snapshot_dict_from_pandapower(net, {**own, **(intensities or {})}, default)


def _document(args: argparse.Namespace) -> dict[str, Any]:
    intensities = _intensities(args.intensities)
    if args.format == "cgmes":
        return _cgmes_document(args, intensities)
    if args.format == "matpower":
        from carbonflow.sim.matpower import load_matpower_case, snapshot_dict_from_ppc, solve_ppc

        case = load_matpower_case(args.model)
        if args.solve:
            case = solve_ppc(case, args.solve)
        return snapshot_dict_from_ppc(case, intensities, default_intensity=args.default_intensity)
    if args.solve:
        raise CommandInputError(
            "--solve applies to MATPOWER cases; solve a pandapower network before saving it"
        )
    from carbonflow.sim.importers import load_pandapower_json, snapshot_dict_from_pandapower

    if not Path(args.model).is_file():
        raise CommandInputError(f"{args.model}: no such file")
    try:
        net = load_pandapower_json(args.model)
    except Exception as error:  # pandapower raises many types for a file that is not a network
        raise CommandInputError(
            f"{args.model}: not a pandapower network file ({type(error).__name__})"
        ) from None
    return snapshot_dict_from_pandapower(net, intensities, args.default_intensity)


def run(args: argparse.Namespace) -> int:
    from carbonflow.engine import snapshot_from_dict

    document = _document(args)
    snapshot_from_dict(document)  # the same validation `carbonflow cef` applies, before anything is written
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0

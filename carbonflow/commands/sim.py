"""``carbonflow sim grid|run|serve`` — the reference grid (or your own), its truth over time, and its
simulated field devices live on localhost."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from carbonflow.commands import CommandInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="the 104-node reference grid (or your own) simulated over time",
        description="Grid simulator: AC power flow per interval, truth snapshots and carbon-flow results.",
    )
    commands = parser.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")

    grid = commands.add_parser("grid", help="summarise the grid and optionally export it")
    _grid_option(grid)
    grid.add_argument(
        "--export",
        metavar="FILE",
        help="write the grid: pandapower JSON (*.json), or carbonflow's tables (*.cf.json)",
    )
    grid.add_argument(
        "--export-cgmes",
        metavar="DIR",
        help="write the grid as a CGMES 2.4.15 set (EQ, TP, SSH, SV) into DIR, or into DIR.zip",
    )
    grid.add_argument("--device-map", metavar="FILE", help="also write the device map (JSON)")
    grid.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    grid.set_defaults(run=run_grid)

    run = commands.add_parser("run", help="simulate and write truth snapshots, results and totals")
    _grid_option(run)
    run.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    run.add_argument(
        "--interval", type=float, default=60.0, metavar="SECONDS", help="interval length (default 60)"
    )
    run.add_argument("--out", required=True, metavar="DIR", help="output directory")
    run.add_argument("--seed", type=int, default=0, help="weather and load-noise seed (default 0)")
    run.add_argument("--start", metavar="ISO", help="start time with zone, e.g. 2025-06-01T16:00:00Z")
    run.add_argument("--losses", choices=("receiving", "consumer"), default="receiving")
    run.add_argument("--power-flow", choices=("auto", "fast", "pandapower"), default="auto")
    run.add_argument("--gzip", action="store_true", help="write truth.jsonl.gz")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(run=run_run)

    serve = commands.add_parser("serve", help="serve every simulated device on localhost, following the grid")
    _grid_option(serve)
    serve.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    serve.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)"
    )
    serve.add_argument(
        "--interval", type=float, default=60.0, metavar="SECONDS", help="interval length (default 60)"
    )
    serve.add_argument("--seed", type=int, default=0, help="weather and load-noise seed (default 0)")
    serve.add_argument("--start", metavar="ISO", help="start time with zone, e.g. 2025-06-01T16:00:00Z")
    serve.add_argument("--scenario", metavar="FILE", help="faults and scenarios (JSON or TOML event list)")
    serve.add_argument("--device-map", metavar="FILE", help="serve this device map (default: generated)")
    serve.add_argument(
        "--device-map-out", metavar="FILE", help="write the device map with the actual endpoints (JSON)"
    )
    serve.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="listen on P, P+1, ... (0: free ports); default: the device map's ports",
    )
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.set_defaults(run=run_serve)


def _grid_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid",
        metavar="FILE",
        help="MATPOWER .m case, pandapower .json network or CGMES set (directory or .zip); "
        "default: the 104-node reference grid",
    )
    parser.add_argument(
        "--default-intensity",
        type=float,
        default=820.0,
        metavar="G_PER_KWH",
        help="intensity of imported generators without one (default 820)",
    )


def load_net(args: argparse.Namespace):
    """The grid the arguments name, and whether it is the reference grid."""
    if args.grid:
        from carbonflow.sim.grid_import import load_grid

        return load_grid(args.grid, default_intensity=args.default_intensity), False
    from carbonflow.sim.reference_grid import reference_grid

    return reference_grid(), True


def summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"{summary['name'] or 'grid'}: {summary['nodes']} nodes"]
    for title, key in (("by kind", "by_kind"), ("by voltage", "by_voltage_kv"), ("by region", "by_region")):
        lines.append(f"  {title}:")
        lines += [f"    {name:<14} {count:>5}" for name, count in summary[key].items()]
    lines.append(
        f"  branches: {summary['lines']} lines, {summary['transformers']} transformers; "
        f"{summary['generators']} generators, {summary['loads']} loads, {summary['storage']} storage"
    )
    if summary["capacity_mw_by_fuel"]:
        lines.append(
            "  capacity MW by fuel: "
            + ", ".join(f"{k} {v:g}" for k, v in summary["capacity_mw_by_fuel"].items())
        )
    lines.append(f"  peak load: {summary['peak_load_mw']:g} MW")
    return lines


def run_grid(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    import pandapower as pp

    from carbonflow.sim.reference_grid import grid_summary

    out, err = out or sys.stdout, err or sys.stderr
    net, reference = load_net(args)
    summary = grid_summary(net)
    if args.export:
        path = Path(args.export)
        if path.name.endswith(".cf.json"):
            from carbonflow.sim.device_map import grid_document

            path.write_text(
                json.dumps(grid_document(net), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        else:
            pp.to_json(net, str(path))
    if args.export_cgmes:
        from carbonflow.sim.cgmes_export import write_cgmes

        name = "reference" if reference else Path(args.grid).stem
        for note in write_cgmes(net, args.export_cgmes, model_name=name).notes:
            err.write(f"note: {note}\n")
    if args.device_map:
        from carbonflow.sim.device_map import build_device_map

        text = json.dumps(build_device_map(net), indent=1, ensure_ascii=False)
        Path(args.device_map).write_text(text + "\n", encoding="utf-8")
    if args.format == "json":
        out.write(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    else:
        out.write("\n".join(summary_lines(summary)) + "\n")
    return 0


class ProgressBar:
    """A plain-text progress bar on a stream (carriage return, no dependency)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.started = time.perf_counter()
        self.last = -1.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        share = done / total if total else 1.0
        filled = int(self.width * share)
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} intervals {share:6.1%} {rate:7.0f}/s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandInputError(f"--start: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise CommandInputError(f"--start: give a time zone, e.g. {text}Z or {text}+08:00")
    return moment


def run_run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from carbonflow.sim.output import write_run
    from carbonflow.sim.reference_grid import grid_summary
    from carbonflow.sim.simulation import Simulation
    from carbonflow.sim.timeseries import SimConfig

    out, err = out or sys.stdout, err or sys.stderr
    if not args.hours > 0 or not args.interval > 0:
        raise CommandInputError("--hours and --interval must be positive")
    count = round(args.hours * 3600.0 / args.interval)
    if count < 1:
        raise CommandInputError("--hours is shorter than one --interval")
    net, reference = load_net(args)
    settings: dict[str, Any] = dict(
        interval_s=args.interval,
        count=count,
        seed=args.seed,
        dispatch="merit" if reference else "proportional",
    )
    start = _start(args.start)
    if start is not None:
        settings["start"] = start
    simulation = Simulation(
        net,
        SimConfig(**settings),
        method=args.power_flow,
        losses=args.losses,
        default_intensity_g_per_kwh=args.default_intensity,
    )
    progress = None if args.quiet else ProgressBar(err)
    meta = write_run(simulation, args.out, gzip_truth=args.gzip, progress=progress, summary=grid_summary(net))
    out.write(
        f"{meta['intervals']} intervals of {meta['interval_s']:g} s written to {args.out} "
        f"in {meta['wall_s']:.1f} s ({meta['power_flow']})\n"
    )
    return 0


def run_serve(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import asyncio

    from carbonflow.sim.device_map import build_device_map
    from carbonflow.sim.scenarios import Scenario, ScenarioSimulation
    from carbonflow.sim.serve import ServeOptions, serve
    from carbonflow.sim.timeseries import DEFAULT_START, SimConfig

    out = out or sys.stdout
    if not args.hours > 0 or not args.interval > 0 or not args.speed > 0:
        raise CommandInputError("--hours, --interval and --speed must be positive")
    count = round(args.hours * 3600.0 / args.interval)
    if count < 1:
        raise CommandInputError("--hours is shorter than one --interval")
    if args.base_port is not None and not 0 <= args.base_port <= 65535:
        raise CommandInputError("--base-port must be within 0..65535")
    start = _start(args.start) or DEFAULT_START
    scenario = Scenario.load(args.scenario, start) if args.scenario else Scenario()
    net, reference = load_net(args)
    if args.device_map:
        try:
            device_map = json.loads(Path(args.device_map).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CommandInputError(f"{args.device_map}: not JSON: {error}") from None
    else:
        device_map = build_device_map(net, host=args.host)
    config = SimConfig(
        start=start,
        interval_s=args.interval,
        count=count,
        seed=args.seed,
        dispatch="merit" if reference else "proportional",
    )
    simulation = ScenarioSimulation(
        net, config, scenario, default_intensity_g_per_kwh=args.default_intensity, chunk_size=30
    )
    options = ServeOptions(args.speed, args.host, args.base_port, args.device_map_out)

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    try:
        asyncio.run(serve(simulation, device_map, options, scenario=scenario, say=say))
    except KeyboardInterrupt:
        say("stopped")
    return 0

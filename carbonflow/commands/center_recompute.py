"""``carbonflow center correct|recompute|versions|diff`` — correct a past input, recompute a range of
interval results as a new version, list the versions, compare two (docs/recompute.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from carbonflow.commands import CommandInputError


def register_actions(actions: argparse._SubParsersAction, settings) -> None:
    """Add the recomputation commands to ``carbonflow center``; ``settings(args)`` gives the database."""
    correct = actions.add_parser(
        "correct", help="record a correction of a past input (emission factor, reading, loss convention)"
    )
    correct.add_argument("kind", choices=("emission_factor", "reading", "losses"))
    correct.add_argument("--element", help="the generator (emission_factor) or point (reading)")
    correct.add_argument("--from", dest="start", required=True, help="ISO time; a reading: its time")
    correct.add_argument("--to", dest="end", help="ISO time (intervals ending up to it); not for a reading")
    correct.add_argument("--value", required=True, help="g/kWh, the reading's value, or receiving|consumer")
    correct.add_argument("--reason")
    correct.add_argument("--database", metavar="URL")
    correct.set_defaults(run=lambda args: run_correct(args, settings))

    run = actions.add_parser(
        "recompute", help="recompute the interval results of a range as a new version (corrections applied)"
    )
    run.add_argument("--from", dest="start", required=True, help="ISO time: intervals ending after it")
    run.add_argument("--to", dest="end", required=True, help="ISO time: intervals ending up to it")
    run.add_argument("--reason")
    run.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    run.add_argument("--dask", metavar="ADDRESS", help="run the chunks on this Dask scheduler instead")
    run.add_argument("--chunk", type=int, default=None, help="intervals per unit of work (default 480)")
    run.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help="also recompute the intervals no correction applies to (after an engine change)",
    )
    run.add_argument("--level", default="", help="the center level of the intervals (default: this center)")
    run.add_argument("--interval-s", type=int, help="interval length (default: the stored intervals')")
    run.add_argument("--database", metavar="URL")
    run.set_defaults(run=lambda args: run_recompute(args, settings))

    versions = actions.add_parser("versions", help="list the versions of the interval results")
    versions.add_argument("--database", metavar="URL")
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(run=lambda args: run_versions(args, settings))

    diff = actions.add_parser("diff", help="compare two versions: per bus, per user and totals")
    diff.add_argument("a", type=int, help="the older version (0: as metered)")
    diff.add_argument("b", type=int, help="the newer version")
    diff.add_argument("--from", dest="start", help="ISO time (default: the range version B recomputed)")
    diff.add_argument("--to", dest="end")
    diff.add_argument("--level", default="")
    diff.add_argument("--json", action="store_true", help="the whole diff as JSON (else the largest changes)")
    diff.add_argument("--top", type=int, default=10)
    diff.add_argument("--database", metavar="URL")
    diff.set_defaults(run=lambda args: run_diff(args, settings))


def parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandInputError(f"{option}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise CommandInputError(f"{option}: give a time zone, e.g. {text}Z or {text}+08:00")
    return moment


def _open(args: argparse.Namespace, settings):
    from carbonflow.center.store import Store

    url = settings(args).database_url
    return Store.open(url), url


def run_correct(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.store import CorrectionError, add_correction, record_audit

    start = parse_time(args.start, "--from")
    end = parse_time(args.end, "--to") if args.end else start if args.kind == "reading" else None
    if end is None:
        raise CommandInputError(f"{args.kind} correction: give --to (the end of the corrected period)")
    store, _url = _open(args, settings)
    try:
        correction = add_correction(
            store, args.kind, args.element, start, end, args.value, reason=args.reason, actor="cli"
        )
        record_audit(store, "cli", "correction.add", str(correction.id), correction.as_dict())
    except CorrectionError as error:
        raise CommandInputError(str(error)) from None
    finally:
        store.close()
    print(f"correction {correction.id}: {correction.kind} {correction.element_id or ''} = {correction.value} "
          f"for ({correction.start_ts.isoformat()}, {correction.end_ts.isoformat()}]; run "
          "`carbonflow center recompute` over the period to apply it")  # fmt: skip
    return 0


def _spans(skipped: list[dict[str, Any]], interval_s: int) -> list[str]:
    """Consecutive skipped intervals with one reason as one line."""
    lines, run = [], None
    for item in skipped:
        ts = datetime.fromisoformat(item["ts"])
        if run and run[2] == item["reason"] and (ts - run[1]).total_seconds() == interval_s:
            run[1], run[3] = ts, run[3] + 1
            continue
        if run:
            lines.append(run)
        run = [ts, ts, item["reason"], 1]
    if run:
        lines.append(run)
    return [
        f"  {first.isoformat()}" + (f" .. {last.isoformat()} ({n} intervals)" if n > 1 else "") + f": {why}"
        for first, last, why, n in lines
    ]


def run_recompute(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.metering.recompute import RecomputeError, recompute
    from carbonflow.center.store import record_audit

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if args.workers < 1:
        raise CommandInputError("--workers: at least 1")
    store, url = _open(args, settings)
    options: dict[str, Any] = {"chunk_intervals": args.chunk} if args.chunk else {}
    try:
        report = recompute(
            store, url, start, end, reason=args.reason, actor="cli", level=args.level,
            interval_s=args.interval_s, workers=args.workers, dask_address=args.dask,
            everything=args.everything, **options,
        )  # fmt: skip
    except RecomputeError as error:
        raise CommandInputError(str(error)) from None
    info = report.version
    try:
        if not report.created and report.chunks_written == 0:
            print(f"version {info.version} already holds these inputs for this range: no new version")
        else:
            record_audit(
                store, "cli", "results.recompute", str(info.version), info.as_dict() | _text_times(info)
            )
            rate = report.intervals + report.unchanged
            print(
                f"version {info.version}: {report.intervals} intervals recomputed and stored, "
                f"{report.unchanged} unchanged, {len(report.skipped)} not recomputed; "
                f"{report.chunks_written}/{report.chunks_total} chunks in {report.seconds:.1f} s "
                f"({rate / report.seconds if report.seconds else 0:.0f} intervals/s, {info.runner})"
            )
    finally:
        store.close()
    if report.skipped:
        print(
            f"{len(report.skipped)} intervals could not be recomputed (left as they were):", file=sys.stderr
        )
        print("\n".join(_spans(report.skipped, info.interval_s)), file=sys.stderr)
        return 1
    return 0


def _text_times(info) -> dict[str, Any]:
    return {k: v.isoformat() for k, v in info.as_dict().items() if isinstance(v, datetime)}


def run_versions(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.store import list_versions

    store, _url = _open(args, settings)
    try:
        versions = list_versions(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps([v.as_dict() | _text_times(v) for v in versions], indent=2))
        return 0
    print("version 0: the results as metered")
    for v in versions:
        print(f"version {v.version}: ({v.start.isoformat()}, {v.end.isoformat()}] {v.status}, "
              f"{'?' if v.intervals is None else v.intervals} intervals, {len(v.skipped)} not recomputed, "
              f"corrections {v.corrections or '-'}; {v.reason or ''}")  # fmt: skip
    return 0


def version_range(store, a: int, b: int, start: datetime | None, end: datetime | None):
    """The diff's range: the one given, else the union of the ranges of the versions compared."""
    from carbonflow.center.store import get_version

    infos = []
    for number in {a, b} - {0}:
        info = get_version(store, number)
        if info is None:
            raise LookupError(f"no version {number}")
        infos.append(info)
    if start is None or end is None:
        if not infos:
            raise ValueError("comparing version 0 with itself: give --from and --to")
        start = start or min(i.start for i in infos)
        end = end or max(i.end for i in infos)
    return start, end


def run_diff(args: argparse.Namespace, settings) -> int:
    from carbonflow.center.store import diff_versions

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    store, _url = _open(args, settings)
    try:
        try:
            start, end = version_range(store, args.a, args.b, start, end)
        except (LookupError, ValueError) as error:
            raise CommandInputError(str(error).strip("'\"")) from None
        diff = diff_versions(store, args.a, args.b, start, end, args.level)
    finally:
        store.close()
    if args.json:
        print(json.dumps(diff, default=lambda v: v.isoformat(), indent=2))
        return 0
    print(f"version {args.b} against {args.a}, intervals ending in ({start.isoformat()}, {end.isoformat()}]: "
          f"{diff['changed_intervals']} of {diff['intervals']} intervals differ")  # fmt: skip
    for name, values in diff["totals"].items():
        print(f"  {name}: {values['a']:.3f} -> {values['b']:.3f} ({values['delta']:+.3f})")
    for section in ("buses", "users"):
        changed = [r for r in diff[section] if r["delta_carbon_kg"]]
        changed.sort(key=lambda r: -abs(r["delta_carbon_kg"]))
        print(f"{section}: {len(changed)} changed" + (", largest:" if changed else ""))
        for row in changed[: args.top]:
            name = f"{row['id']} ({row['user_name']})" if row.get("user_name") else row["id"]
            ia, ib = row["intensity_g_per_kwh_a"], row["intensity_g_per_kwh_b"]
            shift = f", {ia:.3f} -> {ib:.3f} g/kWh" if ia is not None and ib is not None else ""
            print(f"  {name}: {row['carbon_kg_a']:.3f} -> {row['carbon_kg_b']:.3f} kg "
                  f"({row['delta_carbon_kg']:+.3f}){shift}")  # fmt: skip
    return 0

"""``carbonflow report`` — build a carbon report from a center's database into a file.

``carbonflow report --period month --start 2026-12 --format xlsx --out dec.xlsx [--database URL]
[--region AH/HF | --industry steel | --plant P01 | --user U01]``.  The report is also recorded in the
database (``reports`` table, with its data version) unless ``--no-record``.
"""

from __future__ import annotations

import argparse

from carbonflow.commands import CommandInputError, output_file, write_atomically


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="build a daily, monthly or annual carbon report (CSV, XLSX or PDF) from a center's database",
        description="Carbon report of one local calendar period: generation, grid and consumption sides.",
    )
    parser.add_argument("--period", required=True, choices=("day", "month", "year"))
    parser.add_argument("--start", required=True, help="2026-12-01 (day), 2026-12 (month), 2026 (year)")
    parser.add_argument("--format", default=None, choices=("csv", "xlsx", "pdf"), help="default: from --out")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--database", metavar="URL", help="sqlite:///FILE or postgresql+psycopg://...")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--region", metavar="PATH")
    scope.add_argument("--industry")
    scope.add_argument("--plant")
    scope.add_argument("--user", metavar="LOAD_ID")
    parser.add_argument("--no-record", action="store_true", help="do not record the report in the database")
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from carbonflow.center.reports.build import ReportInputError, build_report
    from carbonflow.center.reports.render import FORMATS, render
    from carbonflow.center.reports.service import make_report, report_directory
    from carbonflow.center.store import Store
    from carbonflow.commands.center import _settings

    out, format = output_file(args.out, args.format, FORMATS)
    kind, value = next(
        ((k, getattr(args, k)) for k in ("region", "industry", "plant", "user") if getattr(args, k)),
        ("all", None),
    )
    settings = _settings(args)
    store = Store.open(settings.database_url)
    try:
        if args.no_record:
            report = build_report(
                store,
                args.period,
                args.start,
                time_zone=settings.time_zone,
                scope_kind=kind,
                scope_value=value,
            )
            data = render(report, format)
        else:
            directory = report_directory(settings)
            row, report = make_report(
                store,
                directory,
                args.period,
                args.start,
                format,
                time_zone=settings.time_zone,
                scope_kind=kind,
                scope_value=value,
                actor="cli",
            )
            data = (directory / row["file_name"]).read_bytes()
    except ReportInputError as error:
        raise CommandInputError(f"--{error.field}: {error.message}") from None
    finally:
        store.close()
    write_atomically(out, data)
    state = "EMPTY (no metered data in the period)" if report.empty else f"{report.intervals} intervals"
    print(f"{out}: {args.period} {args.start} {format}, {state}, data version {report.data_version}")
    return 0

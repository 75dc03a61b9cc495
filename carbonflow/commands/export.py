"""``carbonflow export`` — carbon data out of a center's database for the systems that consume it
(docs/interop.md):

``carbonflow export enterprise --period month --start 2026-12 --out u.xlsx [--user U01 ...]
[--region AH/HF] [--contracts FILE] [--database URL]`` — per user: energy, location- and market-based
Scope 2 emissions, origin by fuel;
``carbonflow export quota --period year --start 2026 --out q.parquet [--region-depth 2] [--region P]``
— monthly and annual totals per region, industry and region × industry.
The format follows ``--out``'s suffix (json, csv, xlsx, parquet) unless ``--format`` names it.
"""

from __future__ import annotations

import argparse

from carbonflow.commands import CommandInputError, output_file, write_atomically

FORMATS = ("json", "csv", "xlsx", "parquet")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export carbon data for enterprise carbon accounting (per user) or quota work (totals)",
        description="Carbon data out to enterprise carbon accounting and quota allocation.",
    )
    kinds = parser.add_subparsers(dest="export_kind", required=True, metavar="enterprise|quota")
    enterprise = kinds.add_parser("enterprise", help="per user: energy, Scope 2 emissions, origin by fuel")
    enterprise.add_argument("--period", required=True, choices=("day", "month", "year"))
    enterprise.add_argument("--start", required=True, help="2026-12-01 (day), 2026-12 (month), 2026 (year)")
    enterprise.add_argument("--user", action="append", metavar="LOAD_ID", help="repeat; default: every user")
    enterprise.add_argument("--contracts", metavar="FILE", help="green contracts TOML (default: settings)")
    quota = kinds.add_parser("quota", help="monthly and annual totals per region and industry")
    quota.add_argument("--period", required=True, choices=("month", "year"))
    quota.add_argument("--start", required=True, help="2026-12 (month), 2026 (year)")
    quota.add_argument("--region-depth", type=int, default=2, choices=(1, 2, 3))
    for sub in (enterprise, quota):
        sub.add_argument("--out", required=True, help="the file to write")
        sub.add_argument("--format", choices=FORMATS, help="default: from --out's suffix")
        sub.add_argument("--region", metavar="PATH", default="", help="only the users inside this region")
        sub.add_argument("--database", metavar="URL", help="sqlite:///FILE or postgresql+psycopg://...")
        sub.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from carbonflow.center.reports.build import ReportInputError
    from carbonflow.center.reports.contracts import ContractsError, load_contracts
    from carbonflow.center.reports.enterprise import enterprise_export, flat_rows
    from carbonflow.center.reports.quota import QUOTA_COLUMNS, quota_export
    from carbonflow.center.reports.tabular import write_table
    from carbonflow.center.store import Store, load_directory
    from carbonflow.commands.center import _settings

    out, format = output_file(args.out, args.format, FORMATS)
    settings = _settings(args)
    store = Store.open(settings.database_url)
    try:
        if args.export_kind == "enterprise":
            users = {u["id"] for u in load_directory(store)}
            contracts = load_contracts(args.contracts or settings.green_contracts_file, users)
            export = enterprise_export(
                store,
                args.period,
                args.start,
                time_zone=settings.time_zone,
                users=args.user,
                region=args.region,
                contracts=contracts,
            )
            columns, rows = ([], export.users) if format == "json" else flat_rows(export)
            data = write_table(format, columns, rows, export.metadata(), title="users")
            count = f"{len(export.users)} users"
        else:
            export = quota_export(
                store,
                args.period,
                args.start,
                time_zone=settings.time_zone,
                region_depth=args.region_depth,
                region=args.region,
            )
            data = write_table(format, QUOTA_COLUMNS, export.rows, export.metadata(), title="totals")
            count = f"{len(export.rows)} rows"
    except ReportInputError as error:
        raise CommandInputError(f"--{error.field.replace('_', '-')}: {error.message}") from None
    except ContractsError as error:
        raise CommandInputError(f"--contracts: {error}") from None
    finally:
        store.close()
    write_atomically(out, data)
    state = f"{export.intervals} intervals" if export.intervals else "EMPTY (no metered data in the period)"
    what = f"{args.export_kind} {args.period} {args.start} {format}"
    print(f"{out}: {what}, {count}, {state}, data version {export.data_version}")
    return 0

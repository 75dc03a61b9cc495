"""``carbonflow certs init DIR`` — a local CA and the certificates of the center, the MQTT broker and
each collector (docs/tls.md).  The work is :mod:`carbonflow.delivery.certs`; this is the CLI edge."""

from __future__ import annotations

import argparse

from carbonflow.commands import CommandInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="make a local CA and TLS certificates for the center, the MQTT broker and collectors",
        description="TLS certificates for carbonflow's links (docs/tls.md).",
    )
    actions = parser.add_subparsers(dest="certs_command", required=True, metavar="CERTS_COMMAND")
    init = actions.add_parser(
        "init",
        help="create ca.pem/ca.key, center.pem/.key, broker.pem/.key and collectors/ID.pem/.key in DIR",
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument(
        "--hosts",
        default="127.0.0.1,localhost",
        help="comma-separated names and IP addresses of the center and the broker (their certificates' SANs)",
    )
    init.add_argument(
        "--collectors", default="", help="comma-separated collector ids: one client certificate each"
    )
    init.add_argument(
        "--days", type=int, default=None, help="validity of the issued certificates, days (825)"
    )
    init.add_argument(
        "--force", action="store_true", help="replace existing files (a new CA: reissue everything)"
    )
    init.set_defaults(run=run_init)
    more = actions.add_parser(
        "collector", help="client certificates for more collectors, from the CA already in DIR"
    )
    more.add_argument("directory", metavar="DIR")
    more.add_argument("collectors", metavar="ID", nargs="+", help="collector ids (each its certificate's CN)")
    more.add_argument("--days", type=int, default=None, help="validity of the certificates, days (825)")
    more.add_argument("--force", action="store_true", help="replace a collector's existing certificate")
    more.set_defaults(run=run_collector)


def run_init(args: argparse.Namespace) -> int:
    from carbonflow.delivery.certs import (
        DEFAULT_VALID_DAYS,
        CertError,
        init_certs,
        parse_collectors,
        parse_hosts,
    )

    try:
        hosts = parse_hosts(args.hosts)
        collectors = parse_collectors(args.collectors)
        valid_days = DEFAULT_VALID_DAYS if args.days is None else args.days
        issued = init_certs(args.directory, hosts, collectors, valid_days=valid_days, force=args.force)
    except CertError as error:
        raise CommandInputError(str(error)) from None
    except OSError as error:  # a directory we may not write, a full disk
        raise CommandInputError(
            f"{error.filename or args.directory}: {(error.strerror or str(error)).lower()}"
        ) from None
    print(
        f"certificates in {issued.directory}: CA ca.pem, center and broker for {', '.join(hosts)}"
        + (f", collectors {', '.join(collectors)}" if collectors else "")
        + f"; {len(issued.written)} files (keys 0600)"
    )
    return 0


def run_collector(args: argparse.Namespace) -> int:
    from carbonflow.delivery.certs import DEFAULT_VALID_DAYS, CertError, add_collectors, parse_collectors

    try:
        collectors = parse_collectors(",".join(args.collectors), "collector id")
        issued = add_collectors(
            args.directory,
            collectors,
            valid_days=DEFAULT_VALID_DAYS if args.days is None else args.days,
            force=args.force,
        )
    except CertError as error:
        raise CommandInputError(str(error)) from None
    except OSError as error:
        where = error.filename or args.directory
        raise CommandInputError(f"{where}: {(error.strerror or str(error)).lower()}") from None
    print(f"collector certificates in {issued.directory / 'collectors'}: {', '.join(collectors)} (keys 0600)")
    return 0

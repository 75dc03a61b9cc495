"""``carbonflow center serve|load|user|secrets|rotate-secret`` — run and administer a center.

Settings come from the environment (``CARBONFLOW_*``, see docs/configuration.md); options given here
override them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from carbonflow.commands import CommandInputError
from carbonflow.commands.center_recompute import register_actions as register_recompute_actions
from carbonflow.commands.center_secrets import register_actions as register_secret_actions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "center",
        help="run a monitoring management center (API, web UI, ingest, metering) and administer it",
        description="Monitoring management center: serve it, load its topology and devices, add users.",
    )
    actions = parser.add_subparsers(dest="center_command", required=True, metavar="CENTER_COMMAND")
    serve = actions.add_parser("serve", help="serve the API and web UI; ingest; meter every interval")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--database", metavar="URL", help="sqlite:///FILE or postgresql+psycopg://...")
    serve.add_argument("--mqtt", metavar="URL", help="subscribe to collectors on this broker")
    serve.add_argument("--metering-interval", type=int, metavar="S", help="meter every S seconds (e.g. 900)")
    serve.set_defaults(run=run_serve)

    load = actions.add_parser("load", help="load the grid topology and a collector's devices into the store")
    load.add_argument("--database", metavar="URL")
    load.add_argument("--grid", required=True, help="grid document (carbonflow sim grid --export X.cf.json)")
    load.add_argument("--device-map", help="device map JSON (carbonflow sim grid --device-map X.json)")
    load.add_argument("--collector", help="the collector that reads these devices")
    load.add_argument("--secret-file", help="the collector's shared secret (HMAC key), one line")
    load.set_defaults(run=run_load)

    user = actions.add_parser(
        "user",
        help="create a user, or change one's role, region, password or state (password: stdin or prompt)",
    )
    user.add_argument("name")
    user.add_argument("--role", choices=("admin", "operator", "analyst", "auditor", "viewer"))
    user.add_argument("--region", metavar="PATH", help='region prefix the user sees and commands ("" = all)')
    user.add_argument("--password", action="store_true", help="set a new password (an existing user)")
    state = user.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="refuse logins and end the user's sessions")
    state.add_argument("--enable", action="store_true")
    user.add_argument("--database", metavar="URL")
    user.set_defaults(run=run_user)
    register_secret_actions(actions, _settings)
    register_recompute_actions(actions, _settings)


def _settings(args: argparse.Namespace, **overrides: Any):
    from carbonflow.center.api.settings import CenterSettings, SettingsError

    values = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "database", None):
        values["database_url"] = args.database
    try:  # options validated with the environment's values: an --mqtt mqtt:// with an MQTT CA file is refused
        return CenterSettings.from_env(**values)
    except SettingsError as error:  # one line, exit 2, like any other bad input
        raise CommandInputError(str(error)) from None


def _json_file(path: str, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandInputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CommandInputError(f"{path}: not a JSON {what} ({error})") from None
    if not isinstance(data, dict):
        raise CommandInputError(f"{path}: a {what} must be a JSON object")
    return data


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from carbonflow.center.api.app import create_app
    from carbonflow.center.api.serving import CenterServer
    from carbonflow.center.cascade.split import CascadeError
    from carbonflow.center.crossregion.config import TieError
    from carbonflow.center.store.sealing import SECRETS_KEY_ENV, SecretsKeyError, sealing_configured
    from carbonflow.delivery.tls import TlsError

    settings = _settings(args, mqtt_url=args.mqtt, metering_interval_s=args.metering_interval)
    try:  # bad TLS files: one line before anything starts, not a traceback from inside uvicorn
        ssl_options = settings.uvicorn_ssl()
        settings.mqtt_tls_context()
    except TlsError as error:
        raise CommandInputError(str(error)) from None
    try:  # a malformed or unreadable secrets key: one line now, not 500s at the first collector message
        sealed = sealing_configured()
    except SecretsKeyError as error:
        raise CommandInputError(str(error)) from None
    scheme = "https" if ssl_options else "http"
    print(
        f"carbonflow center on {scheme}://{args.host}:{args.port}; database {settings.database_url}; "
        f"ingest HTTP{' + MQTT ' + settings.mqtt_url if settings.mqtt_url else ''}; metering "
        f"{'every ' + str(settings.metering_interval_s) + ' s' if settings.metering_interval_s else 'off'}",
        flush=True,
    )
    try:  # a bad cascade or ties file, a tie that is not in the topology: one line
        app = create_app(settings)
    except (CascadeError, TieError) as error:
        raise CommandInputError(str(error)) from None
    if not sealed:  # after every check: a refused start says one line, the error
        print(
            f"carbonflow center: warning: {SECRETS_KEY_ENV} is not set: collector secrets are stored "
            "in clear (docs/security.md#secrets-at-rest-and-key-rotation)",
            file=sys.stderr,
            flush=True,
        )
    server = CenterServer(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", **ssl_options)
    )
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's own exit code for a server that could not start


def run_load(args: argparse.Namespace) -> int:
    from carbonflow.center.store import Store, register_devices, upsert_collector, upsert_topology
    from carbonflow.center.topology import topology_rows

    grid = _json_file(args.grid, "grid document")
    device_map = _json_file(args.device_map, "device map") if args.device_map else None
    if device_map is not None and not args.collector:
        raise CommandInputError("--device-map needs --collector (the collector that reads the devices)")
    secret = None
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise CommandInputError(f"{args.secret_file}: no such file") from None
        if not secret:
            raise CommandInputError(f"{args.secret_file}: the secret is empty")
    try:
        rows = topology_rows(grid)
    except (KeyError, TypeError, ValueError) as error:
        raise CommandInputError(f"{args.grid}: not a grid document (missing or bad field {error})") from None
    store = Store.open(_settings(args).database_url)
    try:
        counts = upsert_topology(store, rows)
        if args.collector:
            if secret is None:
                raise CommandInputError("--collector needs --secret-file (the collector's HMAC key)")
            upsert_collector(store, args.collector, secret)
        devices = points = 0
        if device_map is not None:
            try:
                devices, points = register_devices(
                    store, device_map.get("devices", []), collector_id=args.collector
                )
            except (KeyError, TypeError, ValueError) as error:
                raise CommandInputError(f"{args.device_map}: bad device record ({error})") from None
    finally:
        store.close()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    print(f"loaded {summary}; {devices} devices with {points} points")
    return 0


def _read_password() -> str:
    password = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 8:
        raise CommandInputError("the password must have at least 8 characters")
    return password


def run_user(args: argparse.Namespace) -> int:
    from carbonflow.center.store import Store, get_user, record_audit
    from carbonflow.center.store.users import create_user, update_user

    store = Store.open(_settings(args).database_url)
    try:
        existing = get_user(store, args.name)
        if existing is None:
            if args.disable or args.enable:
                raise CommandInputError(f"user {args.name!r}: no such user to enable or disable")
            user = create_user(store, args.name, _read_password(), args.role or "operator", args.region or "")
            action = "user.create"
        else:
            changes = {"role": args.role, "region": args.region}
            if args.disable or args.enable:
                changes["disabled"] = bool(args.disable)
            if args.password or all(value is None for value in changes.values()):
                changes["password"] = _read_password()  # no other change asked: a password reset
            user = update_user(store, args.name, **changes)
            action = "user.update"
        record_audit(store, "cli", action, args.name, {"role": user.role, "region": user.region})
    except ValueError as error:
        raise CommandInputError(f"user {args.name!r}: {error}") from None
    finally:
        store.close()
    state = "disabled" if user.disabled else "enabled"
    print(f"user {user.name} ({user.role}, region {user.region or 'all'}, {state}) saved")
    return 0

"""`carbonflow demo` (contract C6): the whole chain on one machine.

The 104-node reference grid is simulated (AC power flow every interval); its 177 field devices serve
the real protocols on localhost; a collector polls them and forwards signed batches to a monitoring
management center (SQLite by default, or PostgreSQL; HTTP by default, or MQTT); the center meters every
interval from the stored readings, stores the results, queues each consumer's electric-carbon meter
factor for download, and serves the REST API and web UI.

Everything runs on the simulation's accelerated clock: devices show simulated time and the collector
time-stamps readings with it, so the center's intervals line up with the simulator's.  Data lives in
``--dir`` and survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from carbonflow.center.api.app import create_app
from carbonflow.center.api.serving import CenterServer
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.metering.loop import MeteringLoop
from carbonflow.center.metering.service import IntervalOutcome, MeteringService
from carbonflow.center.store import (
    Store,
    latest_interval_ts,
    latest_reading_ts,
    new_secrets_key,
    register_devices,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.store.sealing import SECRETS_KEY_ENV, SECRETS_KEY_FILE_ENV
from carbonflow.center.store.users import create_user
from carbonflow.center.topology import topology_rows
from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.outbox import Outbox
from carbonflow.collector.service import Collector
from carbonflow.delivery.certs import IssuedCerts, ensure_certs
from carbonflow.sim.cameras import add_cameras
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.errors import SimulationError
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.scenarios import Scenario, ScenarioSimulation
from carbonflow.sim.serve import DeviceFarm, SimClock, TruthDriver
from carbonflow.sim.timeseries import SimConfig
from carbonflow.sim.truth import TruthFeed

COLLECTOR_ID = "demo-collector"
TOTALS = ("generation_carbon_t_per_h", "load_carbon_t_per_h", "loss_carbon_t_per_h")
log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    directory: Path = Path("carbonflow-demo")
    host: str = "127.0.0.1"
    port: int = 8080
    interval_s: int = 60
    speed: float = 10.0
    hours: float = 24.0
    seed: int = 0
    database_url: str | None = None  # default: SQLite in the directory
    mqtt_url: str | None = None  # default: HTTP ingest
    password: str | None = None  # default: generated once and kept in the directory
    max_intervals: int | None = None  # stop after metering this many intervals (tests)
    scenario: Path | None = None  # simulator fault scenario (JSON/TOML events, times from the start)
    cascade: bool = False  # province + cities + counties, own centers (demo_cascade.py); the CLI's default
    tls: bool = False  # HTTPS (and mqtts) with a local CA made in <directory>/tls (docs/tls.md)


@dataclass(frozen=True)
class TruthCheck:
    """Metered nodal intensities against the simulator's truth of the same interval."""

    ts: datetime
    buses: int
    median_abs_g_per_kwh: float
    max_abs_g_per_kwh: float
    worst_bus: str
    inside_band: int = 0  # buses whose truth lies within the metered value ± its uncertainty band
    widest_band_share: float = 0.0  # the widest band as a share of its intensity
    totals_error_share: float = 0.0  # the largest of generation, load, loss carbon off the truth, as a share


@dataclass
class DemoReport:
    url: str
    user: str
    password: str
    intervals_metered: int = 0
    intervals_skipped: int = 0
    intervals_remetered: int = 0
    factors_queued: int = 0
    truth_checks: list[TruthCheck] = field(default_factory=list)
    alarms_raised: int = 0
    alarms_cleared: int = 0
    start: datetime | None = None  # simulated start (scenario times count from it)
    cascade_checks: list[Any] = field(default_factory=list)  # demo_cascade.CascadeCheck per interval


def compare_with_truth(
    metered: dict[str, float | None],
    truth: Any,
    bands: dict[str, float | None] | None = None,
    totals: dict[str, float] | None = None,
) -> TruthCheck:
    true_values = {b["id"]: b["intensity_g_per_kwh"] for b in truth.result_document()["buses"]}
    bands = bands or {}
    gaps = sorted(
        (abs(value - true_values[bus]), bus)
        for bus, value in metered.items()
        if value is not None and true_values.get(bus) is not None
    )
    if not gaps:
        return TruthCheck(truth.ts, 0, float("nan"), float("nan"), "-")
    inside = sum(1 for gap, bus in gaps if gap <= (bands.get(bus) or 0.0) + 1e-9)
    widths = [(bands.get(bus) or 0.0) / value for bus, value in metered.items() if value and bus in bands]
    median, (worst, worst_bus) = gaps[len(gaps) // 2][0], gaps[-1]
    true_totals = truth.totals() if totals else {}
    shares = [abs(totals[k] - true_totals[k]) / true_totals[k] for k in TOTALS if true_totals.get(k)]
    totals_share = max(shares, default=0.0)
    return TruthCheck(
        truth.ts, len(gaps), median, worst, worst_bus, inside, max(widths, default=0.0), totals_share
    )


def _secret(path: Path, length: int = 16) -> str:
    """A secret kept in a file of the demo directory (created on the first run)."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(length)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return value


def _seal_secrets_at_rest(key_file: Path) -> None:
    """Collector secrets sealed in the demo's database under a key kept beside it (created on the first
    run), unless the environment already names a key (docs/security.md#collector-secrets)."""
    if os.environ.get(SECRETS_KEY_ENV) or os.environ.get(SECRETS_KEY_FILE_ENV):
        return
    if not key_file.exists():
        key_file.write_text(new_secrets_key() + "\n", encoding="ascii")
        key_file.chmod(0o600)
    os.environ[SECRETS_KEY_FILE_ENV] = str(key_file.resolve())


def _aligned_now(interval_s: int) -> datetime:
    now = datetime.now(UTC)
    seconds = int(now.timestamp()) // interval_s * interval_s
    return datetime.fromtimestamp(seconds, UTC)


def _start_after_stored_data(store: Store, interval_s: int, outbox_path: Path) -> datetime:
    """Now, or — when an earlier (accelerated) run left data in the future — the first interval after
    everything it left: stored readings and intervals, and readings still queued in the collector's
    outbox (delivered after the restart, they must land in the first run's intervals, never in this
    run's: readings of two runs are never mixed)."""
    latest = [latest_interval_ts(store), latest_reading_ts(store)]
    if outbox_path.exists():
        outbox = Outbox(outbox_path)
        try:
            latest.append(outbox.latest_reading_ts())
        finally:
            outbox.close()
    start = _aligned_now(interval_s)
    known = [t for t in latest if t is not None]
    if known:
        resume = datetime.fromtimestamp(int(max(known).timestamp()) // interval_s * interval_s, UTC)
        start = max(start, resume + timedelta(seconds=interval_s))
    return start


async def run_demo(
    options: DemoOptions,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    keep_feed: Callable[[TruthFeed], None] | None = None,
) -> DemoReport:
    """``keep_feed`` receives the simulator's truth feed (benchmarks compare with it afterwards)."""
    options.directory.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    database_url = options.database_url or f"sqlite:///{(options.directory / 'center.db').resolve()}"
    password = options.password or _secret(options.directory / "admin.password")
    collector_secret = _secret(options.directory / "collector.secret", 24)
    _seal_secrets_at_rest(options.directory / "secrets.key")

    say("building the 104-node reference grid and its time series ...")
    net = reference_grid()
    grid = grid_document(net)
    device_map = build_device_map(net, host=options.host, freeze_period_s=options.interval_s)
    add_cameras(device_map, net)  # a site camera at every plant's metering point
    store = Store.open(database_url)
    start = _start_after_stored_data(store, options.interval_s, options.directory / "outbox.sqlite")
    count = max(1, int(options.hours * 3600 / options.interval_s))
    scenario = Scenario.load(options.scenario, start) if options.scenario else None
    simulation = ScenarioSimulation(
        net, SimConfig(start=start, interval_s=options.interval_s, count=count, seed=options.seed), scenario
    )
    upsert_topology(store, topology_rows(grid))
    upsert_collector(store, COLLECTOR_ID, collector_secret, name="demo collector")
    create_user(store, "admin", password, "admin")

    feed = TruthFeed(keep=max(64, int(4 * 3600 / options.interval_s)))
    if keep_feed is not None:
        keep_feed(feed)
    clock = SimClock(start, options.speed)
    driver = TruthDriver(simulation, feed, clock, scenario=scenario, on_line=say if scenario else None)
    driver.publish_until(start + timedelta(seconds=driver.lookahead_s))
    farm = DeviceFarm(device_map, feed, clock.now, scenario)
    driver.devices = [d for d in farm.devices.values() if d.events]  # scenario baselines (stuck, drift)
    # the center's port bound before the devices take free ports: one of them can never be the center's
    center_socket = _listen(options.host, options.port)
    try:
        served_map = await farm.start(options.host, 0)  # free ports: never clash with what else runs here
    except BaseException:
        center_socket.close()
        raise
    register_devices(store, served_map["devices"], collector_id=COLLECTOR_ID)

    tls = _demo_certs(options)
    settings = CenterSettings(  # the demo meters on its own simulated clock, never the wall clock's loop
        database_url=database_url,
        mqtt_url=options.mqtt_url,
        image_dir=str(options.directory / "images"),
        audit_key_file=str(options.directory / "audit.key"),  # the checkpoints' key, kept with the data
        metering_interval_s=0,
        alarm_tick_s=max(0.5, options.interval_s / options.speed / 4),  # time-based rules: 4 per interval
        **_center_tls(tls, options.mqtt_url),
    )
    cascade = _cascade(options, grid, store, clock.now, password, say, tls)
    app = create_app(settings, store=store, cascade=None if cascade is None else cascade.province)
    alarms = app.state.alarms  # evaluated on the simulated clock, as each interval is metered
    alarms.clock, alarms.interval_s = clock.now, options.interval_s
    app.state.clock = clock.now  # the overview's "now": how old the latest interval is, whether data is late
    config = uvicorn.Config(
        app, host=options.host, port=options.port, log_level="warning", **settings.uvicorn_ssl()
    )
    server = _Server(config)
    server_task = asyncio.create_task(server.serve(sockets=[center_socket]), name="center-api")
    while not server.started and not server_task.done():
        await asyncio.sleep(0.05)
    if server_task.done():
        await farm.stop()
        store.close()
        server_task.result()  # raises: the port is taken, ...
    url = f"{'https' if tls else 'http'}://{options.host}:{options.port}"

    poll_s = max(0.5, options.interval_s / options.speed / 3)
    config_data = config_from_device_map(
        served_map,
        collector_id=COLLECTOR_ID,
        center_url=options.mqtt_url or url,
        secret_file=str((options.directory / "collector.secret").resolve()),
        outbox_path=str((options.directory / "outbox.sqlite").resolve()),
        period_s=poll_s,
    )
    config_data["center"]["command_poll_s"] = max(0.5, poll_s)
    if tls is not None and urlsplit(config_data["center"]["url"]).scheme in ("https", "mqtts"):
        cert, key = tls.collector(COLLECTOR_ID)  # trusts the demo's CA, presents its own certificate
        config_data["center"].update(ca_file=str(tls.ca_file), cert_file=str(cert), key_file=str(key))
    interval_real_s = max(1.0, options.interval_s / options.speed)
    config_data["images"] = {"period_s": max(1.0, interval_real_s / 2)}  # two per interval
    half = max(0.5, interval_real_s / 2)  # device statuses and clock reads twice an interval (alarms)
    config_data["defaults"].update(status_period_s=half, clock_check_s=half)
    # the collector's clock is the simulated one: every latency of the machine is `speed` times longer in
    # it, so the usual 2 s of clock tolerance is 2 x speed simulated seconds
    for device in config_data["devices"]:
        device["clock_tolerance_s"] = 2.0 * max(1.0, options.speed)
        if device["protocol"] == "iec104":  # a point silent for an interval is interrogated (stuck-value)
            device["refresh_s"] = float(options.interval_s)
    collector = Collector(config_from_dict(config_data, "demo collector", options.directory), clock=clock.now)
    report = DemoReport(url=url, user="admin", password=password, start=start)
    metering = MeteringService(store, grid, options.interval_s)
    try:
        if cascade is not None:
            cascade.checks = report.cascade_checks
            say("cascade of centers (each its own store and port; user admin, same password):")
            await cascade.start()
        await collector.start()
        say(
            f"{len(farm.devices)} simulated devices on {len(farm.endpoints)} endpoints; collector polling "
            f"every {poll_s:.1f} s; simulated time runs {options.speed:g}x from {start.isoformat()}"
        )
        say(f"center: {url}  (user admin, password {password}); data in {options.directory}; Ctrl-C stops")
        _stop_on_signals(stop.set if cascade is None else lambda: (stop.set(), cascade.halt()))
        clock.begin()
        driver_task = asyncio.create_task(driver.run(stop), name="simulation")
        loop = MeteringLoop(
            metering,
            now=clock.now,
            speed=options.speed,
            on_outcome=_with_alarms(_reporter(feed, report, say), alarms, report, say),
            max_intervals=options.max_intervals,
        )
        if cascade is not None:
            loop.observers.append(cascade.feed)
        await loop.run(stop)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await driver_task
    finally:
        _stop_on_signals(None)
        await collector.stop(flush=True)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await server_task
        if cascade is not None:
            await cascade.stop()
        await farm.stop()
        store.close()
    return report


def _cascade(options: DemoOptions, grid, store: Store, now, password: str, say, tls: IssuedCerts | None):
    """The cascade of centers the demo's metering feeds (None for the single-center demo, ``--single``)."""
    if not options.cascade:
        return None
    from carbonflow.demo_cascade import CascadeDemo

    return CascadeDemo(
        options.directory / "cascade", options.host, options.port, options.interval_s, grid, store, now,
        password, say, tls=tls,
    )  # fmt: skip


def _demo_certs(options: DemoOptions) -> IssuedCerts | None:
    """``--tls``: the local CA and certificates in ``<directory>/tls`` (kept between runs while they
    name the host, so a browser told to trust ca.pem keeps trusting it)."""
    if not options.tls:
        return None
    hosts = list(dict.fromkeys([options.host, "127.0.0.1", "localhost"]))
    return ensure_certs(options.directory / "tls", hosts, [COLLECTOR_ID])


def _center_tls(tls: IssuedCerts | None, mqtt_url: str | None) -> dict[str, str]:
    """The center's TLS settings: HTTPS with the center's certificate, which is also its identity at an
    mqtts:// broker (configured with deploy/mosquitto and the same CA)."""
    if tls is None:
        return {}
    cert, key = tls.pair("center")
    values = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    if (mqtt_url or "").startswith("mqtts://"):
        values.update(mqtt_ca_file=str(tls.ca_file), mqtt_cert_file=str(cert), mqtt_key_file=str(key))
    return values


def _listen(host: str, port: int) -> socket.socket:
    """The center's listening socket, bound now (uvicorn serves on it); a port in use is one line."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SimulationError(f"--port {port}: cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class _Server(CenterServer):
    """The center's server without signal handlers of its own: one Ctrl-C (SIGINT) or SIGTERM stops the
    whole demo — metering, simulation, collector (its outbox kept), server, devices — not only the
    server while the rest runs on."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _stop_on_signals(stop: Callable[[], object] | None) -> None:
    """SIGINT and SIGTERM call ``stop`` (None: back to the defaults)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            if stop is None:
                loop.remove_signal_handler(sig)
            else:
                loop.add_signal_handler(sig, stop)


def _reporter(
    feed: TruthFeed, report: DemoReport, say: Callable[[str], None]
) -> Callable[[IntervalOutcome], None]:
    """Print each metered interval with its check against the simulator's truth."""

    def on_outcome(outcome: IntervalOutcome) -> None:
        end = outcome.end
        if not outcome.stored:
            report.intervals_skipped += 1
            say(f"{end.isoformat()}  not metered: {outcome.error}")
            return
        if outcome.version > 1:
            report.intervals_remetered += 1
        else:
            report.intervals_metered += 1
        report.factors_queued += outcome.factors_queued
        totals = outcome.totals
        truth = feed.at(end - timedelta(seconds=1))
        if truth.ts != end:  # an interval of an earlier run (its late data came in): no truth to compare
            say(f"{end.isoformat()}  metered again (v{outcome.version}): {outcome.estimates} estimates")
            return
        check = compare_with_truth(outcome.intensities, truth, outcome.bands, outcome.totals)
        report.truth_checks.append(check)
        generation = totals["generation_carbon_t_per_h"]
        residual_share = abs(totals["residual_t_per_h"]) / generation if generation else 0.0
        again = f" (metered again: version {outcome.version})" if outcome.version > 1 else ""
        say(
            f"{end.isoformat()}{again}  generation {generation:.1f} t/h = load "
            f"{totals['load_carbon_t_per_h']:.1f} + loss {totals['loss_carbon_t_per_h']:.2f} (residual "
            f"{totals['residual_t_per_h']:+.2f}, {residual_share:.3%}); {outcome.estimates} estimates, "
            f"{outcome.completeness:.0%} measured\n{' ' * 27}vs simulator truth: median |Δ| "
            f"{check.median_abs_g_per_kwh:.2f} g/kWh, max {check.max_abs_g_per_kwh:.2f} at "
            f"{check.worst_bus}; totals within {check.totals_error_share:.3%}; inside the band at "
            f"{check.inside_band}/{check.buses} buses (band ≤ {check.widest_band_share:.2%})"
        )

    return on_outcome


def _with_alarms(
    reporter: Callable[[IntervalOutcome], None], alarms: Any, report: DemoReport, say: Callable[[str], None]
) -> Callable[[IntervalOutcome], None]:
    """Each metered interval: its line, then the alarm rules over it (alarms raised/cleared printed)."""

    def on_outcome(outcome: IntervalOutcome) -> None:
        reporter(outcome)
        evaluation = alarms.on_interval(outcome)
        report.alarms_raised += len(evaluation.raised)
        report.alarms_cleared += len(evaluation.cleared)
        if evaluation.raised or evaluation.cleared:
            say(f"{' ' * 27}alarms: {len(evaluation.raised)} raised, {len(evaluation.cleared)} cleared")

    return on_outcome


def demo_summary(report: DemoReport) -> dict[str, Any]:
    return {
        "url": report.url,
        "intervals_metered": report.intervals_metered,
        "intervals_skipped": report.intervals_skipped,
        "intervals_remetered": report.intervals_remetered,
        "factors_queued": report.factors_queued,
    }

"""The center's FastAPI application.

``create_app(settings)`` (settings from the environment when omitted) opens and migrates the store from
``settings.database_url`` unless a store is handed in, and — when ``settings.mqtt_url`` is set — runs
the MQTT ingest subscriber for the app's lifetime.  Routes: ``/healthz``; ``POST /api/v1/ingest`` (C4);
the collector command endpoints; the user endpoints (login, users, audit, topology, results, history,
the three sides, devices, readings, live WebSocket) and the web UI at ``/``.  Every route passes
``deps.authorize`` (the role × region table of ``policy.py``; not listed → 403, and an app whose
OpenAPI document names an unlisted operation refuses to start); ``hardening.Hardening`` adds the
security headers and the body-size / JSON-nesting limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from carbonflow.center.alarms import AlarmEngine, Notifier, channels_from_settings
from carbonflow.center.api.audit_writes import AuditWrites
from carbonflow.center.api.deps import authorize
from carbonflow.center.api.errors import error_response, install_error_handlers
from carbonflow.center.api.hardening import Hardening
from carbonflow.center.api.policy import unlisted_operations
from carbonflow.center.api.routes import (
    alarms,
    analysis,
    audit,
    auth,
    cameras,
    collector_admin,
    collectors,
    devices,
    exports,
    history,
    live,
    public,
    reports,
    results,
    topology,
    users,
    versions,
    views,
    web,
)
from carbonflow.center.api.routes import (
    cascade as cascade_routes,
)
from carbonflow.center.api.routes import (
    ties as ties_routes,
)
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.cascade.config import CascadeConfig
from carbonflow.center.cascade.feed import metering_feed
from carbonflow.center.cascade.service import CascadeService
from carbonflow.center.crossregion.config import TiesConfig
from carbonflow.center.crossregion.service import TieService
from carbonflow.center.ingest import http as ingest_http
from carbonflow.center.ingest.grouping import BatchGroups
from carbonflow.center.ingest.mqtt import MqttIngest
from carbonflow.center.maintenance import scheduler_from_settings
from carbonflow.center.metering.loop import MeteringLoop
from carbonflow.center.metering.service import MeteringService
from carbonflow.center.store import ImageStore, Store
from carbonflow.center.store.images import default_image_dir
from carbonflow.center.topology import topology_document


def start_alarm_ticks(engine: AlarmEngine, period_s: float) -> list[asyncio.Task]:
    """The time-based alarm rules (a device silent for N s) every ``period_s``, over current state."""
    if not period_s:
        return []

    async def ticks() -> None:
        while True:
            await asyncio.sleep(period_s)
            await run_in_threadpool(engine.tick)

    return [asyncio.create_task(ticks(), name="alarm ticks")]


def create_app(
    settings: CenterSettings | None = None,
    *,
    store: Store | None = None,
    cascade: CascadeService | None = None,
    ties: TieService | None = None,
) -> FastAPI:
    """``cascade``: this center's place in a cascade of centers (else from ``settings.cascade_config``);
    ``ties``: its tie lines with neighbouring regions (else from ``settings.ties_config``)."""
    settings = settings or CenterSettings.from_env()
    owned = store is None
    store = store or Store.open(settings.database_url)
    mqtt_tls = settings.mqtt_tls_context()  # a bad TLS file: TlsError now, not in the first connection
    if cascade is None and settings.cascade_config:
        cascade = CascadeService.open(store, CascadeConfig.load(settings.cascade_config))
    if ties is None and settings.ties_config:  # a bad file or a tie not in the topology: one line, now
        ties = TieService.open(store, TiesConfig.load(settings.ties_config), topology_document(store))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        subscriber = None
        if settings.mqtt_url:
            subscriber = MqttIngest(
                settings.mqtt_url,
                store,
                client_id=settings.mqtt_client_id,
                topic_prefix=settings.mqtt_topic_prefix,
                images=app.state.images,
                on_status=app.state.alarms.on_status,
                tls_context=mqtt_tls,
            )
            await run_in_threadpool(subscriber.start)
        app.state.mqtt = subscriber
        scheduler = scheduler_from_settings(store, settings)  # command retries, retention, meter checks
        if scheduler is not None:
            scheduler.meter_check_listeners.append(app.state.alarms.on_meter_checks)
            scheduler.start()
        app.state.maintenance = scheduler
        metering = None
        tie_service = ties
        app.state.ties = tie_service
        if settings.metering_interval_s:
            service = MeteringService(
                store,
                await run_in_threadpool(topology_document, store),
                settings.metering_interval_s,
                losses=settings.metering_losses,
            )
            app.state.alarms.interval_s = settings.metering_interval_s
            metering = MeteringLoop(service, on_outcome=app.state.alarms.on_interval)
            if cascade is not None:  # each metered interval (and each new version) goes to the cascade
                metering.observers.append(metering_feed(store, service.topology, cascade.node))
            if tie_service is not None:  # neighbours' intensities in, ours out, re-metering on arrival
                tie_service.attach(metering)
            metering.start()
        app.state.metering = metering
        if cascade is not None:
            await cascade.start()
        if tie_service is not None:  # a refused neighbour document raises an alarm here
            tie_service.link.listeners.append(
                lambda r: app.state.alarms.cascade_verdict(
                    r.neighbour or "?", "mismatch", r.message(), at=r.ts
                )
            )
            await tie_service.start()
        alarm_tasks = [asyncio.create_task(app.state.notifier.run(), name="alarm notifications")]
        alarm_tasks += start_alarm_ticks(app.state.alarms, settings.alarm_tick_s)
        try:
            yield
        finally:
            for task in alarm_tasks:
                task.cancel()
            await asyncio.gather(*alarm_tasks, return_exceptions=True)
            if cascade is not None:
                await cascade.stop()
            if tie_service is not None:
                await tie_service.stop()
            if metering is not None:
                await metering.stop()
            if scheduler is not None:
                await scheduler.stop()
            if subscriber is not None:
                await run_in_threadpool(subscriber.stop)
            if owned:
                store.close()

    app = FastAPI(
        title="carbonflow center", version="0.1.0", lifespan=lifespan, dependencies=[Depends(authorize)]
    )
    app.state.settings = settings
    app.state.store = store
    app.state.batch_groups = BatchGroups(store)  # ingest requests in flight together: one transaction
    # the field's time (the overview's "now": how old the latest interval is); the demo's simulated clock
    app.state.clock = lambda: datetime.now(UTC)
    app.state.cascade = cascade
    app.state.images = ImageStore(  # site-camera images (routes/cameras.py)
        store, settings.image_dir or default_image_dir(settings.database_url), settings.image_retention_days
    )
    channels = channels_from_settings(settings)  # alarms: rules evaluated as intervals are metered
    app.state.alarms = AlarmEngine(store, channels=channels, interval_s=settings.metering_interval_s or 900)
    app.state.notifier = Notifier(store, channels, max_attempts=settings.alarm_notify_max_attempts)
    app.state.images.listeners.append(app.state.alarms.on_image)  # cameras' latest images (alarm state)
    if cascade is not None:  # a verification mismatch with a peer center raises an alarm here
        cascade.node.on_mismatch(
            lambda m: app.state.alarms.cascade_verdict(m.peer, "mismatch", m.message(), at=m.ts)
        )
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz():
        try:
            store.ping()
        except Exception as error:  # the probe's whole point is to report, not to raise
            return error_response(503, "database unavailable", str(error).splitlines()[0])
        return {"status": "ok", "database": store.dialect}

    # C5: POST messages signed by a peer center; views need a user.  First: routes are matched in
    # order, and the cascade's ~40 messages per interval are the busiest route (its paths are fixed,
    # no other route's pattern takes them, so the order changes what is matched first, not what)
    app.include_router(cascade_routes.router)
    app.include_router(ingest_http.router)
    app.include_router(collectors.router)
    app.include_router(collector_admin.router)  # remote maintenance (user + two signed endpoints)
    app.include_router(cameras.ingest_router)  # POST /api/v1/images, signed by the collector
    app.include_router(ties_routes.router)  # POST documents signed by a neighbouring region's center
    # user endpoints (role × region, policy.py)
    routers = (
        *(auth, users, audit, topology, results, history, views, devices, live, cameras, reports, alarms),
        exports,
        analysis,
        versions,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(public.router)  # public disclosure (no login) and publishing releases
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    unguarded = unlisted_operations(app.openapi())
    if unguarded:
        raise RuntimeError(f"operations missing from center/api/policy.py: {', '.join(unguarded)}")
    app.add_middleware(AuditWrites)  # inside Hardening: what it refuses never reached a user's route
    app.add_middleware(
        Hardening, max_body_bytes=settings.max_body_bytes, max_json_depth=settings.max_json_depth
    )
    return app

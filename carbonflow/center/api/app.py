"""The center's FastAPI application.

``create_app(settings)`` (settings from the environment when omitted) opens and migrates the store from
``settings.database_url`` unless a store is handed in, and — when ``settings.mqtt_url`` is set — runs
the MQTT ingest subscriber for the app's lifetime.  Routes: ``/healthz``; ``POST /api/v1/ingest`` (C4);
the collector command endpoints; the user endpoints (login, topology, results, history, the three
sides, devices, readings, live WebSocket — each requires ``deps.require_user``) and the web UI at ``/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from carbonflow.center.alarms import AlarmEngine, Notifier, channels_from_settings
from carbonflow.center.api.errors import error_response, install_error_handlers
from carbonflow.center.api.routes import (
    alarms,
    auth,
    cameras,
    collector_admin,
    collectors,
    devices,
    history,
    live,
    results,
    topology,
    views,
    web,
)
from carbonflow.center.api.settings import CenterSettings
from carbonflow.center.ingest import http as ingest_http
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


def create_app(settings: CenterSettings | None = None, *, store: Store | None = None) -> FastAPI:
    settings = settings or CenterSettings.from_env()
    owned = store is None
    store = store or Store.open(settings.database_url)

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
            )
            await run_in_threadpool(subscriber.start)
        app.state.mqtt = subscriber
        scheduler = scheduler_from_settings(store, settings)  # command retries, retention, meter checks
        if scheduler is not None:
            scheduler.start()
        app.state.maintenance = scheduler
        metering = None
        if settings.metering_interval_s:
            service = MeteringService(
                store,
                await run_in_threadpool(topology_document, store),
                settings.metering_interval_s,
                losses=settings.metering_losses,
            )
            app.state.alarms.interval_s = settings.metering_interval_s
            metering = MeteringLoop(service, on_outcome=app.state.alarms.on_interval)
            metering.start()
        app.state.metering = metering
        alarm_tasks = [asyncio.create_task(app.state.notifier.run(), name="alarm notifications")]
        alarm_tasks += start_alarm_ticks(app.state.alarms, settings.alarm_tick_s)
        try:
            yield
        finally:
            for task in alarm_tasks:
                task.cancel()
            await asyncio.gather(*alarm_tasks, return_exceptions=True)
            if metering is not None:
                await metering.stop()
            if scheduler is not None:
                await scheduler.stop()
            if subscriber is not None:
                await run_in_threadpool(subscriber.stop)
            if owned:
                store.close()

    app = FastAPI(title="carbonflow center", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.images = ImageStore(  # site-camera images (routes/cameras.py)
        store, settings.image_dir or default_image_dir(settings.database_url), settings.image_retention_days
    )
    channels = channels_from_settings(settings)  # alarms: rules evaluated as intervals are metered
    app.state.alarms = AlarmEngine(store, channels=channels, interval_s=settings.metering_interval_s or 900)
    app.state.notifier = Notifier(store, channels, max_attempts=settings.alarm_notify_max_attempts)
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz():
        try:
            store.ping()
        except Exception as error:  # the probe's whole point is to report, not to raise
            return error_response(503, "database unavailable", str(error).splitlines()[0])
        return {"status": "ok", "database": store.dialect}

    app.include_router(ingest_http.router)
    app.include_router(collectors.router)
    app.include_router(collector_admin.router)  # remote maintenance (user + two signed endpoints)
    app.include_router(cameras.ingest_router)  # POST /api/v1/images, signed by the collector
    # user endpoints (login required)
    for module in (auth, topology, results, history, views, devices, live, cameras, alarms):
        app.include_router(module.router)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    return app

"""The center's FastAPI application.

``create_app(settings)`` (settings from the environment when omitted) opens and migrates the store from
``settings.database_url`` unless a store is handed in, and — when ``settings.mqtt_url`` is set — runs
the MQTT ingest subscriber for the app's lifetime.  Routes: ``/healthz``; ``POST /api/v1/ingest`` (C4);
the collector command endpoints; the user endpoints (login, topology, results, history, the three
sides, devices, readings, live WebSocket — each requires ``deps.require_user``) and the web UI at ``/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from carbonflow.center.api.errors import error_response, install_error_handlers
from carbonflow.center.api.routes import (
    auth,
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
from carbonflow.center.store import Store


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
            )
            await run_in_threadpool(subscriber.start)
        app.state.mqtt = subscriber
        try:
            yield
        finally:
            if subscriber is not None:
                await run_in_threadpool(subscriber.stop)
            if owned:
                store.close()

    app = FastAPI(title="carbonflow center", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz():
        def probe() -> None:
            with store.read() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(probe)
        except Exception as error:  # the probe's whole point is to report, not to raise
            return error_response(503, "database unavailable", str(error).splitlines()[0])
        return {"status": "ok", "database": store.dialect}

    app.include_router(ingest_http.router)
    app.include_router(collectors.router)
    for module in (auth, topology, results, history, views, devices, live):  # user endpoints (login required)
        app.include_router(module.router)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    return app

"""The application factory: config, database, ingest service, API and dashboards in one app.

::

    app = create_app(load_config(path))            # what `onedoor central run` serves
    uvicorn.run(app, host="0.0.0.0", port=8080)

The lifespan enters :class:`central.service.CentralService` (migrations, the
MQTT ingest, alarm timer, webhook sender), creates the token table, and starts
the dashboards' :class:`central.web.LiveHub`. ``service=None`` builds a
read-only app over the database (benchmarks, a replica that only serves pages).

Settings that are not (yet) in :class:`central.config.CentralConfig` are read
from the environment here:

    ONEDOOR_CENTRAL_SESSION_SECRET   >= 32 characters; signs dashboard sessions. Without it a
                                     random secret is made per process (sessions end on restart
                                     and do not carry across replicas).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Final

import structlog
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from central import api, api_bookings, api_pushes, api_releases, metrics, web
from central.auth import SessionSigner, TokenStore
from central.config import CentralConfig
from central.context import Central
from central.db import make_engine, migrate, session_factory
from central.errors import ConfigError, RequestError
from central.limits import BodyLimit, HostAllowlist, refusal
from central.service import CentralService
from central.telemetry import make_sink

log = structlog.get_logger(__name__)

SESSION_SECRET_ENV: Final = "ONEDOOR_CENTRAL_SESSION_SECRET"


def session_secret(environ: dict[str, str] | None = None) -> bytes:
    """The session-signing secret from the environment, else a fresh random one."""
    value = (os.environ if environ is None else environ).get(SESSION_SECRET_ENV, "")
    if value:
        secret = value.encode("utf-8")
        if len(secret) < 32:
            raise ConfigError(f"{SESSION_SECRET_ENV} must have at least 32 characters")
        return secret
    log.warning("web.session_secret_random", hint=f"set {SESSION_SECRET_ENV} to keep sessions")
    return secrets.token_bytes(32)


def create_app(
    config: CentralConfig,
    *,
    service: CentralService | None = None,
    with_service: bool = True,
    secret: bytes | None = None,
    live_interval_s: float = web.LIVE_INTERVAL_S,
) -> FastAPI:
    """Build the app. ``service`` defaults to a new :class:`CentralService` unless
    ``with_service`` is false (read-only: no MQTT, no commands, no acknowledgements)."""
    if service is None and with_service:
        service = CentralService(config)
    engine = service.engine if service is not None else make_engine(config.database_url)
    sessions = service.sessions if service is not None else session_factory(engine)
    central = Central(
        config=config,
        sessions=sessions,
        tokens=TokenStore(sessions),
        signer=SessionSigner(secret if secret is not None else session_secret()),
        service=service,
        now=service.clock if service is not None else (lambda: datetime.now(UTC)),
        telemetry=service.sink if service is not None else make_sink(config, sessions),
    )
    hub = web.LiveHub(central.read, interval_s=live_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if service is not None:
                await stack.enter_async_context(service)  # migrates, then connects
            else:
                await run_in_threadpool(migrate, engine)
            if service is None and central.telemetry is not None:  # ours to close
                stack.callback(central.telemetry.close)
            hub.start()
            stack.push_async_callback(hub.stop)
            log.info("central.started", ingest=service is not None)
            yield

    app = FastAPI(
        title="onedoor central",
        summary="一门式政务服务 fleet manager: sites, events, alarms, statistics, commands",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below from the vendored Swagger UI: halls have no Internet
        openapi_url="/openapi.json",
        redoc_url=None,
    )

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="onedoor central API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )

    @app.exception_handler(RequestError)
    async def refused(_request: Request, exc: RequestError) -> JSONResponse:
        return refusal(exc)

    app.state.central = central
    api.install(app)
    api_releases.install(app)
    api_pushes.install(app)
    api_bookings.install(app)
    web.install(app, hub)
    # Before routing and body parsing; inside the request counter, which counts refusals too.
    app.add_middleware(BodyLimit, max_bytes=config.http_max_body_bytes)
    app.add_middleware(HostAllowlist, hosts=config.allowed_hosts,
                       public_hosts=config.progress_hosts)
    metrics.install(app)
    return app


__all__ = ["SESSION_SECRET_ENV", "create_app", "session_secret"]

"""The app factory: `create_app()` builds the Litestar app; connections are made at startup, not import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from control_api.auth import PUBLIC_PATHS, ApiKeyAuthentication
from control_api.chats import ChatsController
from control_api.collections import CollectionsController
from control_api.deadletters import AuditController, DeadLettersController
from control_api.errors import EXCEPTION_HANDLERS
from control_api.health import healthz, readyz
from control_api.jobs import JobsController
from control_api.messaging import OptOutsController, OutboundMessagesController
from control_api.request_id import RequestIdMiddleware
from control_api.schedules import SchedulesController, SequencesController
from control_api.scrapes import ScrapesController
from control_api.webhooks import WhatsAppWebhookController
from core.broker import build_broker, redis_client
from core.jobs import load_job_modules
from core.keys import KeyCache
from core.logs import configure_logging
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Litestar:
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings, process="api")
    load_job_modules(settings)

    @asynccontextmanager
    async def services(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.key_cache = KeyCache(settings.api_key_cache_s)
        app.state.broker = build_broker(settings)
        # Readiness must answer quickly even when Redis hangs, unlike the broker's blocking client.
        app.state.health_redis = redis_client(settings, socket_timeout=2)
        try:
            yield
        finally:
            app.state.broker.client.close()
            app.state.health_redis.close()

    return Litestar(
        route_handlers=[
            JobsController,
            ChatsController,
            CollectionsController,
            ScrapesController,
            DeadLettersController,
            AuditController,
            SchedulesController,
            SequencesController,
            OptOutsController,
            OutboundMessagesController,
            WhatsAppWebhookController,
            healthz,
            readyz,
        ],
        lifespan=[services],
        middleware=[
            RequestIdMiddleware,
            DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Jobyard control API", version="1", path="/schema", description=__doc__
        ),
        # Logging is set up by configure_logging (structlog); Litestar must not install its own.
        logging_config=None,
        on_app_init=[_no_debug],
    )


def _no_debug(config: AppConfig) -> AppConfig:
    # Tracebacks belong in the log, never in a response.
    config.debug = False
    return config

"""The app factory: `create_app()` builds the Litestar app; connections are made at startup, not import."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPluginProtocol, PluginProtocol

from control_api.addresslimit import AddressGate, AddressLimiter
from control_api.assistants import AssistantsController
from control_api.auth import PUBLIC_PATHS, ApiKeyAuthentication, KeyLookups
from control_api.chats import ChatsController
from control_api.collections import CollectionsController
from control_api.dashboard import dashboard_routers, template_config
from control_api.deadletters import AuditController, DeadLettersController
from control_api.errors import EXCEPTION_HANDLERS, ErrorAnswers
from control_api.events import EventsController
from control_api.fanout import Fanout
from control_api.forwarded import ForwardedMiddleware, TrustedProxies
from control_api.headers import add_security_headers
from control_api.health import healthz, readyz
from control_api.jobs import JobsController
from control_api.jobs_bulk import JobsBulkController
from control_api.keys import KeysController
from control_api.lean_enqueue import LeanEnqueue, wants
from control_api.limits import JsonDepthMiddleware
from control_api.messaging import OptOutsController, OutboundMessagesController
from control_api.metrics import PROMETHEUS, metrics
from control_api.openapi import declare_common_responses, openapi_config
from control_api.queues import QueuesController
from control_api.quotas import QueueCap
from control_api.ratelimit import KeyRateLimiter, RateLimitMiddleware, TenantRateLimiter
from control_api.request_id import RequestIdMiddleware
from control_api.schedules import SchedulesController, SequencesController
from control_api.scrapes import ScrapesController
from control_api.stackdump import install as install_stack_dumps
from control_api.tenant_limits import TenantsController
from control_api.tenants import TenantLlmController, TenantWhatsAppController
from control_api.webhook_endpoints import WebhookDeliveriesController, WebhookEndpointsController
from control_api.webhooks import WhatsAppWebhookController
from control_api.workers import WorkersController
from control_api.workflows import WorkflowsController
from core.access.keys import KeyCache, UsageClock
from core.catalog import load_job_types
from core.engine.broker import async_redis_client, build_broker, redis_client
from core.engine.fastenqueue import AsyncEnqueuer
from core.engine.groupcommit import MAX_FLUSHES_IN_FLIGHT, GroupCommit
from core.errors import SettingsError
from core.platform.crypto import use_data_key
from core.platform.heap import settle as settle_heap
from core.platform.logs import configure_logging
from core.platform.redact import Redactor, provider_secrets
from core.platform.sentry import configure_sentry
from core.platform.settings import Settings, get_settings
from core.platform.tracing import configure_tracing


class App(Litestar):
    """Litestar without the integrations it adds only because a package is installed.

    Litestar adds a plugin for pydantic models and one for attrs classes whenever pydantic and attrs
    can be imported (the openai SDK brings pydantic), and imports its OpenTelemetry plugin on every
    start to look for an OpenTelemetry middleware given outside it. The API has no pydantic model and
    no attrs class (its schemas are msgspec Structs and dataclasses), and its tracing comes as that
    plugin itself (``_tracing_plugin``): loading them cost some 11 MiB per API process
    (docs/performance.md#memory). The OpenAPI document is byte for byte the same without them;
    tests/unit/test_lean_imports.py checks that they stay out.
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        from litestar.plugins.core import MsgspecDIPlugin

        return [*plugins, MsgspecDIPlugin()]

    @staticmethod
    def _patch_opentelemetry_middleware(config: AppConfig) -> AppConfig:
        return config

    #: The short path of ``POST /v1/jobs`` (control_api/lean_enqueue.py), when it is on.
    lean: LeanEnqueue | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.lean is not None and wants(scope):
            scope["app"] = scope["litestar_app"] = self
            scope.setdefault("state", {})
            # The full stack's before_send hooks are the short path's own (add_security_headers).
            await self.lean(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_served_app() -> Litestar:
    """What `jobyard api` serves in each of its processes (control_api/__main__.py): ``create_app``,
    then the process's heap settled (core/platform/heap.py). Not in ``create_app``, whose callers
    (tests, an app embedding this one) keep their collector as it is."""
    app = create_app()
    settle_heap()
    return app


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Litestar:
    settings = settings or get_settings()
    # Tracing first: its instrumentation wraps the clients made at startup, and log lines carry its ids.
    tracing = configure_tracing("api")
    if configure_logs:
        configure_logging(settings, process="api")
    sentry = configure_sentry(settings, process="api")
    load_job_types(settings)
    try:
        trusted_proxies = TrustedProxies.parse(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"JOBYARD_TRUSTED_PROXIES: {exc}") from None

    @asynccontextmanager
    async def services(app: Litestar) -> AsyncIterator[None]:
        # Refuse to start without the data key: a job holding a phone number could not be stored.
        use_data_key(settings)
        install_stack_dumps()  # kill -USR1 / -USR2: where a stuck API process waits
        app.state.settings = settings
        app.state.trusted_proxies = trusted_proxies
        # Errors shown to callers without `ops` go through it (control_api/readerview.py).
        app.state.redactor = Redactor(provider_secrets(settings))
        app.state.key_cache = KeyCache(settings.api_key_cache_s, settings.api_key_negative_cache_s)
        app.state.key_lookups = KeyLookups(settings, app.state.key_cache)
        app.state.usage_clock = UsageClock(settings.key_touch_interval_s)
        app.state.broker = build_broker(settings)
        fast = AsyncEnqueuer(settings, connections=MAX_FLUSHES_IN_FLIGHT)
        await fast.open()
        app.state.group_commit = GroupCommit(settings, app.state.broker, fast)
        # Readiness must answer quickly even when Redis hangs, unlike the broker's blocking client.
        app.state.health_redis = redis_client(settings, socket_timeout=2)
        # A search waits on Redis for an embeddings worker's answer (BLPOP) up to its own timeout.
        app.state.query_redis = redis_client(settings, socket_timeout=settings.embedding_query_timeout_s + 5)
        # A slow Redis must not hold every request: past this the limiter lets the request through.
        limiter_redis = async_redis_client(settings, socket_timeout=0.5)
        app.state.rate_limiter = KeyRateLimiter(limiter_redis, settings)
        # A tenant's quotas (core/access/quotas.py): all its keys' requests, its jobs waiting.
        app.state.tenant_rate_limiter = TenantRateLimiter(limiter_redis, settings)
        app.state.queue_cap = QueueCap(limiter_redis, settings)
        app.state.address_limiter = AddressLimiter(limiter_redis, settings)
        # Events streams and waiting job reads: one LISTEN connection and one reader per process.
        app.state.fanout = Fanout(settings)
        await app.state.fanout.start()
        try:
            yield
        finally:
            await app.state.fanout.stop()
            await fast.close()
            app.state.broker.client.close()
            app.state.health_redis.close()
            app.state.query_redis.close()
            await limiter_redis.aclose(
                close_connection_pool=True
            )  # a pool we passed in is not closed otherwise

    app = App(
        route_handlers=[
            JobsController,
            JobsBulkController,
            EventsController,
            WorkflowsController,
            WebhookEndpointsController,
            WebhookDeliveriesController,
            KeysController,
            TenantsController,
            ChatsController,
            CollectionsController,
            ScrapesController,
            DeadLettersController,
            AuditController,
            SchedulesController,
            SequencesController,
            OptOutsController,
            OutboundMessagesController,
            TenantWhatsAppController,
            TenantLlmController,
            AssistantsController,
            WhatsAppWebhookController,
            QueuesController,
            WorkersController,
            healthz,
            readyz,
            metrics,
            *dashboard_routers(),
        ],
        lifespan=[services],
        middleware=[
            # First: everything after it sees the client's address and scheme a trusted proxy gave.
            ForwardedMiddleware,
            # A client address that failed authentication too often is refused here, before
            # anything else is spent on it (counted in jobyard_auth_refusals_total).
            AddressGate,
            RequestIdMiddleware,
            # Outside authentication, so refused requests are counted too.
            PROMETHEUS.middleware,
            # The errors the middlewares below raise, answered where the two above see the answer.
            ErrorAnswers,
            # The dashboard's routes opt out (exclude_from_auth) and check their session cookie.
            DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS),
            RateLimitMiddleware,
            JsonDepthMiddleware,
        ],
        template_config=template_config(),
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_security_headers],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(__doc__, ui=settings.api_docs_ui),
        # Logging is set up by configure_logging (structlog); Litestar must not install its own.
        logging_config=None,
        on_app_init=[_no_debug],
        plugins=[_tracing_plugin()] if tracing else [],
    )
    declare_common_responses(app)
    if settings.api_lean_enqueue and not tracing and not sentry:
        app.lean = LeanEnqueue(app, functools.partial(Litestar.__call__, app))
    return app


def _tracing_plugin() -> InitPluginProtocol:
    """A server span per request, continuing the caller's traceparent (Litestar's OpenTelemetry
    middleware, outside every other one: the access line and the request id are inside the span)."""
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    # No spans of their own for the ASGI send and receive events: two more per request, and noise.
    # No traces of the probes and scrapes, which come every few seconds.
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            exclude_spans=["receive", "send"], exclude=["^/healthz$", "^/readyz$", "^/metrics$"]
        )
    )


def _no_debug(config: AppConfig) -> AppConfig:
    # Tracebacks belong in the log, never in a response.
    config.debug = False
    return config

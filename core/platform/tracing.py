"""OpenTelemetry tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT is set, free when it is not.

On, each process installs the SDK's TracerProvider with a batching OTLP/HTTP (protobuf) exporter,
configured by the SDK's own environment variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER,
OTEL_BSP_SCHEDULE_DELAY, ...), and the instrumentation of psycopg, redis-py and httpx. Off, none of
that is imported: the API's ``trace`` calls return no-op spans, and a new job carries no trace
context (``current_traceparent`` answers None after one check).

A job's trace context travels in its message's options (``traceparent``, W3C Trace Context), so the
worker's span of the job run is a child of the request that enqueued it. A database, Redis or HTTP
call made outside any request or job (a worker polling Redis, a heartbeat) would start a trace of
its own on every poll: those are not sampled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

#: The message option (and HTTP header) that carries a trace context.
TRACEPARENT = "traceparent"
#: The variables that turn tracing on: the SDK's, for all signals or for traces alone.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_enabled = False

tracer = trace.get_tracer("jobyard")


def tracing_wanted() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def tracing_enabled() -> bool:
    """Whether this process installed the SDK (configure_tracing)."""
    return _enabled


def configure_tracing(process: str) -> bool:
    """Install the SDK and the instrumentation once per process, if an OTLP endpoint is set.

    Call it at process start, before any Postgres, Redis or HTTP client is made: the instrumentation
    wraps the clients' classes. ``process`` names the service unless OTEL_SERVICE_NAME does.
    """
    global _enabled
    if _enabled or not tracing_wanted():
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"jobyard-{process}"}))
    provider = TracerProvider(resource=resource)
    # The sampler the SDK read from OTEL_TRACES_SAMPLER, behind the rule for orphan client calls.
    provider.sampler = _without_orphan_clients(provider.sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(skip_dep_check=True)
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    _enabled = True
    return True


def flush_tracing() -> None:
    """Export the spans still batched, now: for a process that ends without running atexit
    handlers (a worker process forked by Dramatiq ends with os._exit)."""
    if _enabled:
        provider: Any = trace.get_tracer_provider()
        provider.force_flush()


def _without_orphan_clients(sampler: Sampler) -> Sampler:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class WithoutOrphanClients(Sampler):
        """Drops client spans (a query, a Redis command, an HTTP call) that start a trace."""

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if (
                kind is SpanKind.CLIENT
                and not trace.get_current_span(parent_context).get_span_context().is_valid
            ):
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"WithoutOrphanClients{{{sampler.get_description()}}}"

    return WithoutOrphanClients()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, for a message to carry; None with tracing off."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def context_from(traceparent: str | None) -> Context | None:
    """The parent context a message's ``traceparent`` names (None: the span starts a trace)."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> Mapping[str, Any]:
    """structlog processor: the current span's trace and span ids on the line (tracing on only)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event

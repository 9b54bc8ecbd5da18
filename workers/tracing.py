"""A span per job run, the child of the request that enqueued the job (tracing on only).

The message's ``traceparent`` option (core/engine/broker.py) names the parent. The span is made
current on the worker thread before JobLifecycle claims the job, so the claim, the handler's
queries and provider calls, the outcome's commit and every log line of the run belong to it. The
entry point adds this middleware only when core/platform/tracing.py installed the SDK. At the
worker's shutdown it exports the spans still batched: a forked worker process ends without atexit.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from core.engine.consumer import BATCH_OPTION
from core.platform.tracing import TRACEPARENT, context_from, flush_tracing, tracer

_local = threading.local()


class JobTracing(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        attributes: dict[str, Any] = {
            "jobyard.job.type": message.actor_name,
            "messaging.system": "redis",
            "messaging.destination.name": message.queue_name,
            "messaging.message.id": message.message_id,
        }
        batch = message.options.get(BATCH_OPTION)
        if batch is None:
            attributes["jobyard.job.id"] = message.args[0]
        else:
            attributes["jobyard.batch.size"] = len(batch)
        span = tracer.start_span(
            f"job {message.actor_name}",
            context=context_from(message.options.get(TRACEPARENT)),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        _local.span = span
        _local.token = context.attach(trace.set_span_in_context(span))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # The spans of the last jobs run may still wait for their batch.
        flush_tracing()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._end(skipped=True)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._end(exception=exception)

    def _end(self, *, exception: BaseException | None = None, skipped: bool = False) -> None:
        span: trace.Span | None = getattr(_local, "span", None)
        if span is None:
            return
        if skipped:
            span.set_attribute("jobyard.job.skipped", True)
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()
        context.detach(_local.token)
        _local.span = None

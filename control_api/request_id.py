"""X-Request-ID on every response (the caller's, or a new one), bound into every log line of the
request, and one access line per request that carries it (and what a handler adds with
``on_access_line``: the job a single enqueue created).

Uvicorn's own access log is off (it knows nothing of the request id); the line written here
replaces it.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
#: Ids from callers are echoed only if they look like ids, so logs cannot be forged through them.
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
#: Polled by probes and scrapers every few seconds: logged at debug level, not to drown the rest.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

access_log = structlog.get_logger("jobyard.access")


#: Where a handler leaves fields for the request's access line (``on_access_line``).
_ACCESS_FIELDS = "access_fields"


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


def on_access_line(scope: Scope, **fields: Any) -> None:
    """Add ``fields`` to the request's one access line, instead of a line of the handler's own:
    a single-job enqueue names its job there, so the busiest route writes one line a request."""
    scope.setdefault("state", {}).setdefault(_ACCESS_FIELDS, {}).update(fields)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = start_request(dict(scope["headers"]).get(HEADER, b""))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app raises before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers: list[Any] = list(message.get("headers", []))
                headers.append((HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            write_access_line(scope, status, started)


def start_request(given: bytes) -> str:
    """The request's id (the caller's ``given`` one if it looks like an id, else a new one), bound
    into every log line from here on."""
    request_id = given.decode() if _VALID.match(given) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def write_access_line(scope: Scope, status: int, started: float) -> None:
    """The request's one access line (``started``: its time.perf_counter() at the start)."""
    path = scope["path"]
    emit = access_log.debug if path in _QUIET_PATHS else access_log.info
    emit(
        "request",
        method=scope.get("method", ""),
        path=path,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        **scope["state"].get(_ACCESS_FIELDS, {}),
    )

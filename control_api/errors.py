"""One error shape for every failure: {"error": {"code", "message", "details"}} with the right status.

Core raises the errors of its tree (core/errors/); STATUS below is the one place that gives each
branch its HTTP status, and controllers let core errors through instead of translating them.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import psycopg_pool
import redis
import sqlalchemy.exc
import structlog
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware._internal.exceptions.middleware import get_exception_handler
from litestar.types import ASGIApp, ExceptionHandlersMap, Message, Receive, Scope, Send

from core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    JobyardError,
    NotConfigured,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

log = structlog.get_logger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "dependency_down",
}

#: Seconds a client is told to wait after a 503 for Postgres: a restart or failover is usually over
#: within a few, and the connection pools reconnect on the next request.
DATABASE_RETRY_AFTER_S = 2


#: The one table: each branch of core's error tree and its status. A class takes the row of its
#: nearest listed ancestor (so BadRequest, an InvalidInput, answers 400). A job failure (retryable,
#: permanent, ...) that reaches a request is a bug: 500, as any unexpected error.
STATUS: dict[type[JobyardError], int] = {
    BadRequest: 400,  # a bad cursor, a body that is not JSON
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,  # details lists each bad field
    TooManyRequests: 429,  # with Retry-After
    Unavailable: 503,
    NotConfigured: 503,
}


def status_of(exc: JobyardError) -> int | None:
    """The status of ``exc``'s branch, or None for an error that no request should meet."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return None


class ApiError(HTTPException):
    """An error of the API layer itself (authentication, rate limits), with its code and details.
    Controllers raise core errors instead (see STATUS)."""

    def __init__(self, status_code: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.code = code
        self.details = details


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[Any]:
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(body, status_code=status)


_MISSING = re.compile(r"field `([^`]+)`")


def _validation_details(extra: Any) -> list[dict[str, str]]:
    details = []
    for item in extra if isinstance(extra, list) else []:
        field = str(item.get("key", "body"))
        message = str(item.get("message", "invalid"))
        if field == "data":  # Litestar names the whole body "data"; point at the field instead
            found = _MISSING.search(message)
            field = found.group(1) if found else "body"
        details.append({"field": field, "message": message})
    return details


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ApiError):
        response = error_response(exc.status_code, exc.code, exc.detail, exc.details)
        if exc.headers:  # e.g. Retry-After on a 429
            response.headers.update(exc.headers)
        return response
    if isinstance(exc, ValidationException):
        if request.method in {"POST", "PUT", "PATCH"} and request.headers.get("content-length") == "0":
            return error_response(400, "malformed_json", "the body is empty; send a JSON object")
        details = _validation_details(exc.extra)
        if details:
            return error_response(422, "validation_error", "the request has invalid fields", details)
    if exc.status_code == 400 and not exc.extra and request.method in {"POST", "PUT", "PATCH"}:
        # Litestar reports a body it could not decode as a bare 400 ("JSON is malformed", "truncated").
        return error_response(400, "malformed_json", f"the body is not valid JSON: {exc.detail}")
    status = exc.status_code
    response = error_response(status, _CODES.get(status, "http_error"), exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


#: Postgres cancelled the statement: JOBYARD_DB_STATEMENT_TIMEOUT or JOBYARD_DB_LOCK_TIMEOUT passed.
_TIMED_OUT = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)


def _database_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, _TIMED_OUT):
        log.warning("database_timeout", path=request.url.path, error=str(orig))
        response = error_response(
            503,
            "database_timeout",
            "Postgres did not finish in time (a statement or lock timeout); retry shortly",
            {"postgres": "timeout"},
        )
        # A statement or lock timeout passes with the contention that caused it: try again soon.
        response.headers["Retry-After"] = "1"
        return response
    log.error("database_unavailable", path=request.url.path, error=str(exc))
    message = "Postgres is unavailable"
    if request.method != "GET":
        # The connection may have been lost while the write committed, so it may have happened.
        message += "; the write may or may not have been committed (an idempotency key makes a retry safe)"
    response = error_response(503, "dependency_down", message, {"postgres": "down"})
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def _redis_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Every Redis client of the API has a socket timeout: a hung Redis ends here, not in a hung request.
    log.error("redis_unavailable", path=request.url.path, error=str(exc))
    response = error_response(503, "dependency_down", "Redis is unavailable", {"redis": "down"})
    response.headers["Retry-After"] = "1"
    return response


#: Data errors by SQLSTATE: (status, code, message). A value Postgres refuses is the request's, not
#: our failure; each says what was refused, never the value itself.
_DATA_ERRORS = {
    "22P05": (
        400,
        "unstorable_value",
        "text in the request contains a NUL character (\\u0000), which Postgres cannot store",
    ),
    "22021": (400, "unstorable_value", "text in the request is not valid UTF-8"),
    "22003": (400, "unstorable_value", "a number in the request is out of the range Postgres can store"),
    "22008": (422, "unstorable_value", "a time in the request is out of the range Postgres can store"),
    "22007": (422, "unstorable_value", "a time in the request is not one Postgres can read"),
}


def describe_data_error(exc: BaseException) -> tuple[int, str, str]:
    """What a DataError means for the client: status, code and message."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    text = str(orig)
    if sqlstate in _DATA_ERRORS:
        return _DATA_ERRORS[sqlstate]
    if sqlstate is None and "NUL" in text:  # psycopg refuses it before sending
        return _DATA_ERRORS["22P05"]
    if sqlstate is None and ("too large" in text or "too small" in text):
        # psycopg could not read a value back: a time past year 9999 stored before client times were
        # bounded. Not the request's fault, and not an outage: the scheduler repairs such rows.
        return (
            409,
            "unreadable_value",
            "a time stored on this resource is outside years 1 to 9999 and cannot be read; it was "
            "stored before times were bounded, and the scheduler fails such rows within a minute",
        )
    return (
        400,
        "unstorable_value",
        f"a value in the request cannot be stored (Postgres error {sqlstate or 'in the driver'})",
    )


def _unstorable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, code, message = describe_data_error(exc)
    log.info(code, path=request.url.path, error=str(getattr(exc, "orig", exc)).splitlines()[0][:300])
    return error_response(status, code, message)


def _core_error(request: Request[Any, Any, Any], exc: JobyardError) -> Response[Any]:
    status = status_of(exc)
    if status is None:
        return unexpected(request, exc)
    response = error_response(status, exc.code, exc.message, exc.details)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after or 1)))
    return response


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(500, "internal_error", "an unexpected error occurred; see the server log")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    JobyardError: _core_error,
    HTTPException: _http_exception,
    sqlalchemy.exc.DataError: _unstorable,
    sqlalchemy.exc.OperationalError: _database_down,
    sqlalchemy.exc.InterfaceError: _database_down,
    sqlalchemy.exc.TimeoutError: _database_down,  # no pooled connection came free in time
    # The enqueue path's own driver calls (core/engine/fastenqueue.py).
    psycopg.DataError: _unstorable,
    psycopg.OperationalError: _database_down,
    psycopg.InterfaceError: _database_down,
    psycopg_pool.PoolTimeout: _database_down,
    redis.RedisError: _redis_down,
    Exception: unexpected,
}


async def answer_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What Litestar's exception middleware does with an error: the app's ``after_exception`` hooks,
    then the answer its exception handlers give (``unexpected``'s 500 for anything unknown)."""
    app: Litestar = scope["app"]
    for hook in app.after_exception:
        await hook(exc, scope)
    handler = get_exception_handler(EXCEPTION_HANDLERS, exc) or unexpected
    request: Request[Any, Any, Any] = app.request_class(scope=scope, receive=receive, send=send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request, type_encoders=app.type_encoders)(
        scope, receive, send
    )


class ErrorAnswers:
    """Errors raised by the middlewares inside this one (authentication's 401, the rate limit's 429),
    answered here, through the ``send`` of the middlewares outside it.

    Litestar answers an error a route's handler raises just outside the handler, but one a
    middleware raises only at its outermost layer, past every middleware's ``send``: such an answer
    had no X-Request-ID, the access line said 500 and the HTTP metrics 200. Placed inside the request
    id and the metrics (control_api/app.py), it gives them the answer the client gets. An error
    after the answer began is left to Litestar, as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                raise
            await answer_error(scope, receive, send, exc)

"""API-key authentication (Bearer or X-API-Key) and scope guards.

Every route is protected one of three ways, and tests/integration/test_route_scopes.py walks the app
to check that each is: a scope guard (``requires``/``requires_any``, which mark themselves with the
scopes they demand), or an ``auth`` opt naming another scheme (``PUBLIC`` for the few routes anyone
may call, which then check what they must themselves; ``"session"`` for the dashboard's cookie
login, whose guard is the dashboard's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sqlalchemy.exc
import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from core.db import transaction
from core.jobs import utcnow
from core.keys import ApiKey, KeyCache, UsageClock, hash_key, lookup_key, touch_key
from core.settings import Settings

log = structlog.get_logger(__name__)

#: Route opt key that names how a route without a scope guard is protected ("public", "session").
AUTH_OPT = "auth"
#: Opts of a route anyone may call without a key: liveness, readiness, provider webhooks (each checks
#: its provider's signature or token itself). Keep this list short; the route-scope test lists them.
PUBLIC: dict[str, Any] = {"exclude_from_auth": True, AUTH_OPT: "public"}
#: The API's own description: generated routes that take no opts, so they are excluded by path.
PUBLIC_PATHS = ["^/schema"]


def _secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return connection.headers.get("x-api-key") or None


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        secret = _secret(connection)
        if not secret:
            raise NotAuthorizedException("an API key is required (Authorization: Bearer <key>)")
        app_state = connection.app.state
        cache: KeyCache = app_state.key_cache
        settings: Settings = app_state.settings
        hit, key = cache.get(secret)
        if not hit:
            key = await _lookup_once(app_state, settings, secret)
        if key is None:
            raise NotAuthorizedException("the API key is unknown, revoked or expired")
        clock: UsageClock = app_state.usage_clock
        if clock.due(key.id):
            await anyio.to_thread.run_sync(_touch, settings, key)
        return AuthenticationResult(user=key, auth=None)  # the secret is not kept past this point


async def _lookup_once(app_state: Any, settings: Settings, secret: str) -> ApiKey | None:
    """Look the key up in Postgres, once for all the requests that carry it at this moment.

    When the cached entry of a busy key expires, every request in flight with that key misses at
    once; without this each would spend a thread and a query on the same row.
    """
    pending: dict[str, asyncio.Future[ApiKey | None]] = app_state.key_lookups
    digest = hash_key(secret)
    future = pending.get(digest)
    if future is None:
        future = asyncio.get_running_loop().create_future()
        pending[digest] = future
        try:
            key = await anyio.to_thread.run_sync(_lookup, settings, secret)
        except BaseException as exc:
            # The waiters get the error too (a 503 for a Postgres outage), not a hang.
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            future.exception()  # marks it retrieved when no one else waits
            raise
        else:
            app_state.key_cache.put(secret, key)
            future.set_result(key)
        finally:
            del pending[digest]
        return key
    return await asyncio.shield(future)


def _lookup(settings: Settings, secret: str) -> ApiKey | None:
    with transaction(settings) as conn:
        return lookup_key(conn, secret)


def _touch(settings: Settings, key: ApiKey) -> None:
    try:
        with transaction(settings) as conn:
            touch_key(conn, key.id, utcnow(), settings.key_touch_interval_s)
    except sqlalchemy.exc.SQLAlchemyError as exc:  # bookkeeping must not fail the request
        log.warning("api_key_touch_failed", key=key.prefix, error=str(exc))


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


# Guards are coroutines: Litestar runs a plain-function guard in a worker thread, a thread hand-off
# on every request for a set lookup.
def requires(scope: str) -> Guard:
    """A guard that lets through keys holding ``scope``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        key: ApiKey = connection.user
        if scope not in key.scopes:
            raise PermissionDeniedException(f"this API key lacks the {scope!r} scope")

    guard.__name__ = f"requires_{scope.replace(':', '_')}"
    guard.scopes = (scope,)  # type: ignore[attr-defined]
    return guard


def requires_any(*scopes: str) -> Guard:
    """A guard that lets through keys holding at least one of ``scopes``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        key: ApiKey = connection.user
        if not set(scopes) & set(key.scopes):
            raise PermissionDeniedException(f"this API key needs one of the scopes {', '.join(scopes)}")

    guard.__name__ = "requires_any_" + "_".join(s.replace(":", "_") for s in scopes)
    guard.scopes = scopes  # type: ignore[attr-defined]
    return guard


def guard_scopes(handler: BaseRouteHandler) -> tuple[str, ...]:
    """The scopes the handler's guards demand (any of them lets a key through); empty if none."""
    found: list[str] = []
    for guard in handler.resolve_guards():
        fn = getattr(guard, "func", guard)  # Litestar wraps guards in AsyncCallable
        found.extend(getattr(fn, "scopes", ()))
    return tuple(found)


def protection(handler: BaseRouteHandler) -> str | None:
    """How a route handler is protected: "scope", or its ``auth`` opt ("public", "session"); None
    means not at all, which is a bug the route-scope test reports."""
    if guard_scopes(handler):
        return "scope"
    scheme = handler.opt.get(AUTH_OPT)
    return str(scheme) if scheme else None

"""API-key authentication (Bearer or X-API-Key) and scope guards.

Every route is protected one of three ways, and tests/integration/access/test_route_scopes.py walks the app
to check that each is: a scope guard (``requires``/``requires_any``, which mark themselves with the
scopes they demand), or an ``auth`` opt naming another scheme (``PUBLIC`` for the few routes anyone
may call, which then check what they must themselves; ``"session"`` for the dashboard's cookie
login, whose guard is the dashboard's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio
import sqlalchemy.exc
import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from control_api.addresslimit import AddressLimiter, too_many_failures
from control_api.auth_metrics import AUTH_REFUSALS, KEY_LOOKUPS
from control_api.errors import ApiError
from core.access.keys import ApiKey, KeyCache, UsageClock, carried_secret, lookup_key, touch_key, well_formed
from core.engine.jobs import utcnow
from core.platform.db import transaction
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: Route opt key that names how a route without a scope guard is protected ("public", "session").
AUTH_OPT = "auth"
#: Opts of a route anyone may call without a key: liveness, readiness, provider webhooks (each checks
#: its provider's signature or token itself). Keep this list short; the route-scope test lists them.
PUBLIC: dict[str, Any] = {"exclude_from_auth": True, AUTH_OPT: "public"}
#: The API's own description: generated routes that take no opts, so they are excluded by path.
PUBLIC_PATHS = ["^/schema"]


def _secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return carried_secret(connection.headers.get("authorization", ""), connection.headers.get("x-api-key"))


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address as control_api/forwarded.py settled it."""
    client = connection.scope.get("client")
    return client[0] if client else "unknown"


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Authenticates in the cheapest order (an address over its failure budget was refused already,
    by control_api/addresslimit.py's AddressGate): a missing or malformed key (401, no lookup), the
    process's cache (bad keys included), and only then Postgres, through KeyLookups."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        secret = _secret(connection) or ""
        app_state = connection.app.state
        key = await authenticate(app_state, client_address(connection), secret)
        clock: UsageClock = app_state.usage_clock
        if clock.due(key.id):
            settings: Settings = app_state.settings
            await anyio.to_thread.run_sync(_touch, settings, key)
        return AuthenticationResult(user=key, auth=None)  # the secret is not kept past this point


async def authenticate(app_state: Any, address: str, secret: str) -> ApiKey:
    """The live key for ``secret`` sent from ``address``; raises the 401, 429 or 503 to answer.

    Every failure spends the address's budget (control_api/addresslimit.py), and so does the first
    lookup of a key this process has not seen live, before it is made: a flood of random keys gets
    at most the budget's worth of lookups, not one per request that slipped past the gate.
    """
    cache: KeyCache = app_state.key_cache
    limiter: AddressLimiter | None = getattr(app_state, "address_limiter", None)
    if not secret or not well_formed(secret):
        await _refuse(limiter, address, "missing" if not secret else "malformed")
    hit, key = cache.get(secret)
    if key is not None:
        return key
    if hit:  # a bad key seen before
        await _refuse(limiter, address, "unknown")
    lookups: KeyLookups = app_state.key_lookups
    if cache.known(secret):  # live before: its refresh is never held back
        key = await lookups.lookup(secret)
        if key is None:
            await _refuse(limiter, address, "unknown")
        return key
    wait = limiter.retry_after(address) if limiter is not None else None
    if wait is None and limiter is not None:
        wait = await limiter.failed(address)
    if wait is not None:
        AUTH_REFUSALS.labels("address_limited").inc()
        raise too_many_failures(wait)
    try:
        key = await lookups.lookup(secret)
    except ApiError:
        AUTH_REFUSALS.labels("busy").inc()
        raise
    if key is None:
        await _refuse(None, address, "unknown")  # its lookup was paid for above
    return key


_REASONS = {
    "missing": "an API key is required (Authorization: Bearer <key>)",
    "malformed": "the API key is malformed (a key is jy_ and 32 more characters)",
    "unknown": "the API key is unknown, revoked or expired",
}


async def _refuse(limiter: AddressLimiter | None, address: str, reason: str) -> NoReturn:
    """Spend the address's budget on this failure; 429 if that was the last of it, else 401."""
    wait = await limiter.failed(address) if limiter is not None else None
    if wait is not None:
        AUTH_REFUSALS.labels("address_limited").inc()
        raise too_many_failures(wait)
    AUTH_REFUSALS.labels(reason).inc()
    raise NotAuthorizedException(_REASONS[reason])


class KeyLookups:
    """The Postgres lookups of one API process, on a bounded share of its threads and connections.

    A lookup runs once for all the requests that carry the same key at that moment: when the cached
    entry of a busy key expires, every request in flight with it misses at once, and without this
    each would spend a thread and a query on the same row. A key this process has seen live is
    looked up at once; any other (a new caller, or a flood of random keys) waits for one of
    JOBYARD_KEY_LOOKUP_CONCURRENCY slots, at most ``WAIT_S``, and past ``MAX_WAITING`` waiters or that
    wait gets a 503. So strangers can never hold more than those few connections of the pool the
    API's reads and keyed enqueues use, nor delay the refresh of a known key.
    """

    #: Longest wait for a lookup slot before a 503: a client retries sooner than a stuck request.
    WAIT_S = 2.0
    #: Most lookups waiting for a slot; beyond, a request is answered 503 at once.
    MAX_WAITING = 1_000

    def __init__(self, settings: Settings, cache: KeyCache) -> None:
        self.settings = settings
        self.cache = cache
        self._pending: dict[bytes, asyncio.Future[ApiKey | None]] = {}
        self._slots = asyncio.Semaphore(max(1, settings.key_lookup_concurrency))
        self._waiting = 0

    async def lookup(self, secret: str) -> ApiKey | None:
        digest = self.cache.digest(secret)
        future = self._pending.get(digest)
        if future is not None:
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            if self.cache.known(secret):
                key = await anyio.to_thread.run_sync(_lookup, self.settings, secret)
            else:
                key = await self._as_stranger(secret)
        except BaseException as exc:
            # The waiters get the error too (a 503 for a Postgres outage), not a hang.
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            future.exception()  # marks it retrieved when no one else waits
            raise
        else:
            KEY_LOOKUPS.labels("live" if key is not None else "not_live").inc()
            self.cache.put(secret, key)
            future.set_result(key)
        finally:
            del self._pending[digest]
        return key

    async def _as_stranger(self, secret: str) -> ApiKey | None:
        if self._waiting >= self.MAX_WAITING:
            raise _busy()
        self._waiting += 1
        try:
            async with asyncio.timeout(self.WAIT_S):
                await self._slots.acquire()
        except TimeoutError:
            raise _busy() from None
        finally:
            self._waiting -= 1
        try:
            return await anyio.to_thread.run_sync(_lookup, self.settings, secret)
        finally:
            self._slots.release()


def _busy() -> ApiError:
    error = ApiError(503, "auth_busy", "too many API keys are being checked at once; retry shortly")
    error.headers = {"Retry-After": "1"}
    return error


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


#: The guard of every read an ``ops`` key may make: ``ops:read``, the view-only role, reads the same
#: and changes nothing (no POST, PUT, PATCH or DELETE takes it; the route-scope test checks both).
OPS_READ = requires_any("ops", "ops:read")


async def reaches_every_tenant(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, after a scope guard, for what shows every tenant's figures together (the farm's
    metrics): it lets through keys holding ``admin`` only."""
    key: ApiKey = connection.user
    if key.reach is not None:
        raise PermissionDeniedException(
            "this shows every tenant's figures: it needs a key holding admin, which reaches every tenant"
        )


reaches_every_tenant.every_tenant = True  # type: ignore[attr-defined]


async def acts_on_every_tenant(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, after a scope guard, for an action whose effect reaches every tenant's jobs (pausing
    a queue): it lets through keys holding ``admin`` only."""
    key: ApiKey = connection.user
    if key.reach is not None:
        raise PermissionDeniedException(
            "this acts on every tenant's jobs: it needs a key holding admin, which reaches every tenant"
        )


acts_on_every_tenant.every_tenant = True  # type: ignore[attr-defined]


def needs_every_tenant(handler: BaseRouteHandler) -> bool:
    """Whether the handler is guarded by ``reaches_every_tenant`` or ``acts_on_every_tenant``."""
    return any(getattr(getattr(g, "func", g), "every_tenant", False) for g in handler.resolve_guards())


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

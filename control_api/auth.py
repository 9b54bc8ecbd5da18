"""API-key authentication (Bearer or X-API-Key) and scope guards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from core.db import transaction
from core.keys import ApiKey, KeyCache, lookup_key
from core.settings import Settings

#: Routes anyone may call: liveness, readiness, the API's own description, and provider webhooks
#: (each checks its provider's signature or token itself).
PUBLIC_PATHS = ["^/healthz$", "^/readyz$", "^/schema", "^/webhooks/"]


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
            key = await anyio.to_thread.run_sync(_lookup, settings, secret)
            cache.put(secret, key)
        if key is None:
            raise NotAuthorizedException("the API key is unknown, revoked or expired")
        return AuthenticationResult(user=key, auth=secret)


def _lookup(settings: Settings, secret: str) -> ApiKey | None:
    with transaction(settings) as conn:
        return lookup_key(conn, secret)


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
    return guard


def requires_any(*scopes: str) -> Guard:
    """A guard that lets through keys holding at least one of ``scopes``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        key: ApiKey = connection.user
        if not set(scopes) & set(key.scopes):
            raise PermissionDeniedException(f"this API key needs one of the scopes {', '.join(scopes)}")

    guard.__name__ = "requires_any_" + "_".join(s.replace(":", "_") for s in scopes)
    return guard

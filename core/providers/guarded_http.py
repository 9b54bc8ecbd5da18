"""An HTTP client for addresses a caller chose (a tenant's own LLM provider): every connection it opens
goes to an address the guard checked (core/platform/netguard.py), at the moment it is opened.

Why at connect time, and not a check of the URL before the call: the client would resolve the name
again itself, and a name that answers a public address to the check and 169.254.169.254 to the
client (DNS rebinding, or a record changed since the base URL was accepted) would get through. Here
the client resolves nothing: its network backend is asked for a connection to (host, port), resolves
the host, refuses it unless every address is public (or the host is allow-listed), and connects to
the very address it checked. TLS still names the host (SNI and the certificate check use the URL's
host), so HTTPS works as with any client. Every new connection of the pool is checked again, and
no redirect is followed.

The openai SDK takes such a client (``http_client``); the farm's own providers, from its settings,
are trusted and use the SDK's default client.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore2
import httpx2

from core.errors import NotResolved
from core.platform.netguard import AllowList, SyncResolver, checked_addresses_sync, system_resolve_sync
from core.providers.abortable import AbortableBackend2, abortable_transport2

#: Connections kept per client: as the openai SDK's own default client.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100


class GuardedBackend(httpcore2.SyncBackend):
    """Opens TCP connections only to addresses the guard accepts; AddressRefused otherwise (it
    propagates as it is, so the caller can tell a refusal from a network failure)."""

    def __init__(self, allow: AllowList, resolve: SyncResolver = system_resolve_sync) -> None:
        self.allow = allow
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = checked_addresses_sync(host, port, self.allow, self.resolve)
        except NotResolved as exc:
            raise httpcore2.ConnectError(str(exc)) from None  # as any client's failed lookup
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # checked_addresses_sync returns at least one address
        raise last


class GuardedTransport(httpx2.HTTPTransport):
    """httpx2's transport over a connection pool whose network backend is a GuardedBackend (its
    streams abortable by the job's cancel, core/providers/abortable.py). Never through a proxy: the
    connection must go to the address that was checked."""

    def __init__(self, allow: AllowList, resolve: SyncResolver = system_resolve_sync) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=5.0,
            network_backend=AbortableBackend2(GuardedBackend(allow, resolve)),
        )


def guarded_client(allow: AllowList, *, timeout: float) -> httpx2.Client:
    """A client for the openai SDK whose every connection is checked. Redirects are not followed: an
    API answers where it was asked."""
    return httpx2.Client(
        transport=GuardedTransport(allow), timeout=timeout, trust_env=False, follow_redirects=False
    )


def abortable_client(*, timeout: float) -> httpx2.Client:
    """A client for the farm's own (trusted) providers: any address, redirects followed as the SDK's
    default client does, and its calls aborted by the job's cancel."""
    transport = abortable_transport2(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE, keepalive_expiry=5.0
    )
    return httpx2.Client(transport=transport, timeout=timeout, follow_redirects=True)

"""Who sent a request, and over what, when reverse proxies stand in between: X-Forwarded-For and
X-Forwarded-Proto, believed only from the proxies named in JOBYARD_TRUSTED_PROXIES.

Anyone can send those headers, so a proxy's word is taken only when the connection comes from a
trusted proxy. X-Forwarded-For is read from the right: each trusted proxy appended the address it
got the request from, so the first address from the right that is not a trusted proxy is the
client (what a client wrote on the left itself is never reached). X-Forwarded-Proto is taken from
the proxy nearest to us (the last value).

The middleware runs first and rewrites the ASGI scope's ``client`` and ``scheme``, so everything
after it (the per-address limit, the dashboard's Secure cookie, HSTS, request.url) sees the real
client and scheme. uvicorn's own proxy-header handling is off (control_api/__main__.py), so this is
the one place that decides, whatever server runs the app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longest header value read; a proxy chain never needs more, and a client cannot make us parse megabytes.
MAX_HEADER_CHARS = 4096


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "203.0.113.9:443"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's ::ffff:a.b.c.d is that IPv4 client
    return address


def normalized(host: str) -> str:
    """An address as one string per client (``::ffff:10.0.0.1`` is ``10.0.0.1``); other text as is."""
    address = _address(host)
    return str(address) if address is not None else host


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> TrustedProxies:
        """Addresses and CIDR ranges (``10.0.0.0/8``, ``::1``); ValueError names a bad one."""
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return cls(tuple(networks))

    def trusts(self, host: str | None) -> bool:
        if not self.networks or not host:
            return False
        address = _address(host)
        return address is not None and any(address in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer`` itself unless a trusted proxy forwarded the request."""
        if not forwarded_for or not self.trusts(peer):
            return normalized(peer)
        hops = [h for h in forwarded_for[:MAX_HEADER_CHARS].split(",") if h.strip()]
        current = peer
        while hops and self.trusts(current):
            address = _address(hops.pop())
            if address is None:
                break  # a trusted proxy wrote something that is not an address: stop at that proxy
            current = str(address)
        return current

    def scheme(self, peer: str, scheme: str, forwarded_proto: str | None) -> str:
        """``https`` or ``http`` as the nearest trusted proxy saw it; the connection's own otherwise."""
        if not forwarded_proto or not self.trusts(peer):
            return scheme
        last = forwarded_proto[:MAX_HEADER_CHARS].split(",")[-1].strip().lower()
        return last if last in ("http", "https") else scheme


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", ()) if k.lower() == name]
    if not values:
        return None
    # Several lines of one header are one comma-separated list (RFC 9110, 5.3).
    return ",".join(bytes(v).decode("latin-1") for v in values)


class ForwardedMiddleware:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` from a trusted proxy's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxies: TrustedProxies | None = getattr(scope["app"].state, "trusted_proxies", None)
        if scope["type"] == "http" and proxies is not None:  # type: ignore[comparison-overlap]
            apply_forwarded(scope, proxies)
        await self.app(scope, receive, send)


def apply_forwarded(scope: Scope, proxies: TrustedProxies) -> None:
    """Rewrite ``scope``'s client and scheme from a trusted proxy's headers (the middleware's step,
    shared with control_api/lean_enqueue.py)."""
    if not proxies.networks:
        return
    client = scope.get("client")
    peer = client[0] if client else ""
    if proxies.trusts(peer):
        real = proxies.client(peer, _header(scope, b"x-forwarded-for"))
        scope["client"] = (real, client[1] if client and real == peer else 0)
        scope["scheme"] = proxies.scheme(
            peer, scope.get("scheme", "http"), _header(scope, b"x-forwarded-proto")
        )

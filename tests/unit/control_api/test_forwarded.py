"""Trusted proxies and X-Forwarded-For (control_api/forwarded.py): addresses and ranges parsed, the
headers counted only from a trusted proxy, and (a property test) no client choosing its address."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from control_api.forwarded import ForwardedMiddleware, TrustedProxies
from tests.properties import PROPERTY


def test_trusted_proxies_parse_addresses_and_ranges_and_refuse_nonsense() -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8", " ::1 ", "192.168.1.7"])
    assert proxies.trusts("10.2.3.4") and proxies.trusts("::1") and proxies.trusts("::ffff:10.0.0.1")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("testclient") and not proxies.trusts("")
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies.parse(["proxy.internal"])
    assert not TrustedProxies().trusts("127.0.0.1")  # none trusted by default
    # A chain of two proxies; the client wrote its own forgery first; a port on one hop.
    assert proxies.client("10.0.0.2", "6.6.6.6, 203.0.113.9:5555, 10.0.0.1") == "203.0.113.9"
    assert proxies.client("10.0.0.2", "10.0.0.3, 10.0.0.1") == "10.0.0.3"  # all trusted: the farthest
    assert proxies.client("10.0.0.2", "garbage") == "10.0.0.2"  # not an address: stop at the proxy
    assert proxies.client("10.0.0.2", "1.2.3.4," * 100_000) == "1.2.3.4"  # a huge header is cut short
    assert proxies.scheme("10.0.0.2", "http", "http, https") == "https"  # the nearest proxy's word
    assert proxies.scheme("10.0.0.2", "http", "gopher") == "http"


class _State:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class _App:
    def __init__(self, **state: Any) -> None:
        self.state = _State(**state)


def _through_forwarded(peer: str, headers: list[tuple[bytes, bytes]], trusted: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(client=scope["client"], scheme=scope["scheme"])

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 40000),
        "headers": headers,
        "app": _App(trusted_proxies=TrustedProxies.parse(trusted)),
    }
    asyncio.run(ForwardedMiddleware(app)(scope, None, None))  # type: ignore[arg-type]
    return seen


def test_forwarded_headers_count_only_from_a_trusted_proxy() -> None:
    forged = [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")]
    assert _through_forwarded("203.0.113.5", forged, []) == {
        "client": ("203.0.113.5", 40000),
        "scheme": "http",
    }
    assert _through_forwarded("203.0.113.5", forged, ["10.0.0.0/8"])["client"][0] == "203.0.113.5"
    proxied = _through_forwarded("10.0.0.1", forged, ["10.0.0.0/8"])
    assert proxied == {"client": ("1.2.3.4", 0), "scheme": "https"}
    # Two header lines are one list; the last (nearest) hop is read first.
    two_lines = [(b"x-forwarded-for", b"9.9.9.9"), (b"X-Forwarded-For", b"5.6.7.8")]
    assert _through_forwarded("10.0.0.1", two_lines, ["10.0.0.0/8"])["client"][0] == "5.6.7.8"


@PROPERTY
@given(
    forged=st.lists(st.text(max_size=20) | st.ip_addresses().map(str), max_size=5),
    client=st.ip_addresses(v=4).map(str),
    proxies=st.integers(0, 3),
)
def test_a_client_cannot_choose_its_address_through_x_forwarded_for(
    forged: list[str], client: str, proxies: int
) -> None:
    """Whatever a client writes in X-Forwarded-For, the address a chain of trusted proxies settles on
    is the one the first proxy saw: the client's own."""
    trusted = TrustedProxies.parse(["10.9.0.0/16"])
    assume(not trusted.trusts(client))
    chain = [f"10.9.0.{i + 1}" for i in range(proxies)]
    # The client sends its forgery; each proxy appends the address it got the request from.
    hops = [*forged, client, *chain[:-1]] if chain else forged
    peer = chain[-1] if chain else client
    header = ", ".join(hops) if hops else None
    assert trusted.client(peer, header) == str(ipaddress.ip_address(client))
    assert trusted.scheme(client, "http", "https") == "http"  # nor its scheme, unless a proxy sent it

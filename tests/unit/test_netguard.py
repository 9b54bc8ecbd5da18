"""The SSRF guard without a browser: which addresses are refused, the allow list, and the SOCKS5
proxy that enforces them on every connection (driven here by a tiny SOCKS5 client)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.errors import AddressRefused, NotResolved
from core.platform.netguard import AllowList, Resolver, checked_addresses, refusal
from core.providers import guard_proxy
from core.providers.guard_proxy import GuardProxy


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("100.64.0.1", "not a globally routable"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),  # Python calls this one global
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation ranges are not routable either
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: Python 3.11 does not call it loopback
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1, which Python calls global
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_hosts_domains_and_pins() -> None:
    allow = AllowList.parse(
        ["intranet.corp", "*.svc.local", "Shop.Example.com.=127.0.0.1", "10.0.0.5", "[::1]"]
    )
    assert allow.match("INTRANET.corp") is not None
    assert allow.match("a.b.svc.local") is not None and allow.match("svc.local") is not None
    assert allow.match("evilsvc.local") is None
    entry = allow.match("shop.example.com")
    assert entry is not None and entry.pinned == ipaddress.ip_address("127.0.0.1")
    assert allow.match("10.0.0.5") is not None and allow.match("::1") is not None
    assert allow.match("example.com") is None
    for bad in ["", "*.", "a*.b", "host=not-an-ip", "*.x.com=1.2.3.4"]:
        with pytest.raises(ValueError):
            AllowList.parse([bad])


def _resolver(answers: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise NotResolved(f"{host} does not resolve")
        return answers[host]

    return resolve


def test_names_are_checked_by_every_address_they_resolve_to() -> None:
    async def check() -> None:
        resolve = _resolver(
            {
                "public.example": ["93.184.216.34"],
                "rebind.example": ["93.184.216.34", "127.0.0.1"],  # one bad answer is enough
                "internal.example": ["10.0.0.7"],
            }
        )
        none = AllowList()
        assert await checked_addresses("public.example", 80, none, resolve) == [
            ipaddress.ip_address("93.184.216.34")
        ]
        with pytest.raises(
            AddressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1, a loopback address"
        ):
            await checked_addresses("rebind.example", 80, none, resolve)
        with pytest.raises(AddressRefused, match="private"):
            await checked_addresses("internal.example", 80, none, resolve)
        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254 is a link-local"):
            await checked_addresses("169.254.169.254", 80, none, resolve)
        with pytest.raises(NotResolved):
            await checked_addresses("nowhere.example", 80, none, resolve)
        # Allowed by name: any address; pinned: DNS is not even asked.
        allowed = AllowList.parse(["internal.example", "pinned.example=10.9.8.7"])
        assert await checked_addresses("internal.example", 80, allowed, resolve) == [
            ipaddress.ip_address("10.0.0.7")
        ]
        assert await checked_addresses("pinned.example", 80, allowed, resolve) == [
            ipaddress.ip_address("10.9.8.7")
        ]

    asyncio.run(check())


def test_localhost_is_refused_through_the_system_resolver() -> None:
    with pytest.raises(AddressRefused, match=r"localhost resolves to .*loopback"):
        asyncio.run(checked_addresses("localhost", 80, AllowList()))


# -- the SOCKS5 proxy ----------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers every GET with its path."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def _socks_get(proxy_url: str, host: str, port: int, path: str) -> tuple[int, bytes]:
    """Connect through the proxy as Chromium does (domain-name address type); returns the SOCKS
    reply code and, on success, the HTTP response."""
    parts = urlsplit(proxy_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    reply = await reader.readexactly(10)
    body = b""
    if reply[1] == 0:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        body = await reader.read()
    writer.close()
    return reply[1], body


def test_the_proxy_connects_to_checked_addresses_and_refuses_the_rest(origin: int) -> None:
    async def run() -> None:
        proxy = GuardProxy(AllowList.parse(["shop.example.com=127.0.0.1"]))
        url = await proxy.start()
        try:
            code, body = await _socks_get(url, "shop.example.com", origin, "/page")
            assert code == 0 and body.endswith(b"/page")
            for host in ("127.0.0.1", "localhost", "::ffff:127.0.0.1", "169.254.169.254"):
                code, body = await _socks_get(url, host, origin, "/secret")
                assert (code, body) == (2, b""), host  # 2: not allowed by the ruleset
                failure = proxy.failure(host, origin)
                assert failure is not None and failure.kind == guard_proxy.REFUSED
            code, _ = await _socks_get(url, "no-such-host.invalid", 80, "/")
            assert code == 4
            assert proxy.failure("no-such-host.invalid", 80) == guard_proxy.Failure(
                guard_proxy.UNRESOLVED, proxy.failures[("no-such-host.invalid", 80)].detail
            )
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed = s.getsockname()[1]
            code, _ = await _socks_get(url, "shop.example.com", closed, "/")
            assert code == 5
            failure = proxy.failure("shop.example.com", closed)
            assert failure is not None and failure.kind == guard_proxy.CONNECTION_REFUSED
        finally:
            await proxy.close()

    asyncio.run(run())


def test_closing_the_proxy_cuts_open_connections(origin: int) -> None:
    async def run() -> None:
        proxy = GuardProxy(AllowList.parse(["shop.example.com=127.0.0.1"]))
        url = await proxy.start()
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        name = b"shop.example.com"
        writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", origin))
        assert (await reader.readexactly(10))[1] == 0
        await asyncio.wait_for(proxy.close(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the tunnel is gone
        writer.close()

    asyncio.run(run())

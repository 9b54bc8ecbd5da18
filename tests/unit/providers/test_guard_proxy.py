"""The SOCKS5 proxy that enforces the SSRF guard on every connection (core/providers/guard_proxy.py),
driven here by a tiny SOCKS5 client."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest

from core.platform.netguard import AllowList
from core.providers import guard_proxy
from core.providers.guard_proxy import GuardProxy
from tests.fakes.base import FakeHTTPServer, reply


class _Origin(FakeHTTPServer):
    """Answers every GET with its path."""

    def get(self, request: BaseHTTPRequestHandler) -> None:
        reply(request, 200, request.path.encode(), "text/plain", {"Connection": "close"})


@pytest.fixture
def origin() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers every GET with its path."""
    server = _Origin()
    yield server.port
    server.close()


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

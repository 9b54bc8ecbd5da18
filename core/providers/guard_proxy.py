"""The SSRF guard on the wire: a SOCKS5 proxy on 127.0.0.1 that each browser context must use.

Why a proxy and not `page.route`: a route handler sees requests, not connections. Playwright does
not call it for the hops of a redirect, and Chromium resolves the name again itself after the
handler said yes, so a name that answers a public address to the check and 127.0.0.1 to the browser
(DNS rebinding) would get through. With a SOCKS5 proxy Chromium resolves nothing: it hands every
connection's host name to the proxy (documents, redirect hops, scripts, fetches, websockets, http
and https alike), and the proxy resolves it, checks every address (core/platform/netguard.py) and connects to
the very address it checked. HTTPS stays end to end (the proxy only splices bytes), and the
browser's loopback exemption is turned off (`<-loopback>`), so `localhost` goes through it too.

One proxy per browser context, on an ephemeral port: what it refused belongs to that job alone, and
closing it at the end of the job cuts every connection the page still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import structlog

from core.errors import AddressRefused, NotResolved
from core.platform.netguard import AllowList, Resolver, checked_addresses, normalize_host, system_resolve

log = structlog.get_logger(__name__)

#: Longest wait for a TCP connection to one address of a host.
CONNECT_TIMEOUT_S = 10.0
#: Longest wait for the browser's SOCKS greeting and request (local, so it is quick or broken).
HANDSHAKE_TIMEOUT_S = 10.0
_CHUNK = 64 * 1024

# SOCKS5 (RFC 1928) reply codes.
_SUCCEEDED, _GENERAL_FAILURE, _NOT_ALLOWED, _NET_UNREACHABLE = 0, 1, 2, 3
_HOST_UNREACHABLE, _CONN_REFUSED, _TTL_EXPIRED, _CMD_UNSUPPORTED, _ATYP_UNSUPPORTED = 4, 5, 6, 7, 8

#: What went wrong with a host, as the scrape reports it.
REFUSED, UNRESOLVED, CONNECTION_REFUSED, UNREACHABLE, CONNECT_TIMEOUT = (
    "refused",
    "unresolved",
    "connection_refused",
    "unreachable",
    "connect_timeout",
)


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    detail: str


@dataclass
class GuardProxy:
    """A SOCKS5 proxy for one browser context; ``failures`` says what it refused or could not reach."""

    allow: AllowList
    resolve: Resolver = system_resolve
    #: Log fields of the job the context belongs to (its connections are served outside its task).
    log_fields: dict[str, Any] = field(default_factory=dict)
    #: (host, port) -> what happened to the last connection asked for it.
    failures: dict[tuple[str, int], Failure] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        """Listen on an ephemeral loopback port; returns the proxy URL for the browser."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"socks5://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening and cut every connection still open."""
        if self._server is not None:
            self._server.close()
        # Closed transports end the reads of their tasks, which then finish by themselves. (Cancelling
        # them instead makes asyncio's stream callback log a CancelledError on Python 3.11.)
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=HANDSHAKE_TIMEOUT_S)
            for task in stuck:
                task.cancel()

    def failure(self, host: str, port: int) -> Failure | None:
        return self.failures.get((normalize_host(host), port))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                    target = await _handshake(reader, writer)
            except (TimeoutError, asyncio.IncompleteReadError, ValueError):
                return
            if target is None:
                return
            host, port = target
            opened = await self._open(host, port, writer)
            if opened is None:
                return
            up_reader, upstream = opened
            self._writers.add(upstream)
            writer.write(_reply(_SUCCEEDED))
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _open(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Resolve, check and connect to a checked address; on failure answer the browser and record it."""
        key = (normalize_host(host), port)
        try:
            addresses = await checked_addresses(host, port, self.allow, self.resolve)
        except AddressRefused as exc:
            log.warning("scrape_request_refused", **self.log_fields, host=host, port=port, reason=str(exc))
            await self._fail(writer, key, Failure(REFUSED, str(exc)), _NOT_ALLOWED)
            return None
        except NotResolved as exc:
            await self._fail(writer, key, Failure(UNRESOLVED, str(exc)), _HOST_UNREACHABLE)
            return None
        last = Failure(UNREACHABLE, f"{host}:{port} is unreachable")
        code = _HOST_UNREACHABLE
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    # Connect to the address that was checked, never to the name again.
                    opened = await asyncio.open_connection(str(address), port)
            except ConnectionRefusedError:
                last, code = (
                    Failure(CONNECTION_REFUSED, f"{host}:{port} refused the connection"),
                    _CONN_REFUSED,
                )
            except TimeoutError:
                last = Failure(CONNECT_TIMEOUT, f"{host}:{port} did not accept a connection in time")
                code = _TTL_EXPIRED
            except OSError as exc:
                last, code = Failure(UNREACHABLE, f"{host}:{port} is unreachable: {exc}"), _NET_UNREACHABLE
            else:
                self.failures.pop(key, None)
                return opened
        await self._fail(writer, key, last, code)
        return None

    async def _fail(
        self, writer: asyncio.StreamWriter, key: tuple[str, int], failure: Failure, code: int
    ) -> None:
        self.failures[key] = failure
        writer.write(_reply(code))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
    """Read the greeting and a CONNECT request; returns (host, port), or None after refusing it."""
    version, n_methods = await reader.readexactly(2)
    methods = await reader.readexactly(n_methods)
    if version != 5:
        raise ValueError("not SOCKS5")
    if 0 not in methods:  # we offer no authentication, and the listener is on loopback only
        writer.write(b"\x05\xff")
        await writer.drain()
        return None
    writer.write(b"\x05\x00")
    version, command, _, address_type = await reader.readexactly(4)
    if address_type == 1:
        host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
    elif address_type == 4:
        host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
    elif address_type == 3:
        length = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(length)).decode("ascii", "replace")
    else:
        writer.write(_reply(_ATYP_UNSUPPORTED))
        await writer.drain()
        return None
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    if command != 1:  # only CONNECT: no BIND, no UDP ASSOCIATE
        writer.write(_reply(_CMD_UNSUPPORTED))
        await writer.drain()
        return None
    return host, port


def _reply(code: int) -> bytes:
    # The bound address is not used by browsers; 0.0.0.0:0 says nothing about the connection.
    return bytes([5, code, 0, 1]) + ipaddress.IPv4Address(0).packed + b"\x00\x00"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()

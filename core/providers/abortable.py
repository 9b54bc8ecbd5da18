"""HTTP connections a cancelled job's calls give up at once: the socket is shut down under the read.

A job's LLM or HTTP call spends its time blocked in a socket read, where no Python check runs. The
network backend here wraps each stream of the connection pool: while a job thread reads or writes
on it, the job's cancel scope (core/platform/cancellation.py) holds an abort that shuts the socket
down (``socket.shutdown``, from the cancelling thread). The read returns at once, the provider sees
its connection closed, the client raises a connection error and throws the connection away, and the
caller (core/providers/llm.py, core/providers/http.py) turns that error into JobCancelled. A stream
used by a thread that runs no job, or a job that is not cancelled, costs one thread-local read per
call.

Registered per read and write, not per connection: the pool hands a kept-alive connection to
whichever job asks next, and only the job using it at the moment of the cancel must lose it.

One wrapper for each HTTP stack: httpcore2 (httpx2, under the openai SDK) and httpcore (httpx).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpcore2
import httpx
import httpx2

from core.platform import cancellation


def _shutdown(stream: Any) -> None:
    sock = stream.get_extra_info("socket")
    if sock is not None:
        # socket.socket's own shutdown, also on an SSLSocket: its override drops the TLS state the
        # reading thread is using; this only ends the TCP connection under it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Abortable:
    """read and write of a stream of either stack, aborted by the job's cancel; ``close`` and the
    rest pass through."""

    _read_error: type[Exception]
    _write_error: type[Exception]

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if cancellation.is_cancelled():
            raise self._read_error("the job was cancelled")
        with cancellation.aborting(lambda: _shutdown(self._inner)):
            data: bytes = self._inner.read(max_bytes, timeout)
            return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if cancellation.is_cancelled():
            raise self._write_error("the job was cancelled")
        with cancellation.aborting(lambda: _shutdown(self._inner)):
            self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AbortableStream2(_Abortable, httpcore2.NetworkStream):
    _read_error = httpcore2.ReadError
    _write_error = httpcore2.WriteError

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        return AbortableStream2(self._inner.start_tls(ssl_context, server_hostname, timeout))


class _AbortableConnects:
    """connect_tcp of a backend of either stack: refused once the job is cancelled, and its stream
    wrapped (``_stream``)."""

    inner: Any
    _connect_error: type[Exception]
    _stream: type[_Abortable]

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        if cancellation.is_cancelled():
            raise self._connect_error("the job was cancelled")
        return self._stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class AbortableBackend2(_AbortableConnects, httpcore2.NetworkBackend):
    """httpcore2's backend (``inner``, the plain one by default) whose streams a cancel aborts."""

    _connect_error = httpcore2.ConnectError
    _stream = AbortableStream2

    def __init__(self, inner: httpcore2.NetworkBackend | None = None) -> None:
        self.inner = inner or httpcore2.SyncBackend()

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        return AbortableStream2(self.inner.connect_unix_socket(path, timeout, socket_options))


class AbortableStream(_Abortable, httpcore.NetworkStream):
    _read_error = httpcore.ReadError
    _write_error = httpcore.WriteError

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return AbortableStream(self._inner.start_tls(ssl_context, server_hostname, timeout))


class AbortableBackend(_AbortableConnects, httpcore.NetworkBackend):
    """httpcore's backend whose streams a cancel aborts (for httpx clients)."""

    _connect_error = httpcore.ConnectError
    _stream = AbortableStream

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()


def abortable_transport2(**pool: Any) -> httpx2.HTTPTransport:
    """httpx2's transport over a pool of abortable connections (``pool``: httpcore2.ConnectionPool's
    options beyond the backend)."""
    transport = httpx2.HTTPTransport(trust_env=False)
    pool.setdefault("ssl_context", httpx2.create_ssl_context())
    pool.setdefault("network_backend", AbortableBackend2())
    transport._pool = httpcore2.ConnectionPool(**pool)
    return transport


def abortable_client(**options: Any) -> httpx.Client:
    """An httpx client whose calls a job's cancel aborts (``options``: httpx.Client's)."""
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=AbortableBackend()
    )
    return httpx.Client(transport=transport, **options)

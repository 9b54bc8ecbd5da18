"""Redis clients of the broker (core/engine/broker.py) that cannot hang on a Redis that never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from core.engine.broker import REDIS_SOCKET_TIMEOUT_S, build_broker, redis_client
from core.platform.settings import Settings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_redis_clients_give_up_on_a_redis_that_never_answers(silent_server: int) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{silent_server}/0")
    for client in (redis_client(settings), build_broker(settings).client):
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < REDIS_SOCKET_TIMEOUT_S + 2
        # The socket each connection opens (before Redis's handshake) has TCP keepalive on.
        sock = client.connection_pool.make_connection()._connect()
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        finally:
            sock.close()
            client.close()
    # Only a worker's consumer blocks on purpose (no socket timeout), with keepalive all the same.
    consumer = build_broker(settings, consumer=True).client
    assert consumer.connection_pool.connection_kwargs["socket_timeout"] is None
    assert consumer.connection_pool.connection_kwargs["socket_keepalive"] is True
    consumer.close()

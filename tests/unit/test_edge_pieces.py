"""The pieces of the hostile-edge work that need no services: the key cache's bounds, trusted
proxies, HSTS, redacted errors, Chromium's environment, and Redis clients that cannot hang."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy.exc

from control_api.forwarded import ForwardedMiddleware, TrustedProxies
from control_api.headers import HSTS, add_security_headers
from core.access.keys import ApiKey, KeyCache, well_formed
from core.engine.broker import REDIS_SOCKET_TIMEOUT_S, build_broker, redis_client
from core.engine.jobs import utcnow
from core.engine.retry import error_record
from core.platform.redact import REDACTED, Redactor, provider_secrets, redacted_error
from core.platform.settings import Settings
from core.providers.browser import PASSED_ENV, browser_env
from tests.services import TEST_DATA_KEY


def _secret() -> str:
    return "jy_" + secrets.token_urlsafe(24)


def test_the_key_cache_remembers_bad_keys_long_and_stays_bounded() -> None:
    cache = KeyCache(0.05, 60.0, max_live=3, max_bad=100)
    flood = [_secret() for _ in range(1000)]
    for secret in flood:
        assert well_formed(secret)
        cache.put(secret, None)
    assert len(cache) == 100  # the oldest bad keys went first
    assert cache.get(flood[-1]) == (True, None)  # a recent bad key costs no lookup
    assert cache.get(flood[0]) == (False, None)  # one pushed out is looked up again, once
    time.sleep(0.06)
    assert cache.get(flood[-1]) == (True, None)  # bad keys outlive the live keys' short trust


def test_the_key_cache_knows_live_keys_after_their_entry_expired() -> None:
    cache = KeyCache(0.01, 60.0)
    key = ApiKey(
        id=uuid.uuid4(),
        name="k",
        prefix="jy_abcdefg",
        scopes=["jobs:read"],
        created_at=utcnow(),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    secret = _secret()
    cache.put(secret, key)
    assert cache.get(secret) == (True, key)
    time.sleep(0.02)
    assert cache.get(secret) == (False, None) and cache.known(secret)  # looked up again, at once
    cache.put(secret, None)  # revoked meanwhile
    assert cache.get(secret) == (True, None) and not cache.known(secret)


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


def _headers_for(scheme: str) -> dict[bytes, bytes]:
    message: dict[str, Any] = {
        "type": "http.response.start",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(add_security_headers(message, {"type": "http", "scheme": scheme, "path": "/v1/jobs"}))  # type: ignore[arg-type]
    return dict(message["headers"])


def test_hsts_is_sent_over_https_only() -> None:
    assert _headers_for("https")[b"strict-transport-security"] == HSTS
    assert b"strict-transport-security" not in _headers_for("http")


def test_errors_shown_to_readers_lose_secrets_and_sql_values_but_keep_their_code() -> None:
    settings = Settings(
        database_url="postgresql://jobyard:pg-Pa55word@db.internal:5432/jobyard",
        redis_url="redis://:redis-Pa55word@redis.internal:6379/0",
        whatsapp_token="EAAG-whatsapp-token-value",
        data_key=TEST_DATA_KEY,
    )
    redactor = Redactor(provider_secrets(settings))
    orig = Exception(
        'duplicate key value violates unique constraint "jobs_business_key"\n'
        "DETAIL:  Key (business_key)=(customer-4711-secret) already exists."
    )
    statement = "INSERT INTO jobs (business_key, payload) VALUES (%(business_key)s, %(payload)s)"
    params = {"business_key": "customer-4711-secret", "payload": '{"card": "4111111111111111"}'}
    errors = [
        sqlalchemy.exc.IntegrityError(statement, params, orig),
        sqlalchemy.exc.DataError(
            "SELECT %(x)s::int",
            {"x": "abc"},
            Exception(
                "invalid input syntax for type integer: \"hunter2-value\"\nLINE 1: SELECT 'hunter2-value'::int\n               ^"
            ),
        ),
        RuntimeError("could not reach postgresql://jobyard:pg-Pa55word@db.internal:5432/jobyard"),
        RuntimeError("redis said no with password redis-Pa55word and token EAAG-whatsapp-token-value"),
        RuntimeError("https://user:url-secret-99@example.com/hook answered 500"),
    ]
    for exc in errors:
        try:
            raise exc
        except Exception as raised:
            stored = error_record(raised)
        shown = redacted_error(stored, redactor)
        text = json.dumps(shown)
        for leak in ("customer-4711-secret", "4111111111111111", "hunter2-value", "pg-Pa55word",
                     "redis-Pa55word", "EAAG-whatsapp-token-value", "url-secret-99"):  # fmt: skip
            assert leak not in text, (leak, text)
        assert shown["code"] == stored["code"] and shown["retryable"] == stored["retryable"]
        assert REDACTED in text
    # The shape of the message stays: what failed, just not with what.
    shown = redacted_error(error_record(errors[0]), redactor)
    assert "duplicate key value violates unique constraint" in shown["message"]


def test_chromium_gets_none_of_the_workers_environment_but_what_it_needs() -> None:
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Berlin",
        "HOME": "/home/jobyard",
        "DATABASE_URL": "postgresql://u:p@h/db",
        "REDIS_URL": "redis://:p@h/0",
        "JOBYARD_DATA_KEY": TEST_DATA_KEY,
        "WHATSAPP_TOKEN": "t",
        "OPENAI_API_KEY": "sk-x",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "http_proxy": "http://corp-proxy:3128",  # the guard proxy must be the only way out
    }
    env = browser_env(Path("/tmp/jobyard-chromium-x"), environ)  # noqa: S108 - a path it is given
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Berlin",
        "HOME": "/tmp/jobyard-chromium-x",  # noqa: S108
        "XDG_CONFIG_HOME": "/tmp/jobyard-chromium-x/.config",  # noqa: S108
        "XDG_CACHE_HOME": "/tmp/jobyard-chromium-x/.cache",  # noqa: S108
        "XDG_DATA_HOME": "/tmp/jobyard-chromium-x/.local",  # noqa: S108
    }
    assert not any(
        "KEY" in name or "TOKEN" in name or "SECRET" in name or "URL" in name for name in PASSED_ENV
    )


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

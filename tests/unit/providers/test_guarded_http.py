"""The guarded HTTP client of tenants' LLM providers: it connects only to the address it checked, so a
name that resolves to a private address is refused at connect time whatever it resolved to when it
was set, an allow-listed pin is reached without DNS, and a tenant's chain fails over past a refused
provider (``address_refused``) without a byte sent to it."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import httpcore2
import pytest

from core.errors import AddressRefused, RetryableError
from core.platform.netguard import AllowList
from core.platform.settings import Settings
from core.providers.guarded_http import GuardedBackend
from core.providers.llm import LlmChain, ProviderConfig
from tests.services import wait_for


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on 127.0.0.1 that records each connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            accepted.append(peer[0])
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def test_a_name_resolving_to_a_private_address_is_refused_at_connect_time(
    listener: tuple[int, list[str]],
) -> None:
    port, accepted = listener
    # The name resolved to a public address when it was set; now it answers loopback (rebinding).
    backend = GuardedBackend(AllowList(), resolve=lambda host, p: ["127.0.0.1"])
    with pytest.raises(
        AddressRefused, match=re.escape("rebind.example resolves to 127.0.0.1, a loopback address")
    ):
        backend.connect_tcp("rebind.example", port)
    for literal in ("127.0.0.1", "169.254.169.254", "10.0.0.8", "::ffff:127.0.0.1"):
        with pytest.raises(AddressRefused):
            backend.connect_tcp(literal, port)
    # Every address of a name must be public: one private among public ones is enough to refuse.
    mixed = GuardedBackend(AllowList(), resolve=lambda host, p: ["1.1.1.1", "10.0.0.1"])
    with pytest.raises(AddressRefused, match="private"):
        mixed.connect_tcp("mixed.example", port)
    assert accepted == []


def test_an_allow_listed_host_is_reached_at_the_address_checked(listener: tuple[int, list[str]]) -> None:
    port, accepted = listener
    asked: list[str] = []

    def resolve(host: str, p: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    pinned = GuardedBackend(AllowList.parse(["llm.internal=127.0.0.1"]), resolve=resolve)
    pinned.connect_tcp("llm.internal", port).close()
    assert asked == []  # a pin asks no DNS
    listed = GuardedBackend(AllowList.parse(["*.internal"]), resolve=resolve)
    listed.connect_tcp("gpu.internal", port).close()
    assert asked == ["gpu.internal"]
    unresolved = GuardedBackend(AllowList(), resolve=lambda host, p: [])
    with pytest.raises(httpcore2.ConnectError, match="has no address"):
        unresolved.connect_tcp("nowhere.example", port)  # as any client's failed lookup
    wait_for(lambda: len(accepted) == 2, timeout=5, what="both connections accepted")


def test_a_tenants_chain_fails_over_past_a_refused_provider() -> None:
    settings = Settings(llm_breaker_failures=1)
    chain = LlmChain(
        settings,
        (
            ProviderConfig(
                name="metadata", base_url="http://169.254.169.254/v1", api_key="sk-x-1234567890123"
            ),
            ProviderConfig(name="loopback", base_url="http://127.0.0.1:9/v1"),
        ),
        allow=AllowList(),
        tenant="shop-a",
    )
    with pytest.raises(RetryableError) as caught:
        chain.complete([{"role": "user", "content": "hi"}])
    assert caught.value.code == "address_refused"
    assert "loopback" in str(caught.value)
    assert all(b.open for b in chain.breakers.values())  # each refusal is its provider's failure

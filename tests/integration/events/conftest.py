"""A farm that delivers webhooks to a local receiver (tests/fakes/webhook_receiver.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.platform.settings import Settings
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Farm, make_key

#: Deliveries may go to the receiver on 127.0.0.1, which the address guard refuses otherwise.
LOCAL = {"webhook_allow_hosts": ("127.0.0.1",)}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


HookedFarm = Callable[..., httpx.Client]


@pytest.fixture
def hooked_farm(settings: Settings, farm: Farm) -> Iterator[HookedFarm]:
    """Start an API, a worker and a scheduler with ``settings`` changed as asked (and deliveries to
    127.0.0.1 allowed); returns a client of the API holding a key of tenant ``shop-a``."""
    clients: list[httpx.Client] = []

    def start(**changes: Any) -> httpx.Client:
        farm.settings = settings.replace(**(LOCAL | changes))
        farm.worker()
        farm.scheduler()
        _, base = farm.api()
        key = make_key(settings, "jobs:write", "jobs:read", "ops", name="shop-a", tenant="shop-a")
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        clients.append(client)
        return client

    yield start
    for c in clients:
        c.close()


def register(client: httpx.Client, receiver: WebhookReceiver, events: list[str]) -> dict[str, Any]:
    """Register the receiver for ``events`` and give it the secret; the endpoint as answered."""
    answer = client.post("/v1/webhook-endpoints", json={"url": receiver.url, "events": events})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["secret"].startswith("whsec_")
    receiver.secret = created["secret"]
    return created["endpoint"]  # type: ignore[no-any-return]


def enqueue(client: httpx.Client, jobs: list[dict[str, Any]]) -> list[str]:
    answer = client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status_code in (200, 201), answer.text
    return [j["id"] for j in answer.json()["items"]]


def deliveries(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/webhook-deliveries", params={"limit": "500", **query})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]

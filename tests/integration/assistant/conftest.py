"""The assistant tests' farm: sending through the fake WhatsApp Cloud API, replies from a fake LLM,
and Meta's signed webhook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from core.messaging.webhook import signature
from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.whatsapp import FakeWhatsApp
from tests.integration.conftest import sending_to

APP_SECRET = "assistant-test-app-secret"


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    """The LLM every reply asks: it answers "llm says: re <the last message>"."""
    fake = FakeOpenAI("llm")
    yield fake
    fake.close()


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp, llm: FakeOpenAI) -> Settings:
    return sending_to(
        settings,
        whatsapp,
        APP_SECRET,
        openai_base_url=llm.base_url,
        openai_api_key="sk-assistant-test",
        llm_model="m",
    )


def deliver(public: TestClient[Any], body: dict[str, Any], secret: str = APP_SECRET) -> dict[str, int]:
    """POST ``body`` to the webhook signed as Meta signs it; the counts it answers."""
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", "X-Hub-Signature-256": signature(secret, raw)}
    r = public.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]

"""Done when 2 of issue 22: a running `ai_reply` whose provider takes 30 s to answer, cancelled 2 s
in, is cancelled within 5 s, the provider sees its connection closed, and the chat gets no reply."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for


@pytest.fixture
def slow_model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("slow")
    fake.hang_s = 30.0
    yield fake
    fake.close()


def test_a_cancelled_ai_reply_stops_waiting_for_its_provider(
    api: TestClient[Any], farm: Farm, settings: Settings, slow_model: FakeOpenAI, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(openai_base_url=slow_model.base_url, openai_api_key="sk-test")
    farm.worker(threads=2)
    created = api.post(
        "/v1/jobs", json={"type": "ai_reply", "payload": {"chat_id": "c9", "user_id": "u9", "message": "hi"}}
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert slow_model.holding.wait(15), "the provider never got the call"
    started = datetime.fromisoformat(api.get(f"/v1/jobs/{job_id}").json()["started_at"]).timestamp()
    wait_for(lambda: time.time() >= started + 2, timeout=5, what="2 s into the run")

    asked_at = time.time()  # before the request: its own time counts against the 5 s
    asked = api.post(f"/v1/jobs/{job_id}/cancel")
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "running" and asked.json()["cancel_requested_at"]

    done = wait_job(job_id, "cancelled", "succeeded", "retrying", "dead", timeout=5)
    assert done["status"] == "cancelled", done
    assert time.time() - asked_at < 5
    wait_for(lambda: slow_model.disconnects, timeout=5, what="the provider to see its connection closed")
    assert slow_model.disconnects[0] - asked_at < 5
    assert slow_model.calls() == 1  # not retried, and no other provider asked

    (attempt,) = api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]
    assert attempt["outcome"] == "cancelled" and attempt["error"]["code"] == "cancelled"
    # The reply's transaction rolled back: neither the user's message nor a reply was written.
    messages = api.get("/v1/chats/c9/messages")
    assert messages.status_code == 200 and messages.json()["items"] == [], messages.text

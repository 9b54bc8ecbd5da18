"""ai_reply against fake OpenAI-compatible servers: replies, the provider chain and its breakers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.provider import Respond
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for


@pytest.fixture
def primary() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("primary")
    yield fake
    fake.close()


@pytest.fixture
def secondary() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("secondary")
    yield fake
    fake.close()


def _reply(api: TestClient[Any], wait_job: JobWaiter, **payload: Any) -> dict[str, Any]:
    body = {"type": "ai_reply", "payload": {"chat_id": "c1", "user_id": "u1", **payload}}
    job = api.post("/v1/jobs", json=body)
    assert job.status_code == 201, job.text
    return wait_job(job.json()["id"], "succeeded", "dead")


def test_a_reply_lands_in_the_chat_with_usage_and_bumps_unread(
    api: TestClient[Any], farm: Farm, settings: Settings, primary: FakeOpenAI, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(
        openai_base_url=primary.base_url, openai_api_key="sk-test", llm_model="m-1"
    )
    farm.worker()
    first = _reply(api, wait_job, message="hello", system_prompt="Be brief.")
    assert first["status"] == "succeeded", first
    assert first["result"]["content"] == "primary says: re hello"
    assert first["result"]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7}
    assert (first["result"]["model"], first["result"]["provider"]) == ("m-1", "default")
    assert primary.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]

    messages = api.get("/v1/chats/c1/messages").json()["items"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("assistant", "primary says: re hello"),
        ("user", "hello"),
    ]
    assert messages[0]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7}
    assert messages[0]["provider"] == "default"
    assert api.get("/v1/unread", params={"user_id": "u1"}).json()["total"] == 1

    # The next reply sees the history.
    _reply(api, wait_job, message="and then?", history_limit=10, max_tokens=50)
    sent = primary.requests[1]
    assert [m["content"] for m in sent["messages"]] == ["hello", "primary says: re hello", "and then?"]
    assert sent["max_tokens"] == 50
    assert api.get("/v1/unread", params={"user_id": "u1"}).json()["total"] == 2


def test_the_breaker_hands_over_to_the_next_provider_and_closes_after_cool_down(
    api: TestClient[Any],
    farm: Farm,
    settings: Settings,
    primary: FakeOpenAI,
    secondary: FakeOpenAI,
    wait_job: JobWaiter,
) -> None:
    chain = [
        {"name": "primary", "base_url": primary.base_url, "api_key": "k1", "model": "p-model"},
        {"name": "secondary", "base_url": secondary.base_url, "api_key": "k2", "model": "s-model"},
    ]
    farm.settings = settings.replace(
        llm_providers=json.dumps(chain), llm_breaker_failures=2, llm_breaker_cooldown_s=3.0
    )
    farm.worker(threads=1)  # one process, so one set of breakers
    primary.default = Respond(500)

    providers = [_reply(api, wait_job, message=f"m{i}")["result"]["provider"] for i in range(4)]
    assert providers == ["secondary"] * 4
    assert primary.calls() == 2  # two failures opened its breaker; later calls skipped it
    assert secondary.calls() == 4

    primary.default = Respond(200)
    opened_at = primary.times[-1]
    wait_for(lambda: datetime.now(UTC).timestamp() > opened_at + 3.2, timeout=10, what="the cool-down")
    assert _reply(api, wait_job, message="trial")["result"]["provider"] == "primary"
    assert _reply(api, wait_job, message="closed")["result"]["provider"] == "primary"


def test_a_429_is_waited_out_and_4xx_is_permanent(
    api: TestClient[Any], farm: Farm, settings: Settings, primary: FakeOpenAI, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(openai_base_url=primary.base_url, openai_api_key="sk-test")
    farm.worker()
    farm.scheduler()
    primary.script(Respond(429, retry_after=1))
    done = _reply(api, wait_job, message="busy?")
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert primary.times[1] - primary.times[0] >= 1.0
    attempts = api.get(f"/v1/jobs/{done['id']}/attempts").json()["items"]
    assert [a["outcome"] for a in attempts] == ["rate_limited", "succeeded"]

    primary.script(Respond(400))
    dead = _reply(api, wait_job, message="bad request")
    assert (dead["status"], dead["attempts"], dead["error"]["code"]) == ("dead", 1, "provider_rejected")


def test_no_provider_configured_fails_permanently(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    dead = _reply(api, wait_job, message="anyone?")
    assert (dead["status"], dead["attempts"]) == ("dead", 1)
    assert dead["error"]["code"] == "llm_not_configured"


def test_every_morning_the_assistant_posts_the_weather_in_chat_123(
    api: TestClient[Any], farm: Farm, settings: Settings, primary: FakeOpenAI
) -> None:
    schedule = api.post(
        "/v1/schedules",
        json={
            "type": "ai_reply",
            "payload": {
                "chat_id": "123",
                "user_id": "ops",
                "message": "What is the weather in London today?",
            },
            "cron": "0 8 * * *",
            "timezone": "Europe/London",
        },
    ).json()
    slot = datetime.fromisoformat(schedule["next_run_at"])
    assert slot.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") == "08:00"
    # Put the farm's clock two seconds before the next 08:00 in London.
    offset = (slot - timedelta(seconds=2) - datetime.now(UTC)).total_seconds()
    farm.settings = settings.replace(
        clock_offset_s=offset, openai_base_url=primary.base_url, openai_api_key="sk-test"
    )
    farm.worker()
    farm.scheduler()

    def posted() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = api.get("/v1/chats/123/messages").json()["items"]
        return items if any(m["role"] == "assistant" for m in items) else []

    messages = wait_for(posted, timeout=30, what="the morning post")
    assert messages[0]["content"] == "primary says: re What is the weather in London today?"
    after = api.get(f"/v1/schedules/{schedule['id']}").json()
    london = ZoneInfo("Europe/London")
    following = datetime.fromisoformat(after["next_run_at"]).astimezone(london)
    assert (following.date(), following.strftime("%H:%M")) == (
        slot.astimezone(london).date() + timedelta(days=1),
        "08:00",
    )

"""Chats and unread counters per tenant: two tenants both have chat `c1` and user `u1`, and each
tenant's jobs write and read only its own. A reply's history is its tenant's chat only, a tenant's
key lists and marks read only its own chats and counters, another tenant's chat reads as one that
never existed, and an admin key reads both, each item naming its tenant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import chats, jobs, unread_counters
from tests.fakes.openai import FakeOpenAI
from tests.integration.access.test_tenant_jobs import Caller
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("llm")
    yield fake
    fake.close()


def _job(caller: Caller, wait_job: JobWaiter, type_: str, **payload: Any) -> dict[str, Any]:
    created = caller.request("POST", "/v1/jobs", json={"type": type_, "payload": payload})
    assert created.status_code == 201, created.text
    assert created.json()["tenant"] == caller.tenant
    return wait_job(created.json()["id"])


def _messages(caller: Caller, chat_id: str) -> list[tuple[str, str, str]]:
    answer = caller.request("GET", f"/v1/chats/{chat_id}/messages")
    assert answer.status_code == 200, answer.text
    return [(m["role"], m["content"], m["tenant"]) for m in answer.json()["items"]]


def test_two_tenants_chat_c1_are_two_chats(
    api: TestClient[Any], farm: Farm, settings: Settings, llm: FakeOpenAI, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(openai_base_url=llm.base_url, openai_api_key="sk-test", llm_model="m")
    farm.worker()
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")

    _job(a, wait_job, "ai_reply", chat_id="c1", user_id="u1", message="a: where is order 7?")
    _job(b, wait_job, "ai_reply", chat_id="c1", user_id="u1", message="b: my secret address")
    # b's next reply is sent b's chat so far, and nothing of a's.
    _job(b, wait_job, "ai_reply", chat_id="c1", user_id="u1", message="b: and then?")
    assert [m["content"] for m in llm.requests[-1]["messages"]] == [
        "b: my secret address",
        "llm says: re b: my secret address",
        "b: and then?",
    ]
    assert _messages(a, "c1") == [
        ("assistant", "llm says: re a: where is order 7?", "shop-a"),
        ("user", "a: where is order 7?", "shop-a"),
    ]
    assert [content for _, content, _ in _messages(b, "c1")] == [
        "llm says: re b: and then?",
        "b: and then?",
        "llm says: re b: my secret address",
        "b: my secret address",
    ]

    # Unread counts: each tenant's replies bump its own counter of (u1, c1).
    _job(a, wait_job, "unread_count", chat_id="c1", user_id="u1", by=5)
    a_unread = {"items": [{"chat_id": "c1", "unread": 6, "tenant": "shop-a"}], "total": 6}
    b_unread = {"items": [{"chat_id": "c1", "unread": 2, "tenant": "shop-b"}], "total": 2}
    assert a.request("GET", "/v1/unread", params={"user_id": "u1"}).json() == a_unread
    assert b.request("GET", "/v1/unread", params={"user_id": "u1"}).json() == b_unread

    # b marks its c1 read: a's counter is untouched, and a recount in a counts a's messages only.
    read = b.request("POST", "/v1/chats/c1/read", json={"user_id": "u1"})
    assert read.json() == {"chat_id": "c1", "unread": 0, "tenant": "shop-b"}
    assert b.request("GET", "/v1/unread", params={"user_id": "u1"}).json() == {"items": [], "total": 0}
    assert a.request("GET", "/v1/unread", params={"user_id": "u1"}).json() == a_unread
    recount = _job(a, wait_job, "unread_count", chat_id="c1", user_id="u1", op="recount")
    assert recount["result"] == {"chat_id": "c1", "unread": 1}  # a's one assistant reply

    # The admin key reads both tenants' c1, each message and count naming its tenant.
    everyone = api.get("/v1/chats/c1/messages").json()["items"]
    assert Counter(m["tenant"] for m in everyone) == {"shop-a": 2, "shop-b": 4}
    assert {(i["tenant"], i["unread"]) for i in api.get("/v1/unread?user_id=u1").json()["items"]} == {
        ("shop-a", 1)
    }
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(chats.c.id, chats.c.tenant).order_by(chats.c.tenant)).all()
    assert [tuple(r) for r in rows] == [("c1", "shop-a"), ("c1", "shop-b")]


def test_another_tenants_chat_reads_as_one_that_never_existed(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.worker()
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    _job(a, wait_job, "unread_count", chat_id="a-only", user_id="a-user", by=3)
    never = {"items": [], "next_cursor": None}

    assert b.request("GET", "/v1/chats/a-only/messages").json() == never
    assert (
        b.request("GET", "/v1/chats/a-only/messages").json()
        == b.request("GET", "/v1/chats/no-such-chat/messages").json()
    )
    assert b.request("GET", "/v1/unread", params={"user_id": "a-user"}).json() == {"items": [], "total": 0}
    # Marking a's chat read from b makes b's own counter; a's count stays.
    read = b.request("POST", "/v1/chats/a-only/read", json={"user_id": "a-user"})
    assert (read.status_code, read.json()) == (200, {"chat_id": "a-only", "unread": 0, "tenant": "shop-b"})
    assert a.request("GET", "/v1/unread", params={"user_id": "a-user"}).json()["total"] == 3
    with transaction(settings) as conn:
        counters = conn.execute(
            sa.select(unread_counters.c.tenant, unread_counters.c.unread).order_by(unread_counters.c.tenant)
        ).all()
    assert [tuple(r) for r in counters] == [("shop-a", 3), ("shop-b", 0)]


def test_a_batch_of_two_tenants_increments_counts_each_tenants_own(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    # Queued before any worker runs, so the worker finds both tenants' jobs waiting and batches them.
    for caller, n in ((a, 30), (b, 20)):
        body = [{"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1"}} for _ in range(n)]
        assert caller.request("POST", "/v1/jobs/batch", json={"jobs": body}).status_code == 201
    farm.worker(processes=1, threads=1)

    def done() -> list[Any] | None:
        with transaction(settings) as conn:
            rows = conn.execute(
                sa.select(jobs.c.tenant, jobs.c.status, jobs.c.result, jobs.c.started_at)
            ).all()
        return rows if all(r.status == "succeeded" for r in rows) else None

    rows = wait_for(done, timeout=60, what="50 unread_count jobs")
    # Each job's count is the running count of its own tenant's counter.
    for tenant, n in (("shop-a", 30), ("shop-b", 20)):
        assert sorted(r.result["unread"] for r in rows if r.tenant == tenant) == list(range(1, n + 1))
    assert a.request("GET", "/v1/unread", params={"user_id": "u1"}).json()["total"] == 30
    assert b.request("GET", "/v1/unread", params={"user_id": "u1"}).json()["total"] == 20
    # They really ran together: some claim held both tenants' jobs.
    tenants_per_claim: dict[Any, set[str]] = {}
    for r in rows:
        tenants_per_claim.setdefault(r.started_at, set()).add(r.tenant)
    assert {"shop-a", "shop-b"} in tenants_per_claim.values()

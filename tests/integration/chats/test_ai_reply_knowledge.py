"""ai_reply with `knowledge` (RAG) on a farm laid out as `jobyard up` lays it out: the reply's worker
(no model) has the question embedded by an embeddings worker over Redis, gives the fake LLM the
nearest chunks of the job's tenant's collection, and records which ones; another tenant's collection
of the same name is never read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.launch.roles import queues_except
from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.integration.embeddings.test_embed import MODEL_DIR, _has_torch

# Nothing may come from the Hugging Face Hub: the farm processes inherit HF_HUB_OFFLINE=1.
pytestmark = pytest.mark.usefixtures("hf_offline")

TEAPOT = "Our classic ceramic teapot is in stock in blue, in green and in white; the blue one holds a litre."
#: A shop's page of 3,000 characters about delivery, with the teapot near its end: several chunks.
TEAPOT_PAGE = (
    " ".join(f"Delivery note {i}: parcels leave the warehouse on weekdays before noon." for i in range(38))
    + " "
    + TEAPOT
)
SHOP_A = {
    "teapot-page": TEAPOT_PAGE,
    "kettle": "The stainless steel kettle boils water in two minutes.",
    "mug": "A stoneware mug with a wide handle, dishwasher safe.",
    "returns": "Returns are free within thirty days of delivery.",
}
#: The other tenant's `products`: a closer match for the question, which shop-a must never be given.
SHOP_B = {"blue-teapot": "SHOP-B-ONLY: yes, we have the teapot in blue, a blue teapot, blue teapots."}
QUESTION = "Do you have the teapot in blue?"


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("shop-llm")
    yield fake
    fake.close()


class Tenant:
    def __init__(self, api: TestClient[Any], settings: Settings, name: str) -> None:
        self.api = api
        secret = make_key(settings, "jobs:write", "jobs:read", name=f"{name} backend", tenant=name)
        self.headers = {"Authorization": f"Bearer {secret}"}

    def post_job(self, type_: str, payload: dict[str, Any]) -> Any:
        return self.api.post("/v1/jobs", json={"type": type_, "payload": payload}, headers=self.headers)

    def run(self, wait_job: JobWaiter, type_: str, payload: dict[str, Any], timeout: float = 60) -> Any:
        created = self.post_job(type_, payload)
        assert created.status_code == 201, created.text
        return wait_job(created.json()["id"], "succeeded", "dead", timeout=timeout)

    def embed(self, wait_job: JobWaiter, docs: dict[str, str]) -> None:
        documents = [{"id": i, "text": t} for i, t in docs.items()]
        job = self.run(wait_job, "embed", {"collection": "products", "documents": documents}, timeout=120)
        assert job["status"] == "succeeded", job


def test_a_reply_is_given_the_nearest_chunks_of_its_tenants_collection_and_records_them(
    api: TestClient[Any], farm: Farm, settings: Settings, llm: FakeOpenAI, wait_job: JobWaiter
) -> None:
    base = settings.replace(
        embedding_model=MODEL_DIR, openai_base_url=llm.base_url, openai_api_key="sk-test", llm_model="m-1"
    )
    farm.settings = base.replace(worker_queues=queues_except(base, (EMBEDDINGS_QUEUE,)))
    light = farm.worker(threads=2)
    farm.settings = base.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    farm.worker(threads=2)
    shop_a, shop_b, shop_c = (Tenant(api, settings, name) for name in ("shop-a", "shop-b", "shop-c"))
    shop_a.embed(wait_job, SHOP_A)
    shop_b.embed(wait_job, SHOP_B)

    payload = {
        "chat_id": "c1",
        "user_id": "u1",
        "message": QUESTION,
        "system_prompt": "You are the shop's assistant.",
        "knowledge": {"collection": "products", "k": 2},
    }
    job = shop_a.run(wait_job, "ai_reply", payload)
    assert job["status"] == "succeeded", job

    # The model was given the teapot's chunk, after the system prompt and before the question.
    (sent,) = llm.requests
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user"]
    assert sent["messages"][0]["content"] == "You are the shop's assistant."
    given = sent["messages"][1]["content"]
    assert given.startswith("Answer from these documents:")
    assert TEAPOT in given
    assert "SHOP-B-ONLY" not in str(sent)  # never another tenant's documents
    assert sent["messages"][2]["content"] == QUESTION

    used = job["result"]["knowledge"]
    assert used["collection"] == "products"
    first = used["documents"][0]
    assert first["id"] == "teapot-page" and first["chunk"] > 0  # the page's last chunk, not its first
    assert f"[document teapot-page, chunk {first['chunk']}]\n" in given
    assert len(used["documents"]) == 2
    assert {d["id"] for d in used["documents"]} <= set(SHOP_A)
    distances = [d["distance"] for d in used["documents"]]
    assert distances == sorted(distances) and 0 <= distances[0] < 1

    # The stored reply shows the same documents in the chat.
    messages = api.get("/v1/chats/c1/messages", headers=shop_a.headers).json()["items"]
    assert [m["role"] for m in messages] == ["assistant", "user"]
    assert messages[0]["knowledge"] == used
    assert messages[1]["knowledge"] is None

    # A tenant without `products` (shop-b has one of that name): dead at once, nothing asked.
    missing = shop_c.run(wait_job, "ai_reply", payload)
    assert (missing["status"], missing["attempts"]) == ("dead", 1)
    assert missing["error"]["code"] == "collection_not_found"
    assert "products" in missing["error"]["message"]
    assert len(llm.requests) == 1

    # Replying to the chat so far (no message): the question is the chat's latest user message.
    again = shop_a.run(
        wait_job,
        "ai_reply",
        {"chat_id": "c1", "user_id": "u1", "knowledge": {"collection": "products", "k": 1}},
    )
    assert again["status"] == "succeeded", again
    assert [d["id"] for d in again["result"]["knowledge"]["documents"]] == ["teapot-page"]
    assert TEAPOT in llm.requests[1]["messages"][0]["content"]

    # The reply's worker had the question embedded elsewhere: it never loaded torch.
    assert not _has_torch(light.proc.pid)


def test_knowledge_is_checked_when_the_job_is_enqueued(api: TestClient[Any]) -> None:
    for knowledge in ({"collection": "products", "k": 0}, {"collection": "products", "k": 21}, {"k": 4}):
        payload = {"chat_id": "c1", "user_id": "u1", "message": "hi", "knowledge": knowledge}
        refused = api.post("/v1/jobs", json={"type": "ai_reply", "payload": payload})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "validation_error"
        assert [d["field"] for d in error["details"]] == ["payload.knowledge"]

"""The hosted embedding backend (huggingface-hub's InferenceClient) against a fake
text-embeddings-inference server: vectors stored, provider errors mapped onto retries, and searches
embedded by the API process itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.platform.settings import Settings
from tests.fakes.embeddings import DIM, FakeEmbeddingServer
from tests.integration.conftest import Farm, JobWaiter

MODEL = "fake-org/tei-model"
DOCS = [
    {"id": "cat", "text": "the cat sleeps on the warm sofa"},
    {"id": "car", "text": "the car needs new brake pads"},
    {"id": "soup", "text": "tomato soup with fresh basil"},
]


@pytest.fixture
def tei() -> Iterator[FakeEmbeddingServer]:
    server = FakeEmbeddingServer()
    yield server
    server.close()


@pytest.fixture
def hosted(settings: Settings, tei: FakeEmbeddingServer) -> Settings:
    return settings.replace(
        embedding_backend="inference",
        embedding_inference_url=tei.url,
        embedding_model=MODEL,
        embedding_batch=2,
    )


def _embed(
    api: TestClient[Any], wait_job: JobWaiter, *statuses: str, collection: str = "kb"
) -> dict[str, Any]:
    payload = {"collection": collection, "documents": DOCS}
    response = api.post("/v1/jobs", json={"type": "embed", "payload": payload})
    assert response.status_code == 201, response.text
    return wait_job(response.json()["id"], *(statuses or ("succeeded",)), timeout=30)


def test_hosted_backend_embeds_retries_and_serves_searches(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, hosted: Settings, tei: FakeEmbeddingServer
) -> None:
    farm.settings = hosted.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    farm.worker(threads=2)
    farm.scheduler()  # publishes the retries

    tei.fail(503)  # the first batch fails once: the attempt is retried
    tei.fail(429, retry_after="1")  # then the provider asks for a pause, which costs no retry
    job = _embed(api, wait_job)
    assert job["result"] == {"embedded": 3, "skipped_unchanged": 0, "chunks": 3, "dim": DIM, "model": MODEL}
    assert [len(batch) for batch in tei.inputs] == [2, 1]  # JOBYARD_EMBEDDING_BATCH texts per request
    outcomes = [
        (a["outcome"], (a["error"] or {}).get("code"))
        for a in api.get(f"/v1/jobs/{job['id']}/attempts").json()["items"]
    ]
    assert outcomes == [
        ("failed", "provider_unavailable"),
        ("rate_limited", "rate_limited"),
        ("succeeded", None),
    ]

    # The API embeds the query itself through the same hosted model: no embeddings worker involved.
    from control_api.app import create_app

    with TestClient(create_app(hosted, configure_logs=False)) as client:
        client.headers["Authorization"] = api.headers["Authorization"]
        found = client.get("/v1/collections/kb/search", params={"q": "a cat on the sofa", "k": 3})
        assert found.status_code == 200, found.text
        assert found.json()["items"][0]["id"] == "cat"
        assert tei.inputs[-1] == ["a cat on the sofa"]
        tei.fail(429, retry_after="3")
        limited = client.get("/v1/collections/kb/search", params={"q": "cat"})
        assert (limited.status_code, limited.headers.get("retry-after")) == (429, "3")
        tei.fail(503)
        down = client.get("/v1/collections/kb/search", params={"q": "cat"})
        assert (down.status_code, down.json()["error"]["code"]) == (503, "provider_unavailable")

    tei.fail(401)  # a bad token: no retry helps
    dead = _embed(api, wait_job, "dead", collection="kb2")
    assert (dead["error"]["code"], dead["attempts"]) == ("provider_rejected", 1)

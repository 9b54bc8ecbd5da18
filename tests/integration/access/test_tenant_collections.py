"""Embedding collections per tenant, with the hosted backend against a fake embeddings server: two
tenants both embed into `products`, with the same document ids and even the same texts, and each
reads and searches only its own. Another tenant's collection answers 404 exactly as one that never
existed; an admin key reaches both, naming the tenant with `?tenant=`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import embedding_documents
from tests.fakes.embeddings import FakeEmbeddingServer
from tests.integration.access.test_tenant_jobs import Caller
from tests.integration.conftest import Farm, JobWaiter

MODEL = "fake-org/tei-model"


@pytest.fixture
def tei() -> Iterator[FakeEmbeddingServer]:
    server = FakeEmbeddingServer()
    yield server
    server.close()


@pytest.fixture
def settings(settings: Settings, tei: FakeEmbeddingServer) -> Settings:
    """The hosted backend for the workers and the API alike: the API embeds search queries itself."""
    return settings.replace(
        embedding_backend="inference", embedding_inference_url=tei.url, embedding_model=MODEL
    )


def _embed(caller: Caller, wait_job: JobWaiter, collection: str, *docs: tuple[str, str]) -> dict[str, Any]:
    documents = [{"id": i, "text": t, "metadata": {"owner": caller.tenant}} for i, t in docs]
    payload = {"collection": collection, "documents": documents}
    created = caller.request("POST", "/v1/jobs", json={"type": "embed", "payload": payload})
    assert created.status_code == 201, created.text
    result: dict[str, Any] = wait_job(created.json()["id"], timeout=30)["result"]
    return result


def _search(caller: Caller, name: str, q: str, **params: str) -> list[tuple[str, str, str]]:
    found = caller.request("GET", f"/v1/collections/{name}/search", params={"q": q, "k": 10, **params})
    assert found.status_code == 200, found.text
    return [(h["id"], h["text"], h["metadata"]["owner"]) for h in found.json()["items"]]


def _not_found_like_a_ghost(caller: Caller, path: str, name: str, **params: str) -> None:
    """``path`` answers exactly as the same path for a collection no tenant ever made."""
    answer = caller.request("GET", path, params=params)
    ghost = caller.request("GET", path.replace(name, "never-made"), params=params)
    assert (answer.status_code, ghost.status_code) == (404, 404), answer.text
    assert answer.json() == json.loads(ghost.text.replace("never-made", name))
    assert answer.json()["error"]["code"] == "collection_not_found"


def test_two_tenants_products_are_two_collections(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    farm.worker(threads=2)
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")

    made = _embed(a, wait_job, "products", ("p1", "red teapot for four"), ("p2", "green teapot lid"))
    assert (made["embedded"], made["skipped_unchanged"]) == (2, 0)
    # b's p1 has a's very text: b's collection holds no such document yet, so it is embedded, not
    # skipped as unchanged; and b's p3 lands in b's products only.
    theirs = _embed(b, wait_job, "products", ("p1", "red teapot for four"), ("p3", "blue bicycle helmet"))
    assert (theirs["embedded"], theirs["skipped_unchanged"]) == (2, 0)
    assert _embed(b, wait_job, "products", ("p1", "red teapot for four"))["skipped_unchanged"] == 1

    mine = a.request("GET", "/v1/collections/products").json()
    assert (mine["name"], mine["tenant"], mine["model"], mine["documents"]) == (
        "products",
        "shop-a",
        MODEL,
        2,
    )
    assert b.request("GET", "/v1/collections/products").json()["documents"] == 2
    assert b.request("GET", "/v1/collections/products").json()["tenant"] == "shop-b"
    assert sorted(_search(a, "products", "teapot")) == [
        ("p1", "red teapot for four", "shop-a"),
        ("p2", "green teapot lid", "shop-a"),
    ]
    found = _search(b, "products", "teapot")
    assert sorted(found) == [("p1", "red teapot for four", "shop-b"), ("p3", "blue bicycle helmet", "shop-b")]
    assert b.request("GET", "/v1/collections/products/search", params={"q": "x"}).json()["tenant"] == "shop-b"

    # Neither write touched the other tenant's rows.
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(embedding_documents.c.tenant, embedding_documents.c.id, embedding_documents.c.metadata)
        ).all()
    assert sorted((r.tenant, r.id, r.metadata["owner"]) for r in rows) == [
        ("shop-a", "p1", "shop-a"),
        ("shop-a", "p2", "shop-a"),
        ("shop-b", "p1", "shop-b"),
        ("shop-b", "p3", "shop-b"),
    ]

    # The admin key names the tenant; without one it reads its own tenant's, here none, so the first.
    assert api.get("/v1/collections/products", params={"tenant": "shop-b"}).json()["tenant"] == "shop-b"
    assert api.get("/v1/collections/products").json()["tenant"] == "shop-a"
    admin_search = api.get("/v1/collections/products/search", params={"q": "helmet", "tenant": "shop-b"})
    assert {h["metadata"]["owner"] for h in admin_search.json()["items"]} == {"shop-b"}
    # A tenant's key naming its own tenant reads its own; naming another finds nothing.
    assert a.request("GET", "/v1/collections/products", params={"tenant": "shop-a"}).json()["documents"] == 2
    _not_found_like_a_ghost(a, "/v1/collections/products", "products", tenant="shop-b")


def test_another_tenants_collection_does_not_exist_for_a_caller(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter, tei: FakeEmbeddingServer
) -> None:
    farm.settings = settings.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    farm.worker(threads=2)
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    _embed(a, wait_job, "a-private", ("secret", "the supplier price list"))
    queries = len(tei.inputs)

    _not_found_like_a_ghost(b, "/v1/collections/a-private", "a-private")
    _not_found_like_a_ghost(b, "/v1/collections/a-private/search", "a-private", q="supplier price")
    assert len(tei.inputs) == queries  # refused before the query was embedded
    assert a.request("GET", "/v1/collections/a-private").json()["documents"] == 1

"""Long documents with the real all-MiniLM-L6-v2 weights, offline: a 10,000-character document is a row
per chunk; a search finds it by the chunk near its end, once per document; an unchanged re-embed
touches no row; a changed, shorter text leaves no stale chunk."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.embeddings.chunks import Chunking, split
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import embedding_documents
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.embeddings.test_embed import embed, embeddings_worker

# Nothing may come from the Hugging Face Hub: the farm processes inherit HF_HUB_OFFLINE=1.
pytestmark = pytest.mark.usefixtures("hf_offline")

LIGHTHOUSE = "The lighthouse keeper polished the brass lamp every night before the storm."
#: 10,000 characters about a garden, with the lighthouse sentence near the end.
GARDEN = " ".join(
    f"Garden diary entry {i}: the roses by the hedge were watered and the tomatoes staked."
    for i in range(130)
)
LONG = (GARDEN[: 10_000 - len(LIGHTHOUSE) - 300] + " " + LIGHTHOUSE + " " + GARDEN[:299])[:10_000]
SHORT = {
    "cat": "The cat curled up on the sofa and purred.",
    "car": "The car's engine needs an oil change every 10,000 km.",
    "bread": "Bake the bread for forty minutes until golden.",
}


def _rows(settings: Settings, doc_id: str) -> list[Any]:
    d = embedding_documents.c
    with transaction(settings) as conn:
        return list(
            conn.execute(
                sa.select(d.chunk, d.text, d.updated_at, d.text_sha256)
                .where(d.collection == "kb", d.id == doc_id)
                .order_by(d.chunk)
            ).all()
        )


def _documents(long_text: str) -> list[dict[str, Any]]:
    return [{"id": "long", "text": long_text}, *({"id": i, "text": t} for i, t in SHORT.items())]


def test_a_long_document_is_chunked_searched_by_its_chunks_and_skipped_when_unchanged(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, settings: Settings
) -> None:
    embeddings_worker(farm)  # the defaults: 1,000-character chunks overlapping by 200
    assert len(LONG) == 10_000 and LONG.count(LIGHTHOUSE) == 1
    expected = split(LONG, Chunking(settings.embed_chunk_chars, settings.embed_chunk_overlap))
    assert len(expected) >= 10
    job = embed(api, wait_job, {"collection": "kb", "documents": _documents(LONG)})
    assert job["result"]["embedded"] == 4 and job["result"]["skipped_unchanged"] == 0
    assert job["result"]["chunks"] == len(expected) + 3

    rows = _rows(settings, "long")
    assert [r.text for r in rows] == expected
    assert [r.chunk for r in rows] == list(range(len(expected)))
    assert [r.chunk for r in _rows(settings, "cat")] == [0]
    assert api.get("/v1/collections/kb").json()["documents"] == 4  # documents, not chunks

    # The phrase near the end finds the document, by the chunk that holds it.
    found = api.get("/v1/collections/kb/search", params={"q": "a lighthouse keeper and his lamp", "k": 4})
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    holding = max(i for i, text in enumerate(expected) if LIGHTHOUSE in text)
    assert (items[0]["id"], items[0]["chunk"]) == ("long", holding)
    assert LIGHTHOUSE in items[0]["text"]
    # Each document once, though the long one has many chunks nearer than the short documents.
    assert sorted(hit["id"] for hit in items) == ["bread", "car", "cat", "long"]
    assert {hit["chunk"] for hit in items if hit["id"] != "long"} == {0}

    # The same texts again: nothing is embedded and no row is written.
    before = {r.chunk: r.updated_at for r in rows}
    again = embed(api, wait_job, {"collection": "kb", "documents": _documents(LONG)})
    assert again["result"] | {"dim": 0, "model": ""} == {
        "embedded": 0,
        "skipped_unchanged": 4,
        "chunks": 0,
        "dim": 0,
        "model": "",
    }
    assert {r.chunk: r.updated_at for r in _rows(settings, "long")} == before

    # A changed, shorter text: its chunks are the new text's alone, none of the old ones left.
    shorter = LONG[:2500]
    changed = embed(api, wait_job, {"collection": "kb", "documents": _documents(shorter)})
    assert (changed["result"]["embedded"], changed["result"]["skipped_unchanged"]) == (1, 3)
    new_rows = _rows(settings, "long")
    assert [r.text for r in new_rows] == split(shorter, Chunking(1000, 200))
    assert len(new_rows) == 3
    assert {r.text_sha256 for r in new_rows} == {new_rows[0].text_sha256} != {rows[0].text_sha256}
    top = api.get("/v1/collections/kb/search", params={"q": "a lighthouse keeper and his lamp", "k": 4})
    assert all(LIGHTHOUSE not in hit["text"] for hit in top.json()["items"])


def test_a_payload_chooses_its_own_chunk_size(api: TestClient[Any], farm: Farm, wait_job: JobWaiter) -> None:
    embeddings_worker(farm)
    payload = {"collection": "kb", "documents": [{"id": "long", "text": LONG}], "chunk_chars": 5000}
    job = embed(api, wait_job, {**payload, "chunk_overlap": 0})
    assert job["result"]["chunks"] == len(split(LONG, Chunking(5000, 0))) == 3  # cut at whitespace
    refused = api.post("/v1/jobs", json={"type": "embed", "payload": {**payload, "chunk_overlap": 2501}})
    assert refused.status_code == 422
    assert "half the chunk size" in refused.text


def test_farm_chunk_settings_a_payload_cannot_meet_fail_its_job_with_a_code(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    embeddings_worker(farm, embed_chunk_chars=1000, embed_chunk_overlap=200)
    payload = {"collection": "kb", "documents": [{"id": "long", "text": LONG}], "chunk_chars": 300}
    dead = embed(api, wait_job, payload, "dead")
    assert (dead["error"]["code"], dead["attempts"]) == ("invalid_chunking", 1)
    assert "JOBYARD_EMBED_CHUNK_OVERLAP" in dead["error"]["message"]

"""Migration 0022 makes every stored document its chunk 0: collections embedded before it are counted,
searched and skipped when unchanged as before, and a document re-embedded longer gets more chunks.
Chat messages of before have no `knowledge`. Its downgrade keeps each document's chunk 0."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from control_api.app import create_app
from core.embeddings.chunks import Chunking
from core.embeddings.embed import Document, EmbedPayload, embed_documents, get_collection, search, text_sha256
from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from tests import services as test_services
from tests.integration.conftest import database_at, downgrade, make_key

TEXT = "a document embedded before chunks"


class ThreeDimensions:
    """An embedding backend of three dimensions, counting what it embeds."""

    model = "m"
    batch = 64

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def load(self) -> None:
        pass

    def dimension(self) -> int:
        return 3

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return [[1.0, 0.0, 0.0] for _ in texts]


BEFORE = [
    "INSERT INTO chats (id) VALUES ('c1')",
    "INSERT INTO chat_messages (id, chat_id, role, content) VALUES (gen_random_uuid(), 'c1', 'user', 'hi')",
    "INSERT INTO embedding_collections (name, model, dim) VALUES ('kb', 'm', 3)",
    "INSERT INTO embedding_documents (collection, id, text, text_sha256, model, dim, embedding) "
    f"VALUES ('kb', 'd1', '{TEXT}', '{text_sha256(TEXT)}', 'm', 3, '[1,0,0]'), "
    "('kb', 'd2', 'another', 'sha-of-another', 'm', 3, '[0,1,0]')",
]


@pytest.fixture
def at_0021(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, "0021") as migrated:
        yield migrated


def _chunks(settings: Settings) -> list[tuple[str, int]]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.text("SELECT id, chunk FROM embedding_documents ORDER BY id, chunk")).all()
    return [(r.id, r.chunk) for r in rows]


def _embed(settings: Settings, backend: ThreeDimensions, **texts: str) -> dict[str, Any]:
    payload = EmbedPayload(collection="kb", documents=[Document(id=i, text=t) for i, t in texts.items()])
    with transaction(settings) as conn:
        return embed_documents(conn, "default", payload, backend, Chunking(100, 20))


def test_documents_of_before_are_chunk_0_and_keep_working(at_0021: Settings) -> None:
    with transaction(at_0021) as conn:
        for statement in BEFORE:
            conn.execute(sa.text(statement))
    upgrade(at_0021)

    assert _chunks(at_0021) == [("d1", 0), ("d2", 0)]
    with transaction(at_0021) as conn:
        collection = get_collection(conn, "default", "kb")
        assert collection is not None
        hits = search(conn, collection, [1.0, 0.0, 0.0], 5)
        assert conn.execute(sa.text("SELECT knowledge FROM chat_messages")).scalars().all() == [None]
    assert [(h.id, h.chunk, h.text) for h in hits] == [("d1", 0, TEXT), ("d2", 0, "another")]
    reader = make_key(at_0021, "jobs:read", name="shop backend")
    with TestClient(create_app(at_0021, configure_logs=False)) as api:
        api.headers["Authorization"] = f"Bearer {reader}"
        assert api.get("/v1/collections/kb").json()["documents"] == 2
        (message,) = api.get("/v1/chats/c1/messages").json()["items"]
        assert (message["content"], message["knowledge"]) == ("hi", None)

    # Its stored hash still skips the unchanged text; a longer one is chunked.
    backend = ThreeDimensions()
    assert _embed(at_0021, backend, d1=TEXT)["skipped_unchanged"] == 1
    assert backend.embedded == []
    longer = " ".join([TEXT] * 8)  # 271 characters: 4 chunks of at most 100
    assert _embed(at_0021, backend, d1=longer)["chunks"] == 4
    assert _chunks(at_0021) == [("d1", 0), ("d1", 1), ("d1", 2), ("d1", 3), ("d2", 0)]

    # Down: one row per document again, its chunk 0; and up again.
    downgrade(at_0021, "0021")
    with transaction(at_0021) as conn:
        rows = conn.execute(sa.text("SELECT id FROM embedding_documents ORDER BY id")).scalars().all()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("embedding_documents")}
    assert rows == ["d1", "d2"] and "chunk" not in columns
    upgrade(at_0021)
    assert _chunks(at_0021) == [("d1", 0), ("d2", 0)]

"""/v1/collections: what the embeddings workers stored, and nearest-document search."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import sqlalchemy as sa
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter

from control_api.auth import requires
from core.embeddings.embed import MAX_K, Collection, Hit, get_collection, search
from core.embeddings.queries import query_vector
from core.errors import CollectionNotFound
from core.platform.db import transaction
from core.platform.tables import embedding_collections, embedding_documents


class CollectionOut(msgspec.Struct):
    name: str
    model: str
    dim: int
    documents: int
    created_at: datetime
    updated_at: datetime


class SearchOut(msgspec.Struct):
    collection: str
    model: str
    #: Nearest first; ``score`` is the cosine similarity to the query.
    items: list[Hit]


def _collection(state: State, name: str) -> Collection:
    with transaction(state.settings) as conn:
        found = get_collection(conn, name)
    if found is None:
        raise CollectionNotFound(f"no collection {name!r}")
    return found


class CollectionsController(Controller):
    path = "/v1/collections"
    tags = ["embeddings"]

    @get("/{name:str}", guards=[requires("jobs:read")], sync_to_thread=True)
    def collection(self, state: State, name: FromPath[str]) -> CollectionOut:
        c, d = embedding_collections.c, embedding_documents.c
        count = sa.select(sa.func.count()).where(d.collection == c.name).scalar_subquery()
        with transaction(state.settings) as conn:
            row = conn.execute(
                sa.select(c.name, c.model, c.dim, count.label("documents"), c.created_at, c.updated_at).where(
                    c.name == name
                )
            ).first()
        if row is None:
            raise CollectionNotFound(f"no collection {name!r}")
        return CollectionOut(**row._asdict())

    @get("/{name:str}/search", guards=[requires("jobs:read")], sync_to_thread=True)
    def search(
        self,
        state: State,
        name: FromPath[str],
        q: Annotated[str, QueryParameter(min_length=1, max_length=2000, description="The query text.")],
        k: Annotated[int, QueryParameter(ge=1, le=MAX_K, description="Documents to return.")] = 5,
    ) -> SearchOut:
        """The ``k`` documents nearest to ``q``, embedded with the collection's own model."""
        collection = _collection(state, name)
        # QueryNotEmbedded: 503, or 409 for another model than this farm's, 429 for a rate limit.
        vector = query_vector(state.settings, state.query_redis, collection.model, q)
        with transaction(state.settings) as conn:
            hits = search(conn, collection, vector, k)
        return SearchOut(collection.name, collection.model, hits)

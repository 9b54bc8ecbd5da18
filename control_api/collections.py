"""/v1/collections: what the embeddings workers stored, and nearest-document search.

A collection name is unique within a tenant, so a lookup names a tenant too: the key's own, or for
an admin key, the one ``?tenant=`` names (by default its own tenant's collection of that name if it
has one, else another tenant's, the first by name). Another tenant's collection answers 404 exactly
as one that never existed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from sqlalchemy.engine import Connection

from control_api.auth import requires
from core.access.keys import ApiKey
from core.embeddings.embed import MAX_K, Collection, Hit, find_collection, search
from core.embeddings.queries import query_vector
from core.errors import CollectionNotFound
from core.platform.db import transaction
from core.platform.tables import embedding_collections, embedding_documents
from core.platform.tenants import DEFAULT_TENANT, reaches

Tenant = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=63,
        description="Whose collection: an admin key may name any tenant, another key only its own.",
    ),
]


class CollectionOut(msgspec.Struct):
    name: str
    model: str
    dim: int
    documents: int
    created_at: datetime
    updated_at: datetime
    #: Whose collection it is.
    tenant: str = DEFAULT_TENANT


class SearchOut(msgspec.Struct):
    collection: str
    model: str
    #: Documents, nearest first, each once, by its nearest chunk (``chunk``, its text ``text``);
    #: ``score`` is the cosine similarity to the query.
    items: list[Hit]
    #: Whose collection was searched.
    tenant: str = DEFAULT_TENANT


def _find(conn: Connection, key: ApiKey, name: str, tenant: str | None) -> Collection:
    """The collection ``name`` within the key's reach, narrowed to ``tenant`` if given."""
    if tenant is not None and not reaches(key.reach, tenant):
        found = None  # another tenant's: as if it did not exist
    else:
        found = find_collection(conn, name, tenant or key.reach, own=key.tenant)
    if found is None:
        raise CollectionNotFound(f"no collection {name!r}")
    return found


class CollectionsController(Controller):
    path = "/v1/collections"
    tags = ["embeddings"]

    @get("/{name:str}", guards=[requires("jobs:read")], sync_to_thread=True)
    def collection(
        self, request: Request[ApiKey, Any, Any], state: State, name: FromPath[str], tenant: Tenant = None
    ) -> CollectionOut:
        c, d = embedding_collections.c, embedding_documents.c
        count = (
            sa.select(sa.func.count())
            .where(d.collection == c.name, d.tenant == c.tenant, d.chunk == 0)  # documents, not chunks
            .scalar_subquery()
        )
        with transaction(state.settings) as conn:
            found = _find(conn, request.user, name, tenant)
            row = conn.execute(
                sa.select(count.label("documents"), c.created_at, c.updated_at).where(
                    c.name == found.name, c.tenant == found.tenant
                )
            ).one()
        return CollectionOut(found.name, found.model, found.dim, tenant=found.tenant, **row._asdict())

    @get("/{name:str}/search", guards=[requires("jobs:read")], sync_to_thread=True)
    def search(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        name: FromPath[str],
        q: Annotated[str, QueryParameter(min_length=1, max_length=2000, description="The query text.")],
        k: Annotated[int, QueryParameter(ge=1, le=MAX_K, description="Documents to return.")] = 5,
        tenant: Tenant = None,
    ) -> SearchOut:
        """The ``k`` documents nearest to ``q``, embedded with the collection's own model, each by its
        nearest chunk."""
        with transaction(state.settings) as conn:
            collection = _find(conn, request.user, name, tenant)
        # QueryNotEmbedded: 503, or 409 for another model than this farm's, 429 for a rate limit.
        vector = query_vector(state.settings, state.query_redis, collection.model, q)
        with transaction(state.settings) as conn:
            hits = search(conn, collection, vector, k)
        return SearchOut(collection.name, collection.model, hits, tenant=collection.tenant)

"""Embeddings: the `embed` job type, collections of documents in pgvector, and nearest-document search.

A collection keeps the model it was created with: vectors of two models are not comparable, so a job
naming another model for an existing collection fails permanently (`collection_model_mismatch`)
instead of mixing them. To change a collection's model, embed into a new collection.

A collection is its tenant's: an `embed` job writes into its own tenant's collection of that name,
and two tenants' `products` are two collections that never share a document or a search.

Nothing here imports torch: the model itself is behind ``core.providers.embeddings``.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.embeddings.model import MODEL
from core.engine.declare import JobContext, job_type
from core.engine.job_types import get_job_type
from core.engine.jobs import utcnow
from core.errors import PermanentError
from core.platform.tables import embedding_collections, embedding_documents
from core.platform.tenants import reached
from core.providers.embeddings import EmbeddingBackend

#: Embedding jobs have a queue of their own, consumed only by the worker processes that load the
#: model, so torch and the model's memory stay out of every other process.
EMBEDDINGS_QUEUE = "embeddings"
#: Documents per job: ~2,000 MiniLM documents take 10 s on two CPU cores; bigger models take longer.
MAX_DOCUMENTS = 5000
#: Nearest documents a search may ask for.
MAX_K = 100

#: Collection names appear in URLs: letters, digits, `_`, `-`, `.`.
CollectionName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
DocumentId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Document(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: DocumentId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    metadata: dict[str, Any] | None = None


class EmbedPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    collection: CollectionName
    documents: Annotated[list[Document], msgspec.Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    #: Defaults to the farm's model (JOBYARD_EMBEDDING_MODEL); naming it pins what the caller expects.
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None


@job_type(
    "embed",
    payload=EmbedPayload,
    queue=EMBEDDINGS_QUEUE,
    # The model, loaded at boot only in the processes that consume the embeddings queue.
    resources=(MODEL,),
    # Failures are a model download or a hosted API blip; a wrong model is permanent at once.
    max_retries=5,
    min_backoff_s=2.0,
    max_backoff_s=300.0,
    timeout_s=600.0,
    description="Embed a collection's documents and upsert them into pgvector, skipping unchanged texts.",
    # Thousands of documents per job are the point; the request body limit is the real bound.
    max_payload_bytes=8 * 1024 * 1024,
)
def embed(ctx: JobContext, payload: EmbedPayload) -> dict[str, Any]:
    return embed_documents(ctx.conn, ctx.tenant, payload, MODEL.ready(ctx.settings), ctx.claim.job_id)


EMBED = get_job_type("embed")


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    model: str
    dim: int
    tenant: str


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _vector_format(dim: int) -> str:
    # 9 significant digits: a float32 reads back exactly.
    return "[" + ",".join(["%.9g"] * dim) + "]"


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form of a vector."""
    return _vector_format(len(vector)) % tuple(vector)


def get_collection(conn: Connection, tenant: str, name: str) -> Collection | None:
    """The tenant's collection ``name``, if it has one."""
    c = embedding_collections.c
    row = conn.execute(sa.select(c.model, c.dim).where(c.name == name, c.tenant == tenant)).first()
    return Collection(name, row.model, row.dim, tenant) if row else None


def find_collection(conn: Connection, name: str, reach: str | None, own: str) -> Collection | None:
    """The collection ``name`` that a key reaching ``reach`` reads: its tenant's. An admin key
    (``reach`` None) reaches every tenant's, and reads its own tenant's (``own``) if there is one,
    else another tenant's, the first by tenant name."""
    c = embedding_collections.c
    row = conn.execute(
        sa.select(c.model, c.dim, c.tenant)
        .where(c.name == name, reached(embedding_collections, reach))
        .order_by(c.tenant != own, c.tenant)
        .limit(1)
    ).first()
    return Collection(name, row.model, row.dim, row.tenant) if row else None


def _mismatch(collection: Collection, model: str) -> PermanentError:
    return PermanentError(
        f"collection {collection.name!r} holds vectors of {collection.model!r}, not {model!r}; "
        "embed into a new collection to change models",
        code="collection_model_mismatch",
    )


def _ensure_collection(conn: Connection, tenant: str, name: str, model: str, dim: int) -> Collection:
    """The tenant's collection, created with this model and dimension if new; its `updated_at` is
    bumped.

    Two jobs creating it at once: the second waits on the row until the first commits, then gets
    the first one's model and dimension back and is checked against them.
    """
    now = utcnow()
    stmt = pg_insert(embedding_collections).values(
        name=name, tenant=tenant, model=model, dim=dim, updated_at=now
    )
    c = embedding_collections.c
    row = conn.execute(
        stmt.on_conflict_do_update(index_elements=[c.name, c.tenant], set_={"updated_at": now}).returning(
            c.model, c.dim
        )
    ).one()
    collection = Collection(name, row.model, row.dim, tenant)
    if collection.model != model:
        raise _mismatch(collection, model)
    if collection.dim != dim:
        raise PermanentError(
            f"{model!r} answered {dim}-dimensional vectors, but collection {name!r} holds {collection.dim}",
            code="embedding_dimension_mismatch",
        )
    return collection


def embed_documents(
    conn: Connection,
    tenant: str,
    payload: EmbedPayload,
    backend: EmbeddingBackend,
    job_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Embed the payload's new and changed documents and upsert them into ``tenant``'s collection, in
    the caller's transaction."""
    name = payload.collection
    model = payload.model or backend.model
    seen: set[str] = set()
    for doc in payload.documents:
        if doc.id in seen:
            raise PermanentError(f"document id {doc.id!r} appears twice", code="duplicate_document_id")
        seen.add(doc.id)
    existing_collection = get_collection(conn, tenant, name)
    if existing_collection is not None and existing_collection.model != model:
        raise _mismatch(existing_collection, model)
    if model != backend.model:
        raise PermanentError(
            f"this farm serves the embedding model {backend.model!r}, not {model!r}",
            code="model_not_served",
        )

    hashes = {doc.id: text_sha256(doc.text) for doc in payload.documents}
    d = embedding_documents.c
    stored = {
        row.id: (row.text_sha256, row.model)
        for row in conn.execute(
            sa.select(d.id, d.text_sha256, d.model).where(
                d.collection == name, d.tenant == tenant, d.id.in_(list(hashes))
            )
        )
    }
    changed = [doc for doc in payload.documents if stored.get(doc.id) != (hashes[doc.id], model)]
    unchanged = [doc for doc in payload.documents if stored.get(doc.id) == (hashes[doc.id], model)]

    vectors = backend.embed([doc.text for doc in changed]) if changed else []
    if vectors:
        dim = len(vectors[0])
    elif existing_collection is not None:
        dim = existing_collection.dim
    else:  # unreachable: documents are stored only in an existing collection
        raise PermanentError(f"collection {name!r} has no dimension yet", code="embedding_dimension_unknown")
    collection = _ensure_collection(conn, tenant, name, model, dim)
    _upsert(conn, collection, changed, vectors, hashes, job_id)
    _update_metadata(conn, collection, unchanged)
    return {"embedded": len(changed), "skipped_unchanged": len(unchanged), "dim": dim, "model": model}


def _upsert(
    conn: Connection,
    collection: Collection,
    docs: Sequence[Document],
    vectors: Sequence[Sequence[float]],
    hashes: dict[str, str],
    job_id: uuid.UUID | None,
) -> None:
    if not docs:
        return
    now = utcnow()
    rows = [
        {
            "collection": collection.name,
            "tenant": collection.tenant,
            "id": doc.id,
            "text": doc.text,
            "text_sha256": hashes[doc.id],
            "model": collection.model,
            "dim": collection.dim,
            "embedding_text": vector_text(vector),
            "metadata": doc.metadata,
            "job_id": job_id,
            "updated_at": now,
        }
        for doc, vector in zip(docs, vectors, strict=True)
    ]
    # The vector goes as pgvector's text form, cast in SQL: formatted here in one C call per row, it
    # costs a third of pgvector's own formatter (seen at 0.4 s per 2,000 MiniLM vectors).
    text = sa.bindparam("embedding_text", type_=sa.Text)
    stmt = pg_insert(embedding_documents).values(embedding=sa.cast(text, VECTOR()))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                embedding_documents.c.collection,
                embedding_documents.c.id,
                embedding_documents.c.tenant,
            ],
            set_={
                col: stmt.excluded[col]
                for col in ("text", "text_sha256", "model", "dim", "embedding", "metadata", "job_id")
            }
            | {"updated_at": now},
        ),
        rows,
    )


def _update_metadata(conn: Connection, collection: Collection, docs: Sequence[Document]) -> None:
    """Unchanged texts keep their vectors, but take the metadata the job gives them."""
    if not docs:
        return
    d = embedding_documents.c
    new_metadata = sa.bindparam("new_metadata", type_=d.metadata.type)
    conn.execute(
        sa.update(embedding_documents)
        .where(
            d.collection == collection.name,
            d.tenant == collection.tenant,
            d.id == sa.bindparam("doc_id"),
            d.metadata.is_distinct_from(new_metadata),
        )
        .values(metadata=new_metadata, updated_at=utcnow()),
        [{"doc_id": doc.id, "new_metadata": doc.metadata} for doc in docs],
    )


# -- search ----------------------------------------------------------------------------------------


class Hit(msgspec.Struct):
    id: str
    text: str
    metadata: dict[str, Any] | None
    #: Cosine similarity to the query, 1 for the same direction.
    score: float


def search(conn: Connection, collection: Collection, vector: Sequence[float], k: int) -> list[Hit]:
    """The ``k`` documents nearest to ``vector`` by cosine distance, nearest first.

    The cast to ``vector(dim)`` and the ``dim`` filter match the partial HNSW index of that dimension
    (see core.platform.tables.embeddings), so the planner can use it. The index is shared by every
    collection of that dimension; pgvector's iterative scan keeps reading it until ``k`` rows of this
    collection are found (relaxed order, re-sorted below). Only the collection's own tenant's
    documents are candidates.
    """
    if len(vector) != collection.dim:
        raise PermanentError(
            f"the query vector has {len(vector)} dimensions, collection {collection.name!r} {collection.dim}",
            code="embedding_dimension_mismatch",
        )
    d = embedding_documents.c
    typ = VECTOR(collection.dim)
    distance = sa.cast(d.embedding, typ).op("<=>", return_type=sa.Float)(
        sa.cast(sa.literal(list(vector), typ), typ)
    )
    conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    nearest = (
        sa.select(d.id, d.text, d.metadata, distance.label("distance"))
        .where(d.collection == collection.name, d.tenant == collection.tenant, d.dim == collection.dim)
        .order_by(distance)
        .limit(k)
        .cte("nearest")
        .prefix_with("MATERIALIZED")
    )
    rows = conn.execute(sa.select(nearest).order_by(nearest.c.distance)).all()
    return [Hit(r.id, r.text, r.metadata, round(1.0 - float(r.distance), 6)) for r in rows]

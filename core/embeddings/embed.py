"""Embeddings: the `embed` job type, collections of documents in pgvector, and nearest-document search.

A collection keeps the model it was created with: vectors of two models are not comparable, so a job
naming another model for an existing collection fails permanently (`collection_model_mismatch`)
instead of mixing them. To change a collection's model, embed into a new collection.

A collection is its tenant's: an `embed` job writes into its own tenant's collection of that name,
and two tenants' `products` are two collections that never share a document or a search.

A long document is cut into chunks (core/embeddings/chunks.py), each a row with the document's id
and its chunk number; a search answers each document once, by its nearest chunk.

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

from core.embeddings.chunks import Chunking, split
from core.embeddings.model import MODEL
from core.engine.declare import JobContext, job_type
from core.engine.job_types import get_job_type
from core.engine.jobs import utcnow
from core.errors import PermanentError
from core.platform.settings import Settings
from core.platform.tables import embedding_collections, embedding_documents
from core.platform.tenants import reached
from core.providers.embeddings import EmbeddingBackend, Vector

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
#: Characters of a document's text, at most.
MAX_TEXT_CHARS = 100_000


class Document(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: DocumentId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
    metadata: dict[str, Any] | None = None


class EmbedPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    collection: CollectionName
    documents: Annotated[list[Document], msgspec.Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    #: Defaults to the farm's model (JOBYARD_EMBEDDING_MODEL); naming it pins what the caller expects.
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    #: Longest chunk, in characters; default JOBYARD_EMBED_CHUNK_CHARS.
    chunk_chars: Annotated[int, msgspec.Meta(ge=100, le=MAX_TEXT_CHARS)] | None = None
    #: Characters a chunk repeats of the one before, at most half a chunk; default JOBYARD_EMBED_CHUNK_OVERLAP.
    chunk_overlap: Annotated[int, msgspec.Meta(ge=0, le=MAX_TEXT_CHARS // 2)] | None = None

    def __post_init__(self) -> None:
        if self.chunk_chars is not None and self.chunk_overlap is not None:
            problem = Chunking(self.chunk_chars, self.chunk_overlap).problem()
            if problem:
                raise ValueError(f"chunk_overlap: {problem}")

    def chunking(self, settings: Settings) -> Chunking:
        """How this job cuts its documents: its own numbers, else the farm's; PermanentError if the
        two together cannot cut a text."""
        chunking = Chunking(
            self.chunk_chars if self.chunk_chars is not None else settings.embed_chunk_chars,
            self.chunk_overlap if self.chunk_overlap is not None else settings.embed_chunk_overlap,
        )
        problem = chunking.problem()
        if problem:
            raise PermanentError(
                f"{problem} (chunk_chars and chunk_overlap, or JOBYARD_EMBED_CHUNK_CHARS and "
                "JOBYARD_EMBED_CHUNK_OVERLAP)",
                code="invalid_chunking",
            )
        return chunking


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
    chunking = payload.chunking(ctx.settings)
    return embed_documents(
        ctx.conn, ctx.tenant, payload, MODEL.ready(ctx.settings), chunking, ctx.claim.job_id, ctx
    )


EMBED = get_job_type("embed")
#: Chunks embedded between two progress reports (and cancel checks) of an embed job, at least: a
#: slice is a whole number of the backend's batches (JOBYARD_EMBEDDING_BATCH), so every model call
#: is a full batch.
PROGRESS_SLICE = 32


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
    chunking: Chunking,
    job_id: uuid.UUID | None = None,
    ctx: JobContext | None = None,
) -> dict[str, Any]:
    """Embed the payload's new and changed documents, cut by ``chunking``, and upsert their chunks
    into ``tenant``'s collection, in the caller's transaction. A changed document's chunks past its
    new last one are deleted. With the job's ``ctx``, the chunks are embedded PROGRESS_SLICE at a
    time, reporting the progress after each slice and stopping there if the job was cancelled."""
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
                d.collection == name, d.tenant == tenant, d.id.in_(list(hashes)), d.chunk == 0
            )
        )
    }
    changed = [doc for doc in payload.documents if stored.get(doc.id) != (hashes[doc.id], model)]
    unchanged = [doc for doc in payload.documents if stored.get(doc.id) == (hashes[doc.id], model)]

    chunks = [_Chunk(doc, n, text) for doc in changed for n, text in enumerate(split(doc.text, chunking))]
    vectors = _embed_chunks(backend, chunks, ctx)
    if vectors:
        dim = len(vectors[0])
    elif existing_collection is not None:
        dim = existing_collection.dim
    else:  # unreachable: documents are stored only in an existing collection
        raise PermanentError(f"collection {name!r} has no dimension yet", code="embedding_dimension_unknown")
    collection = _ensure_collection(conn, tenant, name, model, dim)
    _upsert(conn, collection, chunks, vectors, hashes, job_id)
    _delete_stale_chunks(conn, collection, chunks, stored)
    _update_metadata(conn, collection, unchanged)
    return {
        "embedded": len(changed),
        "skipped_unchanged": len(unchanged),
        "chunks": len(chunks),
        "dim": dim,
        "model": model,
    }


def _embed_chunks(backend: EmbeddingBackend, chunks: list[_Chunk], ctx: JobContext | None) -> list[Vector]:
    """The chunks' vectors; with ``ctx``, a slice at a time, with the progress reported after each.

    The slices take the job's texts longest first, as one `encode` call of sentence-transformers
    orders its texts: batches of similar lengths pad less. Sliced in their own order (32 texts a
    slice, half a batch), the texts of a job cost about 40 % more CPU than in one call (python -m
    bench --only embed)."""
    texts = [chunk.text for chunk in chunks]
    if ctx is None or not texts:
        return backend.embed(texts) if texts else []
    batch = max(backend.batch, 1)
    step = batch * max(1, -(-PROGRESS_SLICE // batch))
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors: list[Vector] = [[] for _ in texts]
    for start in range(0, len(order), step):
        ctx.stop_if_cancelled()
        positions = order[start : start + step]
        for position, vector in zip(positions, backend.embed([texts[i] for i in positions]), strict=True):
            vectors[position] = vector
        done = min(start + step, len(order))
        ctx.progress(done / len(texts), f"{done} of {len(texts)} chunks embedded")
    return vectors


@dataclass(frozen=True, slots=True)
class _Chunk:
    doc: Document
    number: int
    text: str


def _upsert(
    conn: Connection,
    collection: Collection,
    chunks: Sequence[_Chunk],
    vectors: Sequence[Sequence[float]],
    hashes: dict[str, str],
    job_id: uuid.UUID | None,
) -> None:
    if not chunks:
        return
    now = utcnow()
    rows = [
        {
            "collection": collection.name,
            "tenant": collection.tenant,
            "id": chunk.doc.id,
            "chunk": chunk.number,
            "text": chunk.text,
            "text_sha256": hashes[chunk.doc.id],
            "model": collection.model,
            "dim": collection.dim,
            "embedding_text": vector_text(vector),
            "metadata": chunk.doc.metadata,
            "job_id": job_id,
            "updated_at": now,
        }
        for chunk, vector in zip(chunks, vectors, strict=True)
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
                embedding_documents.c.chunk,
            ],
            set_={
                col: stmt.excluded[col]
                for col in ("text", "text_sha256", "model", "dim", "embedding", "metadata", "job_id")
            }
            | {"updated_at": now},
        ),
        rows,
    )


def _delete_stale_chunks(
    conn: Connection, collection: Collection, chunks: Sequence[_Chunk], stored: dict[str, Any]
) -> None:
    """A re-embedded document that was stored before keeps no chunk past its new last one (a shorter
    text has fewer chunks). A new document has none to delete, so a first embed costs nothing here."""
    last = {chunk.doc.id: chunk.number for chunk in chunks if chunk.doc.id in stored}
    if not last:
        return
    d = embedding_documents.c
    conn.execute(
        sa.delete(embedding_documents).where(
            d.collection == collection.name,
            d.tenant == collection.tenant,
            d.id == sa.bindparam("doc_id"),
            d.chunk > sa.bindparam("last_chunk"),
        ),
        [{"doc_id": doc_id, "last_chunk": n} for doc_id, n in last.items()],
    )


def _update_metadata(conn: Connection, collection: Collection, docs: Sequence[Document]) -> None:
    """Unchanged texts keep their vectors, but take the metadata the job gives them (on every chunk)."""
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
    #: The document's id.
    id: str
    #: The text of the document's nearest chunk (the whole text of a document of one chunk).
    text: str
    metadata: dict[str, Any] | None
    #: Cosine similarity to the query, 1 for the same direction.
    score: float
    #: The nearest chunk's number within its document, from 0.
    chunk: int = 0


def search(conn: Connection, collection: Collection, vector: Sequence[float], k: int) -> list[Hit]:
    """The ``k`` documents nearest to ``vector`` by cosine distance, each by its nearest chunk,
    nearest first.

    The cast to ``vector(dim)`` and the ``dim`` filter match the partial HNSW index of that dimension
    (see core.platform.tables.embeddings), so the planner can use it. The index is shared by every
    collection of that dimension; pgvector's iterative scan keeps reading it until enough rows of this
    collection are found (relaxed order, re-sorted below). Only the collection's own tenant's
    documents are candidates. The ``k`` nearest chunks may hold fewer than ``k`` documents (several
    chunks of one): then four times as many are read, until ``k`` documents are found or the
    collection has no more chunks.
    """
    if len(vector) != collection.dim:
        raise PermanentError(
            f"the query vector has {len(vector)} dimensions, collection {collection.name!r} {collection.dim}",
            code="embedding_dimension_mismatch",
        )
    conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    limit = k
    while True:
        rows = _nearest_chunks(conn, collection, vector, limit)
        best: dict[str, Any] = {}
        for row in rows:  # nearest first: a document's first row is its nearest chunk
            best.setdefault(row.id, row)
        if len(best) >= k or len(rows) < limit:
            break
        limit *= 4
    return [
        Hit(r.id, r.text, r.metadata, round(1.0 - float(r.distance), 6), r.chunk)
        for r in list(best.values())[:k]
    ]


def _nearest_chunks(
    conn: Connection, collection: Collection, vector: Sequence[float], limit: int
) -> list[Any]:
    d = embedding_documents.c
    typ = VECTOR(collection.dim)
    distance = sa.cast(d.embedding, typ).op("<=>", return_type=sa.Float)(
        sa.cast(sa.literal(list(vector), typ), typ)
    )
    nearest = (
        sa.select(d.id, d.chunk, d.text, d.metadata, distance.label("distance"))
        .where(d.collection == collection.name, d.tenant == collection.tenant, d.dim == collection.dim)
        .order_by(distance)
        .limit(limit)
        .cte("nearest")
        .prefix_with("MATERIALIZED")
    )
    return list(
        conn.execute(sa.select(nearest).order_by(nearest.c.distance, nearest.c.id, nearest.c.chunk)).all()
    )

"""Embeddings: collections and their documents' vectors, with an HNSW index per common dimension."""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import UUID

from core.platform.tables.base import Json, metadata, timestamp_column

# Embeddings. A collection keeps the one model (and so the one dimension) it was created with. A
# collection is its tenant's (core/platform/tenants.py): two tenants may both have `products`. The
# tenant comes last in the keys, so a lookup by name alone (an admin key's) still uses them.
embedding_collections = sa.Table(
    "embedding_collections",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
    sa.CheckConstraint("dim > 0", name="dim_positive"),
)

#: Dimensions that get an HNSW index (MiniLM/bge-small 384, 512, mpnet/bge-base 768, bge-large/e5-large
#: 1024, OpenAI-sized 1536). A model of another dimension still works, searched exactly, unindexed.
INDEXED_DIMS = (384, 512, 768, 1024, 1536)

# HNSW needs a fixed dimension, but one column must hold every model's vectors. So `embedding` is a
# `vector` without a dimension, `dim` records it (a check keeps the two in step), and each indexed
# dimension has a partial expression index over `embedding::vector(d) WHERE dim = d`. A search casts
# the same way and filters on `dim`, so the planner can use that index; a new dimension is one new
# index in a migration, not a new table or a column rewrite.
embedding_documents = sa.Table(
    "embedding_documents",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    # The chunk's text.
    sa.Column("text", sa.Text, nullable=False),
    # sha256 of the document's whole text (on each of its chunks), with `model`: a document whose text
    # and model are unchanged is not re-embedded.
    sa.Column("text_sha256", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("embedding", VECTOR(), nullable=False),
    sa.Column("metadata", Json),
    # The job that last embedded it.
    sa.Column("job_id", UUID(as_uuid=True)),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
    # The chunk's number within its document, from 0 (core/embeddings/chunks.py): a long document is
    # a row per chunk, each with its chunk's text and vector; a short one is chunk 0 alone.
    sa.Column("chunk", sa.Integer, primary_key=True, server_default="0"),
    sa.CheckConstraint("vector_dims(embedding) = dim", name="dim_matches"),
    sa.ForeignKeyConstraint(
        ["collection", "tenant"],
        ["embedding_collections.name", "embedding_collections.tenant"],
        ondelete="CASCADE",
    ),
)
for _dim in INDEXED_DIMS:
    _cast = sa.cast(embedding_documents.c.embedding, VECTOR(_dim)).label(f"embedding_{_dim}")
    sa.Index(
        f"ix_embedding_documents_hnsw_{_dim}",
        _cast,
        postgresql_using="hnsw",
        postgresql_ops={f"embedding_{_dim}": "vector_cosine_ops"},
        postgresql_where=embedding_documents.c.dim == _dim,
    )

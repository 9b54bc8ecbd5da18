"""embeddings: collections and documents in pgvector, HNSW (cosine) per indexed dimension

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Kept here, not imported from core.platform.tables: a revision must not change when the models do.
INDEXED_DIMS = (384, 512, 768, 1024, 1536)


def upgrade() -> None:
    # pgvector is not a trusted extension: on a server where the migrating role is not a superuser,
    # an administrator creates it once beforehand, and this is then a no-op.
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "embedding_collections",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("dim > 0", name=op.f("ck_embedding_collections_dim_positive")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_embedding_collections")),
    )
    op.create_table(
        "embedding_documents",
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("embedding", VECTOR(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("vector_dims(embedding) = dim", name=op.f("ck_embedding_documents_dim_matches")),
        sa.ForeignKeyConstraint(
            ["collection"],
            ["embedding_collections.name"],
            name=op.f("fk_embedding_documents_collection_embedding_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection", "id", name=op.f("pk_embedding_documents")),
    )
    for dim in INDEXED_DIMS:
        op.execute(
            f"CREATE INDEX ix_embedding_documents_hnsw_{dim} ON embedding_documents "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"
        )


def downgrade() -> None:
    # The tables go; the vector extension stays, as other schemas on the server may use it.
    op.drop_table("embedding_documents")
    op.drop_table("embedding_collections")

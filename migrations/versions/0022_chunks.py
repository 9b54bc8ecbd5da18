"""chunks: long documents as a row per chunk, and the documents an AI reply was given

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-04 17:00:00.000000

``embedding_documents`` gets ``chunk`` (the chunk's number within its document) in its primary key.
Every existing row is its document's chunk 0: a document embedded before is one chunk, its text and
vector as they were, and its hash still skips an unchanged re-embed. The column has a constant
default, so adding it rewrites no row; the primary key's index is built again once.

``chat_messages`` gets ``knowledge``, NULL on every existing message (none was given documents).

The downgrade keeps each document's chunk 0 and deletes its other chunks (the primary key of before
holds one row per document): such a document searches by its beginning only, as before 0022.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding_documents", sa.Column("chunk", sa.Integer, server_default="0", nullable=False))
    op.drop_constraint("pk_embedding_documents", "embedding_documents", type_="primary")
    op.create_primary_key(
        "pk_embedding_documents", "embedding_documents", ["collection", "id", "tenant", "chunk"]
    )
    op.add_column("chat_messages", sa.Column("knowledge", postgresql.JSONB(none_as_null=True)))


def downgrade() -> None:
    op.drop_column("chat_messages", "knowledge")
    op.execute("DELETE FROM embedding_documents WHERE chunk <> 0")
    op.drop_constraint("pk_embedding_documents", "embedding_documents", type_="primary")
    op.create_primary_key("pk_embedding_documents", "embedding_documents", ["collection", "id", "tenant"])
    op.drop_column("embedding_documents", "chunk")

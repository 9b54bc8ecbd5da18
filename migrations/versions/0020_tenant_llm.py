"""tenant llm: a tenant's own LLM provider chain, its api keys sealed under the data key

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 18:00:00.000000

A new, empty table: nothing else is read or rewritten. A tenant without a row asks the farm's
providers, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_llm",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("providers", postgresql.JSONB(none_as_null=True), nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", postgresql.UUID(as_uuid=True)),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_llm")),
    )


def downgrade() -> None:
    op.drop_table("tenant_llm")

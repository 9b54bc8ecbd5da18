"""workflows: named steps run after each other, each an ordinary job

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 16:30:00.000000

Two new, empty tables, and a nullable column on jobs (no rewrite: every existing job is no step of
a workflow). Nothing else is read or rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("workflow_id", postgresql.UUID(as_uuid=True)))
    op.create_table(
        "workflows",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant", sa.Text, server_default="default", nullable=False),
        sa.Column("business_key", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("created_by", postgresql.UUID(as_uuid=True)),
        sa.Column("request_id", sa.Text),
        sa.Column("state", sa.Text, server_default="running", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('running', 'succeeded', 'cancelled')", name=op.f("ck_workflows_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    op.create_index(
        "ix_workflows_business_key",
        "workflows",
        ["tenant", "business_key"],
        postgresql_where=sa.text("business_key IS NOT NULL"),
    )
    op.create_index(
        "uq_workflows_idempotency_key",
        "workflows",
        ["tenant", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "workflow_steps",
        sa.Column("workflow_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, server_default="default", nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB(none_as_null=True), nullable=False),
        sa.Column("after", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("options", postgresql.JSONB(none_as_null=True), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True)),
        sa.CheckConstraint(
            "state IN ('waiting', 'enqueued', 'cancelled')", name=op.f("ck_workflow_steps_state")
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_steps_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "name", name=op.f("pk_workflow_steps")),
    )
    op.create_index("ix_workflow_steps_job_id", "workflow_steps", ["job_id"], unique=True)


def downgrade() -> None:
    op.drop_table("workflow_steps")
    op.drop_table("workflows")
    op.drop_column("jobs", "workflow_id")

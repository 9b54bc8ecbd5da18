"""failure handling: worker heartbeats, deadlines, retry base

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:15:32.638722
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("broker_id", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.add_column("jobs", sa.Column("worker_id", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("retry_base", sa.Integer(), server_default="0", nullable=False))
    op.create_index(
        "ix_jobs_running_deadline",
        "jobs",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_jobs_running_worker",
        "jobs",
        ["worker_id"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_running_worker", table_name="jobs", postgresql_where=sa.text("status = 'running'"))
    op.drop_index(
        "ix_jobs_running_deadline", table_name="jobs", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_column("jobs", "retry_base")
    op.drop_column("jobs", "deadline_at")
    op.drop_column("jobs", "worker_id")
    op.drop_table("workers")

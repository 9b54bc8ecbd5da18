"""job history: finished jobs in a table partitioned by the day they finished

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:30:00.000000

Succeeded and cancelled jobs leave ``jobs`` for ``job_history`` once their attempts are counted
(core/engine/finished.py), and a day of history goes by dropping its partition
(core/engine/retention.py). The partitions (``job_history_YYYYMMDD``) are made by the farm as it
needs them, not here. ``scrapes`` and ``outbound_messages`` lose their foreign key to ``jobs``: their
job moves to the history and must keep its rows. Nothing is moved by this revision: the farm's
scheduler moves what has finished, a batch at a time, once it runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, postgresql.TIMESTAMP(timezone=True), nullable=nullable)


def upgrade() -> None:
    json = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "job_history",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("payload", json, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("business_key", sa.Text(), nullable=True),
        _ts("run_at", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("result", json, nullable=True),
        sa.Column("error", json, nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("retry_base", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("published_at"),
        _ts("started_at"),
        _ts("finished_at", nullable=False),
        sa.Column("attempt_log", json, nullable=False),
        sa.PrimaryKeyConstraint("id", "finished_at", name=op.f("pk_job_history")),
        postgresql_partition_by="RANGE (finished_at)",
    )
    op.create_index(
        "ix_job_history_created",
        "job_history",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_job_history_type_created", "job_history", ["type", sa.text("created_at DESC")], unique=False
    )
    op.create_index(
        "ix_job_history_business_key",
        "job_history",
        ["business_key"],
        unique=False,
        postgresql_where=sa.text("business_key IS NOT NULL"),
    )
    op.create_index(
        "ix_job_history_idempotency_key",
        "job_history",
        ["idempotency_key"],
        unique=False,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("ix_job_history_finished", "job_history", ["status", "type", "finished_at"], unique=False)
    op.drop_constraint("fk_scrapes_job_id_jobs", "scrapes", type_="foreignkey")
    op.drop_constraint("fk_outbound_messages_job_id_jobs", "outbound_messages", type_="foreignkey")
    op.drop_index(
        "ix_outbound_messages_unowned",
        table_name="outbound_messages",
        postgresql_where=sa.text("job_id IS NULL"),
    )
    op.create_index("ix_outbound_messages_created", "outbound_messages", ["created_at"], unique=False)


def downgrade() -> None:
    # Moved jobs come back to jobs first, without their attempts' rows (attempt_log is dropped).
    op.execute(
        """
        INSERT INTO jobs (id, type, queue, status, payload, idempotency_key, business_key, run_at,
                          attempts, max_retries, result, error, request_id, message_id, worker,
                          retry_base, created_at, updated_at, published_at, started_at, finished_at)
        SELECT id, type, queue, status, payload, idempotency_key, business_key, run_at, attempts,
               max_retries, result, error, request_id, message_id, worker, retry_base, created_at,
               updated_at, published_at, started_at, finished_at
        FROM job_history
        """
    )
    op.drop_index("ix_outbound_messages_created", table_name="outbound_messages")
    op.create_index(
        "ix_outbound_messages_unowned",
        "outbound_messages",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("job_id IS NULL"),
    )
    op.execute(
        "UPDATE outbound_messages o SET job_id = NULL WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = o.job_id)"
    )
    op.execute(
        "UPDATE scrapes s SET job_id = NULL WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id)"
    )
    op.create_foreign_key(
        "fk_outbound_messages_job_id_jobs",
        "outbound_messages",
        "jobs",
        ["job_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "fk_scrapes_job_id_jobs", "scrapes", "jobs", ["job_id"], ["id"], ondelete="SET NULL"
    )
    op.drop_table("job_history")

"""ops: each attempt's job type and the status it left its job in, job stats rollups, queue overview index, dashboard sessions

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-23 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: Kept here, not imported from core.platform.tables: a revision must not change when the models do.
OPEN_STATUSES = "('scheduled', 'queued', 'running', 'retrying', 'dead')"


def upgrade() -> None:
    op.add_column("job_attempts", sa.Column("type", sa.Text(), nullable=True))
    op.add_column("job_attempts", sa.Column("job_status", sa.Text(), nullable=True))
    # No backfill: core.engine.stats reads an older attempt's type from its job, and its job_status from
    # its outcome where that tells (a success left its job succeeded).
    op.create_index(
        "ix_job_attempts_finished",
        "job_attempts",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_open",
        "jobs",
        ["type", "queue", "status", "published_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"),
    )
    op.create_table(
        "job_stats_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("job_status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "type", "outcome", "job_status", name=op.f("pk_job_stats_minutes")),
    )
    op.create_table(
        "job_stats_totals",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("job_status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("duration_buckets", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.PrimaryKeyConstraint("type", "outcome", "job_status", name=op.f("pk_job_stats_totals")),
    )
    op.create_table(
        "job_stats_rollup",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("rolled_until", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_job_stats_rollup_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_stats_rollup")),
    )
    # Nothing rolled up yet: the first rollup takes in every attempt that ended before it.
    op.execute("INSERT INTO job_stats_rollup (id, rolled_until) VALUES (1, '1970-01-01T00:00:00Z')")
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("key_id", sa.UUID(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_dashboard_sessions_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index("ix_dashboard_sessions_expires", "dashboard_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_table("job_stats_rollup")
    op.drop_table("job_stats_totals")
    op.drop_table("job_stats_minutes")
    op.drop_index("ix_jobs_open", table_name="jobs", postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"))
    op.drop_index(
        "ix_job_attempts_finished",
        table_name="job_attempts",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.drop_column("job_attempts", "job_status")
    op.drop_column("job_attempts", "type")

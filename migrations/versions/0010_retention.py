"""retention: the indexes pruning reads, and the running count of what it removed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00.000000

Finished jobs, outbound messages and audit entries are removed once their retention has passed
(core/engine/retention.py). ``ix_jobs_finished`` finds, per final status and type, the jobs that
finished first; ``ix_outbound_messages_unowned`` the outbound rows whose job is gone. Building the
first reads the finished jobs once and holds writes to ``jobs`` meanwhile (about a second per
million rows): run it in a quiet moment on a large farm.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Copied from core/platform/tables/engine.py: a migration must not change when the code does.
PRUNED_STATUSES = ("succeeded", "cancelled", "dead")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["status", "type", "finished_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN {PRUNED_STATUSES}"),
    )
    op.create_index(
        "ix_outbound_messages_unowned",
        "outbound_messages",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("job_id IS NULL"),
    )
    op.create_table(
        "prune_counts",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("pruned", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "status", name=op.f("pk_prune_counts")),
    )


def downgrade() -> None:
    op.drop_table("prune_counts")
    op.drop_index(
        "ix_outbound_messages_unowned",
        table_name="outbound_messages",
        postgresql_where=sa.text("job_id IS NULL"),
    )
    op.drop_index(
        "ix_jobs_finished", table_name="jobs", postgresql_where=sa.text(f"status IN {PRUNED_STATUSES}")
    )

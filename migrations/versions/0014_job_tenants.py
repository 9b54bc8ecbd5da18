"""job tenants: every job carries its tenant and the keys that created, cancelled and redrove it;
every schedule its tenant and creator; every audit entry the tenant whose jobs it reached

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 08:40:00.000000

Existing jobs belong to ``default``. An idempotency key becomes unique per tenant: the unique index
on ``jobs`` and the lookup index on ``job_history`` are rebuilt on (tenant, idempotency_key). Adding
a column with a constant default rewrites nothing; the index builds read every row of ``jobs`` (the
live table) and of each day of ``job_history``, holding writes to them meanwhile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("jobs", "job_history")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
        op.add_column(table, sa.Column("created_by", postgresql.UUID(as_uuid=True)))
        op.add_column(table, sa.Column("cancelled_by", postgresql.UUID(as_uuid=True)))
        op.add_column(table, sa.Column("redriven_by", postgresql.UUID(as_uuid=True)))
    op.add_column("audit_log", sa.Column("tenant", sa.Text))
    op.add_column("schedules", sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    op.add_column("schedules", sa.Column("created_by", postgresql.UUID(as_uuid=True)))
    _keys_index(("tenant", "idempotency_key"))


def downgrade() -> None:
    _keys_index(("idempotency_key",))
    op.drop_column("audit_log", "tenant")
    op.drop_column("schedules", "created_by")
    op.drop_column("schedules", "tenant")
    for table in TABLES:
        for column in ("redriven_by", "cancelled_by", "created_by", "tenant"):
            op.drop_column(table, column)


def _keys_index(columns: tuple[str, ...]) -> None:
    where = sa.text("idempotency_key IS NOT NULL")
    op.drop_index("uq_jobs_idempotency_key", table_name="jobs")
    op.create_index("uq_jobs_idempotency_key", "jobs", list(columns), unique=True, postgresql_where=where)
    op.drop_index("ix_job_history_idempotency_key", table_name="job_history")
    op.create_index("ix_job_history_idempotency_key", "job_history", list(columns), postgresql_where=where)

"""jobs by tenant: an index on (tenant, created_at, id) of jobs and of each day of job_history

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-05 00:15:00.000000

A tenant's key lists its jobs newest first (GET /v1/jobs, the dashboard's jobs page); without this
index the list walks every tenant's jobs newest first until it has a page of this tenant's, which for
a small tenant among ten million jobs is most of the table. The builds read ``jobs`` and each day of
``job_history`` and hold writes to them meanwhile, as every index migration here does (the
migrations run in one transaction under the migration lock, where CREATE INDEX CONCURRENTLY cannot).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0024"
branch_labels = None
depends_on = None

INDEXES = {"jobs": "ix_jobs_tenant_created", "job_history": "ix_job_history_tenant_created"}


def upgrade() -> None:
    for table, name in INDEXES.items():
        op.create_index(name, table, ["tenant", sa.text("created_at DESC"), sa.text("id DESC")])


def downgrade() -> None:
    for table, name in INDEXES.items():
        op.drop_index(name, table_name=table)

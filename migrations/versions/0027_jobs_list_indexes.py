"""jobs listed by any filter: (column, created_at, id) indexes for tenant, queue, type and status

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 00:15:00.000000

The jobs list (GET /v1/jobs, the dashboard's jobs page) is newest first by (created_at, id), both
tables merged. A filter is cheap when an index gives its rows in that order: then a page reads the
page. The type and status indexes ordered by created_at alone, so Postgres sorted every matching row
(all the retrying jobs, say) to find the newest fifty; they are rebuilt with id as the last key. A
tenant's key and a queue filter had no index and walked every job newest first until a page matched,
which for a small tenant among ten million jobs is most of the table: new indexes on (tenant, ...)
and (queue, ...). ``job_history`` gets the same (its status index too: a history holds succeeded and
cancelled jobs, and cancelled ones may be few).

The builds read ``jobs`` and each day of ``job_history`` and hold writes to them meanwhile, as every
index migration here does: migrations run in one transaction under the migration lock, where CREATE
INDEX CONCURRENTLY cannot run. On a large farm, build them beforehand by hand with CONCURRENTLY under
these names (an index that exists already is kept: IF NOT EXISTS).
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

#: (table, leading column, replaces an index ordered by created_at alone)
INDEXES = (
    ("jobs", "tenant", False),
    ("jobs", "queue", False),
    ("jobs", "type", True),
    ("jobs", "status", True),
    ("job_history", "tenant", False),
    ("job_history", "queue", False),
    ("job_history", "type", True),
    ("job_history", "status", False),
)


def _name(table: str, column: str) -> str:
    return f"ix_{table}_{column}_created"


def upgrade() -> None:
    for table, column, replaces in INDEXES:
        if replaces:
            op.execute(f"DROP INDEX IF EXISTS {_name(table, column)}")
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {_name(table, column)} ON {table} ({column}, created_at DESC, id DESC)"
        )


def downgrade() -> None:
    for table, column, replaces in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {_name(table, column)}")
        if replaces:
            op.execute(f"CREATE INDEX {_name(table, column)} ON {table} ({column}, created_at DESC)")

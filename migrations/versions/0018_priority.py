"""priority: every job, history row and schedule carries a priority from 0 to 9 (9 most urgent)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 09:00:00.000000

Existing jobs and schedules get 5, the default. A priority orders a tenant's work within its
share of the workers (core/engine/lanes.py); it is stored so that a job published again (a retry,
a redrive, a recovery, a message Redis lost) keeps its place. Adding a column with a constant
default rewrites nothing. The checks are added ``NOT VALID`` and then validated, which reads
``jobs`` (the live table) without holding writes; ``job_history`` only ever receives rows from
``jobs``, so it needs no check of its own (one would read every day of it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: Copied from core/engine/jobs.py: a migration must not change when the code does.
DEFAULT_PRIORITY = 5
CHECKED = ("jobs", "schedules")


def upgrade() -> None:
    for table in ("jobs", "job_history", "schedules"):
        op.add_column(
            table,
            sa.Column("priority", sa.SmallInteger, nullable=False, server_default=str(DEFAULT_PRIORITY)),
        )
    for table in CHECKED:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_priority "
            "CHECK (priority BETWEEN 0 AND 9) NOT VALID"
        )
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT ck_{table}_priority")


def downgrade() -> None:
    for table in CHECKED:
        # Spelt out: op.drop_constraint would prefix the name with the naming convention again.
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_priority")
    for table in ("jobs", "job_history", "schedules"):
        op.drop_column(table, "priority")

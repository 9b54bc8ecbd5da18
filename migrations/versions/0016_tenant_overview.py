"""tenant overview: the queue overview counts per tenant, so that a tenant's key sees only its own

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:20:00.000000

``dead_letter_counts`` gains ``tenant`` (its key becomes tenant, type, queue; the triggers of 0012
count per tenant), and ``ix_jobs_open`` gains ``tenant`` as its last column, so a tenant's counts of
the work in flight are still answered from the index alone. Both are rebuilt under a lock that holds
writes to ``jobs`` for the time it takes to count its dead letters and index its open jobs (the live
table: its finished jobs have moved to the history).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: Copied from core/platform/tables/engine.py: a migration must not change when the code does.
IN_FLIGHT_STATUSES = ("scheduled", "queued", "running", "retrying")
OPEN_COLUMNS = ["type", "queue", "status", "published_at"]

COUNT_DEAD = """
CREATE OR REPLACE FUNCTION jobyard_count_dead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM dead_letter_counts;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'dead' THEN
            UPDATE dead_letter_counts SET n = n - 1
            WHERE tenant = OLD.tenant AND type = OLD.type AND queue = OLD.queue;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'dead' THEN
            INSERT INTO dead_letter_counts (tenant, type, queue, n) VALUES (NEW.tenant, NEW.type, NEW.queue, 1)
            ON CONFLICT (tenant, type, queue) DO UPDATE SET n = dead_letter_counts.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""

UNCOUNT_DELETED = """
CREATE OR REPLACE FUNCTION jobyard_uncount_deleted_dead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_letter_counts c SET n = c.n - g.n
    FROM (SELECT tenant, type, queue, count(*) AS n FROM gone WHERE status = 'dead'
          GROUP BY tenant, type, queue) g
    WHERE c.tenant = g.tenant AND c.type = g.type AND c.queue = g.queue;
    RETURN NULL;
END
$$
"""

# 0012's, for the downgrade.
COUNT_DEAD_0012 = """
CREATE OR REPLACE FUNCTION jobyard_count_dead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM dead_letter_counts;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'dead' THEN
            UPDATE dead_letter_counts SET n = n - 1 WHERE type = OLD.type AND queue = OLD.queue;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'dead' THEN
            INSERT INTO dead_letter_counts (type, queue, n) VALUES (NEW.type, NEW.queue, 1)
            ON CONFLICT (type, queue) DO UPDATE SET n = dead_letter_counts.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""

UNCOUNT_DELETED_0012 = """
CREATE OR REPLACE FUNCTION jobyard_uncount_deleted_dead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_letter_counts c SET n = c.n - g.n
    FROM (SELECT type, queue, count(*) AS n FROM gone WHERE status = 'dead' GROUP BY type, queue) g
    WHERE c.type = g.type AND c.queue = g.queue;
    RETURN NULL;
END
$$
"""


def _counts(key: list[str]) -> None:
    """dead_letter_counts keyed by ``key``, counted again from the dead letters."""
    op.execute("DELETE FROM dead_letter_counts")
    op.drop_constraint("pk_dead_letter_counts", "dead_letter_counts", type_="primary")
    op.create_primary_key("pk_dead_letter_counts", "dead_letter_counts", key)
    columns = ", ".join(key)
    op.execute(
        f"INSERT INTO dead_letter_counts ({columns}, n) "
        f"SELECT {columns}, count(*) FROM jobs WHERE status = 'dead' GROUP BY {columns}"
    )


def _open_index(columns: list[str]) -> None:
    where = sa.text(f"status IN {IN_FLIGHT_STATUSES}")
    op.drop_index("ix_jobs_open", table_name="jobs", postgresql_where=where)
    op.create_index("ix_jobs_open", "jobs", columns, unique=False, postgresql_where=where)


def upgrade() -> None:
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.add_column(
        "dead_letter_counts", sa.Column("tenant", sa.Text(), nullable=False, server_default="default")
    )
    _counts(["tenant", "type", "queue"])
    op.execute(COUNT_DEAD)
    op.execute(UNCOUNT_DELETED)
    _open_index([*OPEN_COLUMNS, "tenant"])


def downgrade() -> None:
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    _open_index(OPEN_COLUMNS)
    op.execute(COUNT_DEAD_0012)
    op.execute(UNCOUNT_DELETED_0012)
    _counts(["type", "queue"])
    op.drop_column("dead_letter_counts", "tenant")

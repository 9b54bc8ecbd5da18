"""dead letter counts: the overview counts dead letters from a row per type, not from every one

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:10:00.000000

Dead letters stay in ``jobs`` for their retention (30 days by default): hundreds of thousands on a
busy farm, which the queue overview, the dashboard and ``/metrics`` counted on every read.
``dead_letter_counts`` holds their number per type and queue, kept by row triggers on ``jobs`` in the
transaction that makes a job dead, redrives, discards or prunes it; the triggers' WHEN clauses are
checked without calling the function, so the writes of the hot path (claim, finish) pay nothing.
``ix_jobs_open`` no longer holds dead letters. Both are built under a lock that holds writes to
``jobs`` for the time it takes to count its dead letters (the live table: its finished jobs have
moved to the history).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: Copied from core/platform/tables/engine.py: a migration must not change when the code does.
OPEN_STATUSES = ("scheduled", "queued", "running", "retrying", "dead")
IN_FLIGHT_STATUSES = ("scheduled", "queued", "running", "retrying")

COUNT_DEAD = """
CREATE FUNCTION jobyard_count_dead() RETURNS trigger LANGUAGE plpgsql AS $$
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

# Deletes (pruning, by batches of hundreds) are counted once per statement, from its deleted rows.
UNCOUNT_DELETED = """
CREATE FUNCTION jobyard_uncount_deleted_dead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_letter_counts c SET n = c.n - g.n
    FROM (SELECT type, queue, count(*) AS n FROM gone WHERE status = 'dead' GROUP BY type, queue) g
    WHERE c.type = g.type AND c.queue = g.queue;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER jobs_count_dead_insert AFTER INSERT ON jobs FOR EACH ROW "
    "WHEN (NEW.status = 'dead') EXECUTE FUNCTION jobyard_count_dead()",
    "CREATE TRIGGER jobs_count_dead_update AFTER UPDATE OF status ON jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status AND (OLD.status = 'dead' OR NEW.status = 'dead')) "
    "EXECUTE FUNCTION jobyard_count_dead()",
    "CREATE TRIGGER jobs_count_dead_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS gone "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobyard_uncount_deleted_dead()",
    "CREATE TRIGGER jobs_count_dead_truncate AFTER TRUNCATE ON jobs FOR EACH STATEMENT "
    "EXECUTE FUNCTION jobyard_count_dead()",
)


def upgrade() -> None:
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "dead_letter_counts",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type", "queue", name=op.f("pk_dead_letter_counts")),
    )
    op.execute(
        "INSERT INTO dead_letter_counts (type, queue, n) "
        "SELECT type, queue, count(*) FROM jobs WHERE status = 'dead' GROUP BY type, queue"
    )
    op.execute(COUNT_DEAD)
    op.execute(UNCOUNT_DELETED)
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.drop_index("ix_jobs_open", table_name="jobs", postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"))
    op.create_index(
        "ix_jobs_open",
        "jobs",
        ["type", "queue", "status", "published_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN {IN_FLIGHT_STATUSES}"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_jobs_open", table_name="jobs", postgresql_where=sa.text(f"status IN {IN_FLIGHT_STATUSES}")
    )
    op.create_index(
        "ix_jobs_open",
        "jobs",
        ["type", "queue", "status", "published_at"],
        unique=False,
        postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"),
    )
    for name in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER jobs_count_dead_{name} ON jobs")
    op.execute("DROP FUNCTION jobyard_count_dead()")
    op.execute("DROP FUNCTION jobyard_uncount_deleted_dead()")
    op.drop_table("dead_letter_counts")

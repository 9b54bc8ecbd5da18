"""Finished jobs leave the live table: ``jobs`` holds what is open and what finished a few minutes ago,
``job_history`` everything else, a partition per UTC day of finishing.

Why two tables: enqueue, claim and finish touch only ``jobs``, which stays the size of the work in
flight whatever the history holds, and a day of history goes by dropping its partition
(core/engine/retention.py) instead of deleting millions of rows one by one.

What moves, and when: a job that ended ``succeeded`` or ``cancelled``, once its attempts are folded
into the job counters (core/engine/stats.py, a couple of minutes after it finished), in batches of
JOBYARD_HISTORY_BATCH, each one transaction: the job's row and its attempts' rows are deleted and
one history row holding both (the attempts as ``attempt_log``) is inserted. Rows are taken with
``FOR UPDATE SKIP LOCKED``, so several schedulers move side by side, never the same job twice.
Dead jobs stay in ``jobs``: the dead-letter queue lists, searches and redrives them there.

Reading a job goes to ``jobs`` first, then to ``job_history`` (core/engine/queries.py); an
idempotency key is looked up in both (core/engine/jobs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import stats
from core.engine.jobs import utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import HISTORY_PARTITION, job_history
from core.platform.tenants import reached

#: The statuses whose jobs move to the history (dead ones stay, for the dead-letter queue).
MOVED_STATUSES = ("succeeded", "cancelled")
#: One lock for making and dropping partitions, so two schedulers never race on the catalog.
PARTITIONS_LOCK = 0x6A6F6279_61726431  # "jobyard1"
DAY = timedelta(days=1)

#: The columns a job keeps in the history, in the order both tables are written.
COLUMNS = tuple(c.name for c in job_history.columns if c.name != "attempt_log")
_COLS = ", ".join(COLUMNS)

_MOVE = sa.text(
    f"""
    WITH attempts AS (
        DELETE FROM job_attempts WHERE job_id = ANY(CAST(:ids AS uuid[]))
        RETURNING job_id, number, worker, started_at, finished_at, outcome, error, job_status
    ), logs AS (
        SELECT job_id,
               jsonb_agg(jsonb_build_object(
                   'number', number, 'worker', worker, 'started_at', started_at,
                   'finished_at', finished_at, 'outcome', outcome, 'error', error,
                   'job_status', job_status) ORDER BY number) AS attempt_log
        FROM attempts GROUP BY job_id
    ), moved AS (
        DELETE FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING {_COLS}
    )
    INSERT INTO job_history ({_COLS}, attempt_log)
    SELECT {", ".join(f"moved.{c}" for c in COLUMNS)}, coalesce(logs.attempt_log, '[]'::jsonb)
    FROM moved LEFT JOIN logs ON logs.job_id = moved.id
    """
)


def partition_name(day: date) -> str:
    return f"job_history_{day:%Y%m%d}"


def day_of(name: str) -> date:
    return datetime.strptime(name.removeprefix("job_history_"), "%Y%m%d").date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def partitions(conn: Connection) -> list[str]:
    """The days of job_history that exist, oldest first."""
    names = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'job_history'::regclass"
        )
    ).scalars()
    return sorted(n for n in names if HISTORY_PARTITION.fullmatch(n))


def ensure_partitions(conn: Connection, days: Iterable[date]) -> list[str]:
    """Make the partitions of ``days`` that do not exist yet (in the caller's transaction, which
    holds job_history's lock until it ends: keep it short). Returns the ones made."""
    wanted = {partition_name(d): d for d in days}
    if not wanted:
        return []
    missing = sorted(set(wanted) - set(partitions(conn)))
    if not missing:
        return []
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITIONS_LOCK})
    made = []
    for name in sorted(set(missing) - set(partitions(conn))):
        start = day_start(wanted[name])
        conn.execute(
            sa.text(
                f"CREATE TABLE {name} PARTITION OF job_history "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + DAY).isoformat()}')"
            )
        )
        made.append(name)
    return made


def folded_until(conn: Connection) -> datetime:
    """Attempts that ended before this are counted: their jobs may leave ``jobs``."""
    return stats.rolled_until(conn)


def move_batch(settings: Settings, before: datetime) -> int:
    """Move up to a batch of jobs that finished (succeeded or cancelled) before ``before`` into the
    history, in one transaction. Returns the jobs moved."""
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, finished_at FROM jobs WHERE status IN ('succeeded', 'cancelled') "
                "AND finished_at < :before LIMIT :n FOR UPDATE SKIP LOCKED"
            ),
            {"before": before, "n": settings.history_batch},
        ).all()
        if not rows:
            return 0
        ensure_partitions(conn, {r.finished_at.astimezone(UTC).date() for r in rows})
        conn.execute(_MOVE, {"ids": [str(r.id) for r in rows]})
        return len(rows)


def move_finished(
    settings: Settings, before: datetime, should_stop: Callable[[], bool] = lambda: False
) -> int:
    """Move every job that finished before ``before`` (and whose attempts are counted), a batch per
    transaction, until none is left or ``should_stop()``. Returns the jobs moved."""
    # Today's and tomorrow's days are made ahead, in a transaction of their own: making a day locks
    # job_history, and a move that had to make its day would hold that lock for its whole batch.
    today = utcnow().astimezone(UTC).date()
    with transaction(settings) as conn:
        ensure_partitions(conn, {today, today + DAY})
    moved = 0
    while not should_stop():
        done = move_batch(settings, before)
        moved += done
        if done < settings.history_batch:
            break
    return moved


def find(conn: Connection, job_id: Any, tenant: str | None = None) -> sa.Row[Any] | None:
    """A finished job from the history (one index probe per day kept), if it is ``tenant``'s
    (None: anyone's)."""
    query = sa.select(job_history).where(job_history.c.id == job_id, reached(job_history, tenant))
    return conn.execute(query).first()

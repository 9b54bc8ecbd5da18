"""Hourly job counters: the per-minute rows (core/engine/stats.py, kept a day) summed per hour and kept
JOBYARD_RETAIN_HOURLY_ROLLUPS (30 days), for the dashboard's 24-hour and 30-day charts.

An hour is summed once all of its minutes are folded (the rollup's ``rolled_until`` is past its
end), in the transaction of the minute rollup that got there, under the same lock: it reads the
hour's minute rows (a few hundred, whatever the farm's volume), never the attempts, so it costs the
same at a thousand jobs a day or ten million. ``hours_rolled_until`` says which hours are in.
Retention (core/engine/retention.py) removes the hours past their time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.platform.tables import job_stats_hours, job_stats_minutes, job_stats_rollup

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def roll_hours(conn: Connection, now: datetime) -> int:
    """Sum into ``job_stats_hours`` the minute rows of every whole hour that ended before both the
    minute rollup's ``rolled_until`` and ``now``, and is not summed yet. Returns how many hours had
    rows (0 when none, or another transaction holds the rollup). Commit right after."""
    state = conn.execute(
        sa.select(job_stats_rollup.c.rolled_until, job_stats_rollup.c.hours_rolled_until)
        .where(job_stats_rollup.c.id == 1)
        .with_for_update(skip_locked=True)
    ).first()
    if state is None:
        return 0
    since = state.hours_rolled_until or EPOCH
    until = hour_of(min(state.rolled_until, now))
    if until <= since:
        return 0
    m = job_stats_minutes.c
    hour = sa.func.date_trunc("hour", m.minute)
    summed = (
        sa.select(hour, m.type, m.outcome, m.job_status, sa.func.sum(m.attempts))
        .where(m.minute >= since, m.minute < until)
        .group_by(hour, m.type, m.outcome, m.job_status)
    )
    stmt = pg_insert(job_stats_hours).from_select(
        ["hour", "type", "outcome", "job_status", "attempts"], summed
    )
    hours = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                job_stats_hours.c.hour,
                job_stats_hours.c.type,
                job_stats_hours.c.outcome,
                job_stats_hours.c.job_status,
            ],
            set_={"attempts": job_stats_hours.c.attempts + stmt.excluded.attempts},
        ).returning(job_stats_hours.c.hour)
    ).scalars()
    summed_hours = len(set(hours))
    conn.execute(
        sa.update(job_stats_rollup).where(job_stats_rollup.c.id == 1).values(hours_rolled_until=until)
    )
    return summed_hours


def hours_rolled_until(conn: Connection) -> datetime:
    """Hours before this are in ``job_stats_hours``."""
    value: datetime | None = conn.execute(
        sa.select(job_stats_rollup.c.hours_rolled_until).where(job_stats_rollup.c.id == 1)
    ).scalar_one()
    return value or EPOCH


def prune_hours_batch(conn: Connection, before: datetime, batch: int) -> int:
    """Remove up to ``batch`` hourly rows of hours before ``before``."""
    doomed = (
        sa.select(
            job_stats_hours.c.hour,
            job_stats_hours.c.type,
            job_stats_hours.c.outcome,
            job_stats_hours.c.job_status,
        )
        .where(job_stats_hours.c.hour < before)
        .order_by(job_stats_hours.c.hour)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .subquery()
    )
    key = (
        job_stats_hours.c.hour,
        job_stats_hours.c.type,
        job_stats_hours.c.outcome,
        job_stats_hours.c.job_status,
    )
    removed = conn.execute(
        sa.delete(job_stats_hours).where(
            sa.tuple_(*key).in_(
                sa.select(doomed.c.hour, doomed.c.type, doomed.c.outcome, doomed.c.job_status)
            )
        )
    ).rowcount
    return int(removed)

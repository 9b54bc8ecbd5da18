"""Rows holding a time Python cannot read (stored before client times were bounded, or by a process
of an older release): each is failed on its own, with a code, so it cannot break a read or a loop.

Postgres stores years up to 294276, Python's datetime only up to 9999: a ``run_at`` sent as
``9999-12-31T23:59:59-14:00`` is year 10000 in UTC, and every read of its row used to fail. The
scheduler runs this now and then; migration 0008 did the same once for rows already there.
Nothing here reads such a time into Python: the values are shown as Postgres text.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import structlog

from core.engine.jobs import JobStatus
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs, schedules

log = structlog.get_logger(__name__)

#: Instants every session time zone (offsets up to ±14 h, with a margin) shows within years 1 to 9999.
READABLE_FROM = datetime(1, 1, 2, tzinfo=UTC)
READABLE_UNTIL = datetime(9999, 12, 30, tzinfo=UTC)


def _outside(column: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    return sa.or_(column < READABLE_FROM, column >= READABLE_UNTIL)


def fail_out_of_range(settings: Settings) -> int:
    """Dead-letter waiting jobs due past year 9999, disable schedules holding such a time; how many."""
    now = sa.func.now()
    # Only waiting jobs: no other status can hold such a run_at (a job due "in year 0" is due at once
    # and simply runs). Two ranges, not an OR: each is a range scan of the due index, cheap on any
    # backlog.
    waiting = jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING))
    outside = sa.union_all(
        sa.select(jobs.c.id).where(waiting, jobs.c.run_at < READABLE_FROM),
        sa.select(jobs.c.id).where(waiting, jobs.c.run_at >= READABLE_UNTIL),
    )
    error = sa.func.jsonb_build_object(
        "code",
        "run_at_out_of_range",
        "message",
        "run_at " + sa.cast(jobs.c.run_at, sa.Text) + " is outside years 1 to 9999 in UTC",
        "retryable",
        False,
    )
    reason = (
        "start_at "
        + sa.cast(schedules.c.start_at, sa.Text)
        + ", next_run_at "
        + sa.cast(schedules.c.next_run_at, sa.Text)
        + " is outside years 1 to 9999 in UTC"
    )
    with transaction(settings) as conn:
        dead = conn.execute(
            sa.update(jobs)
            .where(jobs.c.id.in_(outside.scalar_subquery()), waiting)
            .values(
                status=JobStatus.DEAD,
                finished_at=now,
                updated_at=now,
                message_id=None,
                error=error,
                run_at=jobs.c.created_at,
            )
            .returning(jobs.c.id)
        )
        job_ids = [str(i) for i in dead.scalars()]
        # Schedules are few: a scan of the table is fine.
        disabled = conn.execute(
            sa.update(schedules)
            .where(sa.or_(_outside(schedules.c.start_at), _outside(schedules.c.next_run_at)))
            .values(
                enabled=False,
                disabled_code="time_out_of_range",
                disabled_reason=reason,
                disabled_at=now,
                start_at=schedules.c.created_at,
                next_run_at=schedules.c.created_at,
                updated_at=now,
            )
            .returning(schedules.c.id)
        )
        schedule_ids = [str(i) for i in disabled.scalars()]
    for job_id in job_ids:
        log.warning("job_failed_out_of_range", job_id=job_id, code="run_at_out_of_range")
    for schedule_id in schedule_ids:
        log.warning("schedule_disabled", schedule_id=schedule_id, code="time_out_of_range")
    return len(job_ids) + len(schedule_ids)

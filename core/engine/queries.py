"""Reads and cancellations of jobs, as the control API and the CLI need them.

A job is in ``jobs`` while it is open or just finished, then in ``job_history``
(core/engine/finished.py): reads look in both, changes only in ``jobs`` (a job in the history is
final, and answers as one).

Every read and change takes the caller's reach, ``tenant``: a key sees only its tenant's jobs, and
another tenant's job is not found, exactly as one that never existed; None (an admin key, the
command line) reaches every tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import finished, workflows
from core.engine.jobs import CANCELLABLE, Job, JobStatus, utcnow
from core.errors import JobNotFound, NotCancellable, NotReschedulable
from core.platform.pagination import page, split_page
from core.platform.tables import job_attempts, job_history, jobs
from core.platform.tenants import reached


class Attempt(msgspec.Struct, kw_only=True):
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: dict[str, Any] | None
    #: The status the attempt left the job in (succeeded, retrying, dead, queued); null while running.
    job_status: str | None = None


def _row(conn: Connection, job_id: uuid.UUID, tenant: str | None) -> sa.Row[Any]:
    live = conn.execute(sa.select(jobs).where(jobs.c.id == job_id, reached(jobs, tenant))).first()
    row = live or finished.find(conn, job_id, tenant)
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return row


def get_job(conn: Connection, job_id: uuid.UUID, tenant: str | None = None) -> Job:
    return Job.from_row(_row(conn, job_id, tenant))


def _attempt(r: Any) -> Attempt:
    return Attempt(
        number=r["number"],
        worker=r["worker"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        outcome=r["outcome"],
        error=r["error"],
        job_status=r["job_status"],
    )


def list_attempts(conn: Connection, job_id: uuid.UUID, tenant: str | None = None) -> list[Attempt]:
    row = _row(conn, job_id, tenant)
    if "attempt_log" in row._mapping:
        # Moved to the history: the attempts travel with the job, their times as JSON strings.
        return [msgspec.convert(a, Attempt, strict=False) for a in row._mapping["attempt_log"]]
    rows = conn.execute(
        sa.select(job_attempts).where(job_attempts.c.job_id == job_id).order_by(job_attempts.c.number)
    )
    return [_attempt(r._mapping) for r in rows]


class JobFilter(msgspec.Struct, kw_only=True):
    type: str | None = None
    status: str | None = None
    business_key: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: The caller's reach (None: every tenant).
    tenant: str | None = None


def _filtered(table: sa.Table, f: JobFilter) -> sa.Select[Any]:
    c = table.c
    query = sa.select(*(c[name] for name in finished.COLUMNS)).where(reached(table, f.tenant))
    if f.type:
        query = query.where(c.type == f.type)
    if f.status:
        query = query.where(c.status == f.status)
    if f.business_key:
        query = query.where(c.business_key == f.business_key)
    if f.created_after:
        query = query.where(c.created_at > f.created_after)
    if f.created_before:
        query = query.where(c.created_at < f.created_before)
    return query


def list_jobs(conn: Connection, f: JobFilter, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
    """Newest first, from both tables: Postgres merges their (and each day's) newest-first indexes,
    so a page costs the page, not the history."""
    both = sa.union_all(_filtered(jobs, f), _filtered(job_history, f)).subquery("j")
    rows, next_cursor = split_page(
        conn.execute(page(sa.select(both), both.c.created_at, both.c.id, limit, cursor)).all(), limit
    )
    return [Job.from_row(r) for r in rows], next_cursor


def _cancel_values(by: uuid.UUID | None) -> dict[str, Any]:
    now = utcnow()
    return {
        "status": JobStatus.CANCELLED,
        "finished_at": now,
        "updated_at": now,
        "message_id": None,
        "cancelled_by": by,
    }


#: The channel a cancel of a running job notifies (its id as payload), in the transaction that asks
#: it: the worker holding the job stops it (workers/cancellation.py).
CANCEL_CHANNEL = "jobyard_cancel"


def cancel_job(
    conn: Connection, job_id: uuid.UUID, tenant: str | None = None, by: uuid.UUID | None = None
) -> Job:
    """Cancel a job: at once if no worker has claimed it (a worker that receives it later skips it);
    a running one is asked to stop (``cancel_requested_at``; its worker is notified, and the job
    ends ``cancelled`` unless it finishes first). ``by``: the API key that asked, recorded on the job.
    NotCancellable for a finished job."""
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(CANCELLABLE), reached(jobs, tenant))
        .values(**_cancel_values(by))
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.from_row(row)
    running = request_cancel(conn, job_id, tenant, by)
    if running is not None:
        return running
    raise NotCancellable(get_job(conn, job_id, tenant).status)


def request_cancel(
    conn: Connection, job_id: uuid.UUID, tenant: str | None = None, by: uuid.UUID | None = None
) -> Job | None:
    """Ask the worker running the job to stop it; None if it is not running. A second request
    changes nothing (the first one's time and key stay)."""
    now = utcnow()
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING, reached(jobs, tenant))
        .values(
            cancel_requested_at=sa.func.coalesce(jobs.c.cancel_requested_at, now),
            cancelled_by=sa.case(
                (jobs.c.cancel_requested_at.is_(None), sa.literal(by, jobs.c.cancelled_by.type)),
                else_=jobs.c.cancelled_by,
            ),
            updated_at=now,
        )
        .returning(*jobs.c)
    ).first()
    if row is None:
        return None
    conn.execute(sa.select(sa.func.pg_notify(CANCEL_CHANNEL, str(job_id))))
    return Job.from_row(row)


def cancel_by_business_key(
    conn: Connection, business_key: str, tenant: str | None = None, by: uuid.UUID | None = None
) -> int:
    """Cancel the key's jobs not claimed yet, and the steps of its workflows that have no job yet
    (the workflows first locked, so a step succeeding meanwhile enqueues none). Returns the jobs."""
    running_workflows = workflows.lock_by_business_key(conn, business_key, tenant)
    result = conn.execute(
        sa.update(jobs)
        .where(jobs.c.business_key == business_key, jobs.c.status.in_(CANCELLABLE), reached(jobs, tenant))
        .values(**_cancel_values(by))
    )
    workflows.cancel_waiting(conn, running_workflows)
    return int(result.rowcount)


def reschedule_job(conn: Connection, job_id: uuid.UUID, run_at: datetime, tenant: str | None = None) -> Job:
    """Move a job that is still waiting for its time; the scheduler publishes it when run_at comes."""
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.SCHEDULED, reached(jobs, tenant))
        .values(run_at=run_at, updated_at=utcnow())
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.from_row(row)
    raise NotReschedulable(get_job(conn, job_id, tenant).status)

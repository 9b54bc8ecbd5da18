"""Reads and cancellations of jobs, as the control API and the CLI need them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.jobs import CANCELLABLE, Job, JobStatus, utcnow
from core.errors import JobNotFound, NotCancellable, NotReschedulable
from core.platform.pagination import page, split_page
from core.platform.tables import job_attempts, jobs


class Attempt(msgspec.Struct, kw_only=True):
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: dict[str, Any] | None
    #: The status the attempt left the job in (succeeded, retrying, dead, queued); null while running.
    job_status: str | None = None


def get_job(conn: Connection, job_id: uuid.UUID) -> Job:
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return Job.from_row(row)


def list_attempts(conn: Connection, job_id: uuid.UUID) -> list[Attempt]:
    get_job(conn, job_id)
    rows = conn.execute(
        sa.select(job_attempts).where(job_attempts.c.job_id == job_id).order_by(job_attempts.c.number)
    )
    return [
        Attempt(
            number=r.number,
            worker=r.worker,
            started_at=r.started_at,
            finished_at=r.finished_at,
            outcome=r.outcome,
            error=r.error,
            job_status=r.job_status,
        )
        for r in rows
    ]


class JobFilter(msgspec.Struct, kw_only=True):
    type: str | None = None
    status: str | None = None
    business_key: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def list_jobs(conn: Connection, f: JobFilter, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
    query = sa.select(jobs)
    if f.type:
        query = query.where(jobs.c.type == f.type)
    if f.status:
        query = query.where(jobs.c.status == f.status)
    if f.business_key:
        query = query.where(jobs.c.business_key == f.business_key)
    if f.created_after:
        query = query.where(jobs.c.created_at > f.created_after)
    if f.created_before:
        query = query.where(jobs.c.created_at < f.created_before)
    rows, next_cursor = split_page(
        conn.execute(page(query, jobs.c.created_at, jobs.c.id, limit, cursor)).all(), limit
    )
    return [Job.from_row(r) for r in rows], next_cursor


def _cancel_values() -> dict[str, Any]:
    now = utcnow()
    return {"status": JobStatus.CANCELLED, "finished_at": now, "updated_at": now, "message_id": None}


def cancel_job(conn: Connection, job_id: uuid.UUID) -> Job:
    """Cancel a job that no worker has claimed; a worker that receives it later skips it."""
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(CANCELLABLE))
        .values(**_cancel_values())
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.from_row(row)
    raise NotCancellable(get_job(conn, job_id).status)


def cancel_by_business_key(conn: Connection, business_key: str) -> int:
    result = conn.execute(
        sa.update(jobs)
        .where(jobs.c.business_key == business_key, jobs.c.status.in_(CANCELLABLE))
        .values(**_cancel_values())
    )
    return int(result.rowcount)


def reschedule_job(conn: Connection, job_id: uuid.UUID, run_at: datetime) -> Job:
    """Move a job that is still waiting for its time; the scheduler publishes it when run_at comes."""
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.SCHEDULED)
        .values(run_at=run_at, updated_at=utcnow())
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.from_row(row)
    raise NotReschedulable(get_job(conn, job_id).status)

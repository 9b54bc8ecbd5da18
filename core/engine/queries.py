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
from core.engine.deadletters import text_matches
from core.engine.jobs import CANCELLABLE, Job, JobStatus, utcnow
from core.errors import JobNotFound, NotCancellable, NotReschedulable, NotRetryable
from core.platform.pagination import encode_cursor, page, split_page
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
    queue: str | None = None
    #: One job, by its id.
    id: uuid.UUID | None = None
    #: Text searched, case-insensitive, in the payload and the error's message: within the newest
    #: TEXT_SCAN jobs the other fields match past the cursor (see ``list_jobs``).
    q: str | None = None


#: Jobs a text search reads per page at most: a search is a scan of JSON text, which no index
#: serves, so it is bounded to a window of the newest jobs the other filters match (an index range).
TEXT_SCAN = 5_000


def filter_where(table: sa.Table, f: JobFilter) -> list[sa.ColumnElement[bool]]:
    """The conditions of ``f`` on ``table`` (jobs or job_history), the text search aside. Each one is
    served by an index of both tables (type, status, business key, id, created_at) or narrows one."""
    c = table.c
    # No condition at all for every tenant: a constant `WHERE true` in each half of the union keeps
    # Postgres from merging the halves' newest-first indexes (a sort of both tables instead).
    where = [] if f.tenant is None else [reached(table, f.tenant)]
    if f.type:
        where.append(c.type == f.type)
    if f.status:
        where.append(c.status == f.status)
    if f.queue:
        where.append(c.queue == f.queue)
    if f.business_key:
        where.append(c.business_key == f.business_key)
    if f.id:
        where.append(c.id == f.id)
    if f.created_after:
        where.append(c.created_at > f.created_after)
    if f.created_before:
        where.append(c.created_at < f.created_before)
    return where


def _filtered(table: sa.Table, f: JobFilter) -> sa.Select[Any]:
    return sa.select(*(table.c[name] for name in finished.COLUMNS)).where(*filter_where(table, f))


def newest_page(f: JobFilter, limit: int, cursor: str | None) -> sa.Select[Any]:
    """The ``limit`` + 1 newest jobs past ``cursor`` that ``f`` matches (the text search aside), from
    both tables. Each table's half is ordered and limited on its own, so each reads its page from an
    index ordered as the list is, (column, created_at, id): Postgres does not merge the indexes of a
    union whose halves have conditions, and would sort every matching row of both tables instead."""
    halves = [page(_filtered(t, f), t.c.created_at, t.c.id, limit, cursor) for t in (jobs, job_history)]
    both = sa.union_all(*halves).subquery("j")
    return sa.select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit + 1)


def list_jobs(conn: Connection, f: JobFilter, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
    """Newest first, from both tables: a page costs the page, not the history (``newest_page``).

    With a text search, a page reads the newest TEXT_SCAN jobs past the cursor that the other fields
    match and keeps those holding the text: a page may then hold fewer jobs than ``limit`` and still
    have a next cursor, the window's end, where the search goes on."""
    if not f.q:
        rows, next_cursor = split_page(conn.execute(newest_page(f, limit, cursor)).all(), limit)
        return [Job.from_row(r) for r in rows], next_cursor
    window = newest_page(f, TEXT_SCAN - 1, cursor).subquery("w")
    found = sa.select(window).where(text_matches(window.c.error, window.c.payload, f.q))
    rows, next_cursor = split_page(
        conn.execute(found.order_by(window.c.created_at.desc(), window.c.id.desc()).limit(limit + 1)).all(),
        limit,
    )
    if next_cursor is None:
        edge = conn.execute(
            sa.select(window.c.created_at, window.c.id, sa.func.count().over().label("n"))
            .order_by(window.c.created_at, window.c.id)
            .limit(1)
        ).first()
        if edge is not None and edge.n >= TEXT_SCAN:  # the window was full: older jobs remain
            next_cursor = encode_cursor(edge.created_at, edge.id)
    return [Job.from_row(r) for r in rows], next_cursor


def count_jobs(conn: Connection, f: JobFilter, most: int) -> int:
    """How many jobs ``f`` matches (the text search aside), counting no further than ``most``: an
    exact count of ten million rows is a scan, and a page only needs to say "more than".
    """
    both = sa.union_all(
        sa.select(jobs.c.id).where(*filter_where(jobs, f)),
        sa.select(job_history.c.id).where(*filter_where(job_history, f)),
    ).subquery("j")
    capped = sa.select(both.c.id).limit(most).subquery("c")
    return int(conn.execute(sa.select(sa.func.count()).select_from(capped)).scalar_one())


def cancel_values(by: uuid.UUID | None) -> dict[str, Any]:
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
        .values(**cancel_values(by))
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
        .values(**cancel_values(by))
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


#: A job that waits for its time: what "run now" and a reschedule of many jobs may move.
WAITING = (JobStatus.SCHEDULED, JobStatus.RETRYING)


def retry_now(conn: Connection, job_id: uuid.UUID, tenant: str | None = None) -> Job:
    """Make a scheduled or retrying job due now: the scheduler publishes it on its next look (at most
    JOBYARD_SCHEDULER_INTERVAL later). Its retry budget is unchanged. A dead job goes back through the
    dead-letter redrive instead (core/engine/redrive.py), which grants a fresh budget."""
    now = utcnow()
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(WAITING), reached(jobs, tenant))
        .values(run_at=now, updated_at=now)
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.from_row(row)
    raise NotRetryable(get_job(conn, job_id, tenant).status)

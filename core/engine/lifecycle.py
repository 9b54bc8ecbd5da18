"""A job's life in a worker: claim it, then record success or failure, fenced by the attempt number.

Claiming is one committed transaction (the job shows `running`). The job's own Postgres effects and
its success are written in a second transaction that only commits if this worker still holds the
claim, so an effect in Postgres happens exactly once even when a message is delivered twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import workflows
from core.engine.broker import Publication
from core.engine.job_types import get_job_type, open_payload
from core.engine.jobs import CLAIMABLE, JobStatus, utcnow
from core.engine.retry import decide
from core.errors import ClaimLost, UnknownOutcomeError
from core.platform.tables import job_attempts, jobs
from core.platform.tenants import DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker moved to `running`; ``attempt`` fences every later write."""

    job_id: uuid.UUID
    type: str
    #: The payload as stored: sealed fields still sealed. ``open_claim`` opens them, after the claim
    #: committed, so a value that does not open fails this job, never the claim.
    stored_payload: dict[str, Any]
    attempt: int
    max_retries: int
    #: Attempts that do not count against max_retries (see models.jobs.retry_base).
    retry_base: int
    request_id: str | None
    business_key: str | None
    #: Whose job it is: its handler reads and writes that tenant's rows (core/platform/tenants.py).
    tenant: str = DEFAULT_TENANT
    #: The workflow the job is a step of (core/engine/workflows.py); None for every other job.
    workflow_id: uuid.UUID | None = None

    @classmethod
    def from_row(cls, row: Any) -> Claim:
        """From a claimed row: id, type, payload, attempts, max_retries, retry_base, request_id,
        business_key, tenant, workflow_id."""
        return cls(
            job_id=row.id,
            type=row.type,
            stored_payload=row.payload,
            attempt=row.attempts,
            max_retries=row.max_retries,
            retry_base=row.retry_base,
            request_id=row.request_id,
            business_key=row.business_key,
            tenant=row.tenant,
            workflow_id=row.workflow_id,
        )


def open_claim(c: Claim) -> dict[str, Any]:
    """The claim's payload with its sealed fields opened, for the handler; DataKeyMismatch (a
    permanent failure of this job alone) when one does not open."""
    return open_payload(get_job_type(c.type), c.stored_payload)


def claim(
    conn: Connection, job_id: uuid.UUID, worker: str, worker_id: str, deadline_at: datetime
) -> Claim | None:
    """Move a queued or retrying job to running; None when it is finished, cancelled or held elsewhere.

    ``worker_id`` names the worker process (its heartbeat row); ``deadline_at`` is when the run is
    presumed stuck and recovered.
    """
    now = utcnow()
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(CLAIMABLE))
        .values(
            status=JobStatus.RUNNING,
            attempts=jobs.c.attempts + 1,
            started_at=now,
            updated_at=now,
            worker=worker,
            worker_id=worker_id,
            deadline_at=deadline_at,
            # A new attempt starts from nothing: the last one's progress is not its.
            progress_fraction=None,
            progress_message=None,
            progress_at=None,
        )
        .returning(
            jobs.c.id,
            jobs.c.type,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_retries,
            jobs.c.retry_base,
            jobs.c.request_id,
            jobs.c.business_key,
            jobs.c.tenant,
            jobs.c.workflow_id,
        )
    ).first()
    if row is None:
        return None
    conn.execute(
        sa.insert(job_attempts).values(
            job_id=job_id, number=row.attempts, type=row.type, worker=worker, started_at=now
        )
    )
    return Claim.from_row(row)


def _fenced(c: Claim) -> Any:
    return sa.and_(jobs.c.id == c.job_id, jobs.c.status == JobStatus.RUNNING, jobs.c.attempts == c.attempt)


def _finish_attempt(
    conn: Connection, c: Claim, outcome: str, error: dict[str, Any] | None, now: datetime, job_status: str
) -> None:
    conn.execute(
        sa.update(job_attempts)
        .where(job_attempts.c.job_id == c.job_id, job_attempts.c.number == c.attempt)
        .values(finished_at=now, outcome=outcome, error=error, job_status=job_status)
    )


def mark_succeeded(conn: Connection, c: Claim, result: Any) -> list[Publication]:
    """Record success in the caller's transaction; raises ClaimLost if the claim is no longer ours.

    A step of a workflow inserts the steps it made ready in the same transaction; their messages are
    returned, for the caller to publish after the commit (empty for every other job).
    """
    now = utcnow()
    done = conn.execute(
        sa.update(jobs)
        .where(_fenced(c))
        .values(
            status=JobStatus.SUCCEEDED,
            result=result,
            error=None,
            finished_at=now,
            updated_at=now,
            worker_id=None,
            deadline_at=None,
        )
    )
    if done.rowcount != 1:
        raise ClaimLost(str(c.job_id))
    _finish_attempt(conn, c, "succeeded", None, now, JobStatus.SUCCEEDED)
    return [] if c.workflow_id is None else workflows.advance(conn, [c.workflow_id])


def mark_failed(conn: Connection, c: Claim, error: dict[str, Any]) -> JobStatus:
    """Record a failed attempt: back to Postgres to wait for a retry, or to the dead letters.

    A job whose cancel was asked while it ran ends ``cancelled`` instead, whatever the error but
    ``unknown_outcome``: its handler stopped because of the cancel (an aborted call,
    ``ctx.stop_if_cancelled()``) or failed meanwhile, and a cancelled job is not retried.

    Returns the job's new status; raises ClaimLost if the claim is no longer ours.
    """
    now = utcnow()
    requested = conn.execute(sa.select(jobs.c.cancel_requested_at).where(_fenced(c))).scalar_one_or_none()
    # Except an outside effect of unknown outcome: it stays dead, for a human to decide.
    if requested is not None and error.get("code") != UnknownOutcomeError.code:
        return mark_cancelled(conn, c, error)
    rate_limit_waits = conn.execute(
        sa.select(sa.func.count())
        .select_from(job_attempts)
        .where(job_attempts.c.job_id == c.job_id, job_attempts.c.outcome == "rate_limited")
    ).scalar_one()
    decision = decide(
        get_job_type(c.type),
        attempt=c.attempt,
        retry_base=c.retry_base,
        max_retries=c.max_retries,
        error=error,
        rate_limit_waits=rate_limit_waits,
        now=now,
    )
    values: dict[str, Any] = {"error": error, "updated_at": now, "worker_id": None, "deadline_at": None}
    if decision.free:
        values["retry_base"] = jobs.c.retry_base + 1
    if decision.status == JobStatus.RETRYING:
        # The retry waits in Postgres; the scheduler publishes it when run_at comes.
        values.update(status=decision.status, run_at=decision.run_at, message_id=None)
    else:
        values.update(status=decision.status, finished_at=now)
    done = conn.execute(sa.update(jobs).where(_fenced(c)).values(**values))
    if done.rowcount != 1:
        raise ClaimLost(str(c.job_id))
    _finish_attempt(conn, c, decision.outcome, error, now, decision.status)
    return decision.status


#: What the attempt of a job cancelled while it ran records.
CANCELLED_WHILE_RUNNING = "cancelled while running: the cancel was asked and the worker stopped the job"


def cancel_record(error: dict[str, Any] | None) -> dict[str, Any]:
    """The attempt's error of a job cancelled while running: the cancel, and what the handler raised."""
    record: dict[str, Any] = {"code": "cancelled", "message": CANCELLED_WHILE_RUNNING, "retryable": False}
    if error is not None and error.get("code") != "cancelled":
        record["raised"] = {k: v for k, v in error.items() if k != "traceback"}
    return record


def mark_cancelled(conn: Connection, c: Claim, error: dict[str, Any] | None = None) -> JobStatus:
    """End a running job ``cancelled`` (its cancel was asked while it ran), fenced as mark_failed;
    the attempt records ``cancelled`` and, in ``raised``, the error its handler stopped with."""
    now = utcnow()
    done = conn.execute(sa.update(jobs).where(_fenced(c)).values(**cancelled_values(now)))
    if done.rowcount != 1:
        raise ClaimLost(str(c.job_id))
    _finish_attempt(conn, c, "cancelled", cancel_record(error), now, JobStatus.CANCELLED)
    return JobStatus.CANCELLED


def cancelled_values(now: datetime) -> dict[str, Any]:
    """The job row's values once a run is cancelled: final, held by no worker, no message."""
    return {
        "status": JobStatus.CANCELLED,
        "finished_at": now,
        "updated_at": now,
        "worker_id": None,
        "deadline_at": None,
        "message_id": None,
    }

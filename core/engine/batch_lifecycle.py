"""The job lifecycle of core/engine/lifecycle.py for many jobs at once: one statement per step, not per job.

Two ways to run a batch. In two steps (``claim_many``, then ``mark_many_succeeded``), the guarantees
are the single-job ones: the claims commit before any effect (a worker that dies mid-batch leaves
`running` rows that recovery counts as attempts), and effects commit with the successes only if
every claim of the batch is still this worker's (the fenced update locks the rows until the
commit); otherwise the batch rolls back and its jobs run one by one.

At once (``lock_many``, then ``finish_many``, in one transaction with the effects), for a type whose
effects are Postgres writes in that same transaction: the claim rides with the result. The rows are
locked, not rewritten, while the handler runs, and one update takes each job from queued to
succeeded and records its attempt as ended. Half the row versions and index entries, one commit
instead of two. Nothing of a run is committed unless all of it is, so a worker that dies in the
transaction leaves no attempt to count: the jobs are still queued, and their messages go back to
the queue with the dead worker's other unacknowledged ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import workflows
from core.engine.broker import Publication
from core.engine.jobs import CLAIMABLE, JobStatus, utcnow
from core.engine.lifecycle import Claim
from core.errors import BatchClaimLost

# Each step is one statement (data-modifying CTEs): one round trip, one plan, for any batch size.
_CLAIM = sa.text(
    """
    WITH claimed AS (
        UPDATE jobs SET status = :running, attempts = attempts + 1, started_at = :now,
                        updated_at = :now, worker = :worker, worker_id = :worker_id, deadline_at = :deadline
        WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(CAST(:claimable AS text[]))
        RETURNING id, type, payload, attempts, max_retries, retry_base, request_id, business_key, tenant,
                  workflow_id
    ), recorded AS (
        INSERT INTO job_attempts (job_id, number, type, worker, started_at)
        SELECT id, attempts, type, :worker, :now FROM claimed
    )
    SELECT * FROM claimed
    """
)
_SUCCEED = sa.text(
    """
    WITH done AS (
        UPDATE jobs SET status = :succeeded, result = r.result::jsonb, error = NULL, finished_at = :now,
                        updated_at = :now, worker_id = NULL, deadline_at = NULL
        FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[]), CAST(:results AS text[]))
            AS r(id, number, result)
        WHERE jobs.id = r.id AND jobs.status = :running AND jobs.attempts = r.number
        RETURNING jobs.id, jobs.attempts
    ), finished AS (
        UPDATE job_attempts SET finished_at = :now, outcome = 'succeeded', error = NULL,
                                job_status = :succeeded
        FROM done WHERE job_attempts.job_id = done.id AND job_attempts.number = done.attempts
    )
    SELECT count(*) FROM done
    """
)


_LOCK = sa.text(
    """
    SELECT id, type, payload, attempts + 1 AS attempts, max_retries, retry_base, request_id, business_key,
           tenant, workflow_id
    FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(CAST(:claimable AS text[]))
    ORDER BY id FOR UPDATE
    """
)
_FINISH = sa.text(
    """
    WITH done AS (
        UPDATE jobs SET status = :succeeded, attempts = r.number, result = r.result::jsonb, error = NULL,
                        started_at = :started, finished_at = :now, updated_at = :now, worker = :worker,
                        worker_id = NULL, deadline_at = NULL
        FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[]), CAST(:results AS text[]))
            AS r(id, number, result)
        WHERE jobs.id = r.id AND jobs.attempts = r.number - 1 AND jobs.status = ANY(CAST(:claimable AS text[]))
        RETURNING jobs.id, jobs.attempts, jobs.type
    ), recorded AS (
        INSERT INTO job_attempts (job_id, number, type, worker, started_at, finished_at, outcome, job_status)
        SELECT id, attempts, type, :worker, :started, :now, 'succeeded', :succeeded FROM done
    )
    SELECT count(*) FROM done
    """
)


def lock_many(conn: Connection, job_ids: Sequence[uuid.UUID]) -> list[Claim]:
    """Lock every claimable job of ``job_ids`` until the caller's transaction ends, without changing
    them (a job another transaction holds is waited for, as a claim's update would); each Claim
    carries the attempt number the run will have. Pairs with ``finish_many`` in that transaction."""
    rows = conn.execute(_LOCK, {"ids": list(job_ids), "claimable": [s.value for s in CLAIMABLE]}).all()
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    return [Claim.from_row(r) for r in sorted(rows, key=lambda r: order[r.id])]


def finish_many(
    conn: Connection,
    claims: Sequence[Claim],
    results: Sequence[Any],
    worker: str,
    started_at: datetime,
) -> list[Publication]:
    """Take the jobs ``lock_many`` locked straight to succeeded, each with its attempt recorded as
    begun at ``started_at`` by ``worker`` and ended now, in the caller's transaction. Returns the
    workflow steps those successes made ready, to publish after the commit."""
    if not claims:
        return []
    encoded = [None if r is None else msgspec.json.encode(r).decode() for r in results]
    done: int = conn.execute(
        _FINISH,
        {
            "succeeded": JobStatus.SUCCEEDED.value,
            "claimable": [s.value for s in CLAIMABLE],
            "now": utcnow(),
            "started": started_at,
            "worker": worker,
            "results": encoded,
            **_keys(claims),
        },
    ).scalar_one()
    if done != len(claims):  # the rows are locked: only a bug gets here
        raise BatchClaimLost(f"{len(claims) - done} of {len(claims)} locked jobs changed under the lock")
    steps = [c.workflow_id for c in claims if c.workflow_id is not None]
    return workflows.advance(conn, steps) if steps else []


def claim_many(
    conn: Connection, job_ids: Sequence[uuid.UUID], worker: str, worker_id: str, deadline_at: datetime
) -> list[Claim]:
    """Claim every claimable job of ``job_ids`` (see lifecycle.claim); the rest are left out."""
    now = utcnow()
    rows = conn.execute(
        _CLAIM,
        {
            "running": JobStatus.RUNNING.value,
            "now": now,
            "worker": worker,
            "worker_id": worker_id,
            "deadline": deadline_at,
            "ids": list(job_ids),
            "claimable": [s.value for s in CLAIMABLE],
        },
    ).all()
    if not rows:
        return []
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    # Run them in the order they were queued.
    return [Claim.from_row(r) for r in sorted(rows, key=lambda r: order[r.id])]


def _keys(claims: Sequence[Claim]) -> dict[str, Any]:
    return {"ids": [c.job_id for c in claims], "numbers": [c.attempt for c in claims]}


def mark_many_succeeded(
    conn: Connection, claims: Sequence[Claim], results: Sequence[Any]
) -> list[Publication]:
    """Record the success of every claim in the caller's transaction, fenced by attempt number;
    raises BatchClaimLost (and the caller must roll back) if any claim is no longer held.

    Returns the messages of the workflow steps those successes made ready (lifecycle.mark_succeeded),
    to publish after the commit."""
    if not claims:
        return []
    now = utcnow()
    encoded = [None if r is None else msgspec.json.encode(r).decode() for r in results]
    done: int = conn.execute(
        _SUCCEED,
        {
            "succeeded": JobStatus.SUCCEEDED.value,
            "running": JobStatus.RUNNING.value,
            "now": now,
            "results": encoded,
            **_keys(claims),
        },
    ).scalar_one()
    if done != len(claims):
        raise BatchClaimLost(f"{len(claims) - done} of {len(claims)} claims were taken over")
    steps = [c.workflow_id for c in claims if c.workflow_id is not None]
    return workflows.advance(conn, steps) if steps else []

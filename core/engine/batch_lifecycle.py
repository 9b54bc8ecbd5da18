"""The job lifecycle of core/engine/lifecycle.py for many jobs at once: one statement per step, not per job.

The guarantees are the single-job ones: the claims commit before any effect (a worker that dies
mid-batch leaves `running` rows that recovery counts as attempts), and effects commit with the
successes only if every claim of the batch is still this worker's (the fenced update locks the
rows until the commit); otherwise the batch rolls back and its jobs run one by one.
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

"""The job lifecycle of core/lifecycle.py for many jobs at once: one statement per step, not per job.

The guarantees are the single-job ones: the claims commit before any effect (a worker that dies
mid-batch leaves `running` rows that recovery counts as attempts), and effects commit with the
successes only for jobs whose claim this worker still holds, checked under row locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.jobs import CLAIMABLE, JobStatus, utcnow
from core.lifecycle import Claim

_CLAIM = sa.text(
    """
    UPDATE jobs SET status = :running, attempts = attempts + 1, started_at = :now, updated_at = :now,
                    worker = :worker, worker_id = :worker_id, deadline_at = :deadline
    WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(CAST(:claimable AS text[]))
    RETURNING id, type, payload, attempts, max_retries, retry_base, request_id, business_key
    """
)
_RECORD_ATTEMPTS = sa.text(
    """
    INSERT INTO job_attempts (job_id, number, worker, started_at)
    SELECT a.job_id, a.number, :worker, :now FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[])) AS a(job_id, number)
    """
)
_LOCK = sa.text(
    """
    SELECT id FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) AND status = :running
       AND attempts = (SELECT n FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[])) AS c(id, n) WHERE c.id = jobs.id)
    ORDER BY id FOR UPDATE
    """
)
_SUCCEED = sa.text(
    """
    UPDATE jobs SET status = :succeeded, result = r.result::jsonb, error = NULL, finished_at = :now,
                    updated_at = :now, worker_id = NULL, deadline_at = NULL
    FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[]), CAST(:results AS text[])) AS r(id, number, result)
    WHERE jobs.id = r.id AND jobs.status = :running AND jobs.attempts = r.number
    """
)
_FINISH_ATTEMPTS = sa.text(
    """
    UPDATE job_attempts SET finished_at = :now, outcome = 'succeeded', error = NULL
    FROM unnest(CAST(:ids AS uuid[]), CAST(:numbers AS int[])) AS a(job_id, number)
    WHERE job_attempts.job_id = a.job_id AND job_attempts.number = a.number
    """
)


class BatchClaimLost(Exception):
    """A job's claim changed under a row lock this transaction holds; should never happen."""


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
    conn.execute(
        _RECORD_ATTEMPTS,
        {"worker": worker, "now": now, "ids": [r.id for r in rows], "numbers": [r.attempts for r in rows]},
    )
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    return [
        Claim(
            job_id=r.id,
            type=r.type,
            payload=r.payload,
            attempt=r.attempts,
            max_retries=r.max_retries,
            retry_base=r.retry_base,
            request_id=r.request_id,
            business_key=r.business_key,
        )
        # run them in the order they were queued
        for r in sorted(rows, key=lambda r: order[r.id])
    ]


def _keys(claims: Sequence[Claim]) -> dict[str, Any]:
    return {"ids": [c.job_id for c in claims], "numbers": [c.attempt for c in claims]}


def hold_claims(conn: Connection, claims: Sequence[Claim]) -> list[Claim]:
    """Lock the rows of the claims this worker still holds (until the transaction ends) and return
    those claims; a claim taken over by recovery or another worker is left out."""
    held = {row.id for row in conn.execute(_LOCK, {"running": JobStatus.RUNNING.value, **_keys(claims)})}
    return [c for c in claims if c.job_id in held]


def mark_many_succeeded(conn: Connection, claims: Sequence[Claim], results: Sequence[Any]) -> None:
    """Record success of held claims (see hold_claims) in the caller's transaction."""
    if not claims:
        return
    now = utcnow()
    encoded = [None if r is None else msgspec.json.encode(r).decode() for r in results]
    done = conn.execute(
        _SUCCEED,
        {
            "succeeded": JobStatus.SUCCEEDED.value,
            "running": JobStatus.RUNNING.value,
            "now": now,
            "results": encoded,
            **_keys(claims),
        },
    )
    if done.rowcount != len(claims):
        raise BatchClaimLost(f"{len(claims) - done.rowcount} of {len(claims)} claims changed under a lock")
    conn.execute(_FINISH_ATTEMPTS, {"now": now, **_keys(claims)})

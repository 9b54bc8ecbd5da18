"""Worker heartbeats, and getting jobs back from workers that died, hung, or shut down mid-job.

Dramatiq alone returns a dead worker's messages only after its heartbeat timeout *and* a chance
maintenance run (about 22 minutes on an idle farm). Here each worker process beats in Postgres; the
scheduler recovers the running jobs of a silent worker within seconds of ``worker_dead_after_s``.
A lost run counts as an attempt, so a job that kills every worker that runs it ends in the dead
letters with ``worker_lost`` instead of looping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Connection

from core.engine.broker import Publication, publish
from core.engine.isolation import dead_letter, describe, isolated, publish_isolated
from core.engine.jobs import JobStatus, utcnow
from core.engine.lifecycle import cancel_record, cancelled_values
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import job_attempts, jobs, workers

log = structlog.get_logger(__name__)

#: Rows of workers that stopped beating this long ago are deleted; they only serve recovery.
FORGET_WORKERS_AFTER = timedelta(hours=1)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def register_worker(
    settings: Settings, worker_id: str, queues: Sequence[str], broker_id: str, threads: int | None = None
) -> None:
    with transaction(settings) as conn:
        conn.execute(
            sa.insert(workers).values(
                id=worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(queues),
                broker_id=broker_id,
                threads=threads,
                started_at=utcnow(),
                last_seen_at=utcnow(),
            )
        )


def live_broker_ids(conn: Connection, settings: Settings) -> set[str]:
    """Dramatiq broker ids of worker processes that beat recently."""
    silent_since = utcnow() - timedelta(seconds=settings.worker_dead_after_s)
    return set(
        conn.execute(
            sa.select(workers.c.broker_id).where(
                workers.c.last_seen_at >= silent_since, workers.c.broker_id.isnot(None)
            )
        ).scalars()
    )


def beat(settings: Settings, worker_id: str) -> bool:
    """Record that the worker is alive; returns whether ops asked it to go quiet (core/engine/workers.py),
    read in the same statement."""
    with transaction(settings) as conn:
        asked = conn.execute(
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(last_seen_at=utcnow())
            .returning(workers.c.quiet_requested_at)
        ).scalar()
    return asked is not None


def mark_quiet(settings: Settings, worker_id: str) -> None:
    """The worker fetches nothing more: say so (the state ops see turns from quieting to quiet)."""
    with transaction(settings) as conn:
        conn.execute(
            sa.update(workers)
            .where(workers.c.id == worker_id, workers.c.quiet_at.is_(None))
            .values(quiet_at=utcnow())
        )


def unregister_worker(settings: Settings, worker_id: str) -> None:
    with transaction(settings) as conn:
        conn.execute(sa.delete(workers).where(workers.c.id == worker_id))


def _return_job(
    conn: Connection, row: Any, outcome: str, error: dict[str, Any], *, free: bool
) -> Publication | None:
    """End the row's current attempt with ``outcome`` and queue the job again, or dead-letter it."""
    now = utcnow()
    if row.cancel_requested_at is not None:
        _cancel_lost(conn, row, error, now)
        return None
    retry_base = row.retry_base + 1 if free else row.retry_base
    dead = row.attempts - retry_base > row.max_retries
    conn.execute(
        sa.update(job_attempts)
        .where(job_attempts.c.job_id == row.id, job_attempts.c.number == row.attempts)
        .values(
            finished_at=now,
            outcome=outcome,
            error=error,
            job_status=JobStatus.DEAD if dead else JobStatus.QUEUED,
        )
    )
    common: dict[str, Any] = {"error": error, "updated_at": now, "worker_id": None, "deadline_at": None}
    if dead:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == row.id)
            .values(status=JobStatus.DEAD, finished_at=now, retry_base=retry_base, **common)
        )
        return None
    message_id = str(uuid.uuid4())
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            status=JobStatus.QUEUED,
            retry_base=retry_base,
            message_id=message_id,
            published_at=now,
            run_at=now,
            **common,
        )
    )
    return Publication(
        row.id, row.type, row.queue, message_id, row.request_id, row.tenant, row.priority, redelivered=True
    )


def _cancel_lost(conn: Connection, row: Any, error: dict[str, Any], now: datetime) -> None:
    """A job whose cancel was asked while it ran, and whose run is lost or handed back: it ends
    ``cancelled``, never queued again."""
    conn.execute(
        sa.update(job_attempts)
        .where(job_attempts.c.job_id == row.id, job_attempts.c.number == row.attempts)
        .values(
            finished_at=now, outcome="cancelled", error=cancel_record(error), job_status=JobStatus.CANCELLED
        )
    )
    conn.execute(sa.update(jobs).where(jobs.c.id == row.id).values(**cancelled_values(now)))


_RUNNING = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.queue,
    jobs.c.attempts,
    jobs.c.max_retries,
    jobs.c.retry_base,
    jobs.c.request_id,
    jobs.c.worker_id,
    jobs.c.deadline_at,
    jobs.c.tenant,
    jobs.c.priority,
    jobs.c.cancel_requested_at,
)


def recover_lost_jobs(settings: Settings, broker: RedisBroker) -> int:
    """Requeue (or dead-letter) running jobs whose worker is silent or whose run is past its deadline."""
    now = utcnow()
    silent_since = now - timedelta(seconds=settings.worker_dead_after_s)
    alive = sa.select(workers.c.id).where(workers.c.last_seen_at >= silent_since)
    publications = []
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(*_RUNNING)
            .where(
                jobs.c.status == JobStatus.RUNNING,
                sa.or_(jobs.c.worker_id.is_(None), jobs.c.worker_id.not_in(alive), jobs.c.deadline_at < now),
            )
            .limit(settings.scheduler_batch)
            .with_for_update(skip_locked=True)
        ).all()
        live = set(conn.execute(alive).scalars())
        for row in rows:
            # Each job in a savepoint: one that cannot be returned goes to the dead letters alone.
            pub = isolated(
                conn,
                partial(_recover, conn, row, row.worker_id in live),
                partial(_fail_recovery, conn, row.id),
                "job_recovery_failed",
                job_id=str(row.id),
            )
            if pub is not None:
                publications.append(pub)
        conn.execute(sa.delete(workers).where(workers.c.last_seen_at < now - FORGET_WORKERS_AFTER))
    return publish_isolated(settings, broker, publications)


def _recover(conn: Connection, row: Any, worker_alive: bool) -> Publication | None:
    if worker_alive:
        outcome = "timed_out"
        error = {
            "code": "time_limit_exceeded",
            "message": "the run was still going past its time limit and grace period",
            "retryable": True,
        }
    else:
        outcome = "lost"
        error = {
            "code": "worker_lost",
            "message": f"worker {row.worker_id} stopped (killed, out of memory, or lost its host)",
            "retryable": True,
        }
    pub = _return_job(conn, row, outcome, error, free=False)
    log.warning("job_recovered", job_id=str(row.id), outcome=outcome, requeued=pub is not None)
    return pub


def _fail_recovery(conn: Connection, job_id: uuid.UUID, exc: Exception) -> None:
    dead_letter(
        conn, job_id, "recovery_failed", f"the job could not be returned to its queue: {describe(exc)}"
    )


def hand_back(settings: Settings, broker: RedisBroker, worker_id: str) -> int:
    """At a worker's shutdown, give its unfinished jobs back to the queue without spending their budget.

    A thread that finishes later finds its claim gone and its writes are dropped (lifecycle fencing).
    """
    publications = []
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(*_RUNNING)
            .where(jobs.c.status == JobStatus.RUNNING, jobs.c.worker_id == worker_id)
            .with_for_update()
        ).all()
        error = {"code": "worker_shutdown", "message": "handed back at worker shutdown", "retryable": True}
        for row in rows:
            pub = _return_job(conn, row, "interrupted", error, free=True)
            if pub is not None:
                publications.append(pub)
    return publish(broker, publications)

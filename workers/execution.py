"""Running claimed jobs through their type's handler: one job, or a batch of one type together.

A batch handler (``@job_type(..., batch=...)``), whose effect is a small Postgres write (an unread
counter), costs far less per job when a worker thread takes every job of its type waiting in Redis at
once: one claim statement, one transaction for all effects and successes, one acknowledgement round
trip (core/engine/consumer.py hands out the batches). Each job keeps its own attempt, fencing and
result. If the batch transaction fails, each job is run alone through the type's ordinary handler,
so one bad job fails only itself.

A batch writes one line for all its jobs, not one per job: ``jobs_succeeded`` with each job's id,
request id and attempt in ``jobs`` (docs/operations/metrics.md); a job that fails has its own line.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any, cast

import dramatiq
import msgspec
import structlog
from dramatiq.brokers.redis import RedisBroker

from core.engine.batch_lifecycle import claim_many, finish_many, lock_many, mark_many_succeeded
from core.engine.broker import Publication
from core.engine.declare import BatchContext, BatchHandler, JobContext
from core.engine.job_types import JobType, get_job_type
from core.engine.jobs import publish_after_commit, utcnow
from core.engine.lifecycle import Claim, mark_succeeded, open_claim
from core.engine.progress import ProgressReporter
from core.errors import ClaimLost
from core.platform.cancellation import running
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings
from workers import cancellation, middleware

log = structlog.get_logger(__name__)


def run_current(settings: Settings) -> None:
    """Run the job this worker thread claimed (JobLifecycle claimed it before the actor was called)."""
    run_claimed(middleware.current_claim(), settings)


def run_claimed(claim: Claim, settings: Settings) -> None:
    """Run a claimed job through its handler and commit its success (raises on failure)."""
    job_type = get_job_type(claim.type)
    handler = job_type.handler
    if handler is None:
        raise RuntimeError(f"job type {claim.type!r} has no handler")
    # Opened here, after the claim committed: a value that does not open fails this job alone.
    payload = msgspec.convert(open_claim(claim), job_type.payload)
    # The run's cancel scope (workers/cancellation.py) is this thread's while the handler runs: the
    # providers' calls find it there. Its last progress report is written however the run ends.
    reporter = ProgressReporter(claim, settings)
    with cancellation.scope_for(claim.job_id) as scope, running(scope):
        try:
            if not job_type.transactional:
                ctx = JobContext(claim, settings, None, cancel_scope=scope, reporter=reporter)
                result = handler(ctx, payload)
                reporter.flush()
                with transaction(settings) as conn:
                    successors = mark_succeeded(conn, claim, result)
            else:
                with transaction(settings) as conn:
                    ctx = JobContext(claim, settings, conn, cancel_scope=scope, reporter=reporter)
                    result = handler(ctx, payload)
                    reporter.flush()
                    successors = mark_succeeded(conn, claim, result)
        except BaseException:
            reporter.flush()
            raise
    _publish(successors)


def _publish(successors: list[Publication]) -> None:
    """Publish the workflow steps a success made ready, after its commit (the sweeper if this fails)."""
    if successors:
        publish_after_commit(cast(RedisBroker, dramatiq.get_broker()), successors)


def run_batch(job_type: JobType, job_ids: list[uuid.UUID], settings: Settings) -> None:
    """Run the jobs through the type's batch handler: at once (one transaction) for a transactional
    type, else, or if that fails, claim them in one statement, run them in one transaction, and, if
    that fails too, run each alone."""
    batch = job_type.batch
    if batch is None:
        raise RuntimeError(f"job type {job_type.name!r} has no batch handler")
    if job_type.transactional and _run_batch_at_once(job_type, batch, job_ids, settings):
        return
    lifecycle = middleware.current_lifecycle()
    deadline = utcnow() + timedelta(seconds=job_type.timeout_s + settings.stuck_grace_s)
    # One statement (claim and attempt records), committed on its own before any effect.
    with autocommit(settings) as conn:
        claims = claim_many(conn, job_ids, middleware.worker_name(), lifecycle.worker_id, deadline)
    _log_unclaimed(job_type, job_ids, claims)
    started = time.monotonic()
    _log_started(job_type, claims)
    claims, payloads = _open_payloads(lifecycle, job_type, claims)
    if not claims:
        return
    try:
        with transaction(settings) as conn:
            results = batch(BatchContext(claims, settings, conn), payloads)
            successors = mark_many_succeeded(conn, claims, results)
    except Exception as exc:
        # Run each job alone: its own transaction, fenced on its own (a claim taken over by recovery
        # or another worker is dropped there), and its own failure record if it fails again.
        log.warning("batch_failed_running_singly", type=job_type.name, jobs=len(claims), error=str(exc))
        succeeded = [claim for claim in claims if _run_single(lifecycle, claim, settings)]
        if succeeded:
            _log_succeeded(job_type, succeeded, started, singly=True)
        return
    _publish(successors)
    _log_succeeded(job_type, claims, started)


def _run_batch_at_once(
    job_type: JobType, batch: BatchHandler, job_ids: list[uuid.UUID], settings: Settings
) -> bool:
    """Lock the jobs, run the batch handler and take each job straight to succeeded, all in one
    transaction (core/engine/batch_lifecycle.py: the claim rides with the result). False when it
    rolled back (a payload that does not open, the handler failed): nothing of it is committed, and
    the caller runs the batch in steps, where each job's failure is recorded as its own."""
    started = utcnow()
    began = time.monotonic()
    try:
        with transaction(settings) as conn:
            claims = lock_many(conn, job_ids)
            payloads = [msgspec.convert(open_claim(c), job_type.payload) for c in claims]
            results = batch(BatchContext(claims, settings, conn), payloads) if claims else []
            successors = finish_many(conn, claims, results, middleware.worker_name(), started)
    except Exception as exc:
        log.info("batch_running_in_steps", type=job_type.name, jobs=len(job_ids), error=str(exc))
        return False
    _log_unclaimed(job_type, job_ids, claims)
    _log_started(job_type, claims)
    _publish(successors)
    if claims:
        _log_succeeded(job_type, claims, began)
    return True


def _log_unclaimed(job_type: JobType, job_ids: list[uuid.UUID], claims: list[Claim]) -> None:
    """A line for each job of the batch that was not claimable (finished, cancelled, running
    elsewhere), or a second delivery of a job already in it."""
    if len(claims) == len(job_ids):
        return
    unclaimed = {c.job_id for c in claims}
    for job_id in job_ids:
        if job_id in unclaimed:
            unclaimed.discard(job_id)
        else:
            log.info("job_skipped", job_id=str(job_id), type=job_type.name, reason="not claimable")


def _open_payloads(
    lifecycle: middleware.JobLifecycle, job_type: JobType, claims: list[Claim]
) -> tuple[list[Claim], list[Any]]:
    """Each claim's payload opened and typed; a job whose payload does not open (a sealed value under
    a key this worker lacks, or bound elsewhere) fails alone, and the others run as a batch."""
    ready: list[Claim] = []
    payloads: list[Any] = []
    for c in claims:
        try:
            payloads.append(msgspec.convert(open_claim(c), job_type.payload))
        except Exception as exc:
            lifecycle.record_failure(c, exc)
            continue
        ready.append(c)
    return ready, payloads


def _jobs(claims: list[Claim]) -> list[dict[str, Any]]:
    # Per job, the fields JobLifecycle binds for a single job's lines.
    return [{"job_id": str(c.job_id), "request_id": c.request_id, "attempt": c.attempt} for c in claims]


def _log_started(job_type: JobType, claims: list[Claim]) -> None:
    if claims and log.is_enabled_for(logging.DEBUG):
        log.debug("jobs_started", type=job_type.name, count=len(claims), jobs=_jobs(claims))


def _log_succeeded(job_type: JobType, claims: list[Claim], started: float, singly: bool = False) -> None:
    """One line for the batch's successes (a single job's is ``job_succeeded``)."""
    log.info(
        "jobs_succeeded",
        type=job_type.name,
        count=len(claims),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        **({"singly": True} if singly else {}),
        jobs=_jobs(claims),
    )


def _run_single(lifecycle: middleware.JobLifecycle, claim: Claim, settings: Settings) -> bool:
    """Whether the job succeeded (a failure has its line and its record)."""
    try:
        run_claimed(claim, settings)
    except ClaimLost:
        log.warning(
            "claim_lost",
            job_id=str(claim.job_id),
            request_id=claim.request_id,
            detail="another worker owns this job now",
        )
    except Exception as exc:
        lifecycle.record_failure(claim, exc)
    else:
        return True
    return False

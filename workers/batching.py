"""Batch handlers: many queued jobs of one type claimed, run and committed together.

A handler whose effect is a small Postgres write (an unread counter) costs far less per job when
a worker thread takes every job of its type waiting in Redis at once: one claim statement, one
transaction for all effects and successes, one acknowledgement round trip (core/engine/consumer.py hands
out the batches). Each job keeps its own attempt, fencing and result. If the batch transaction
fails, each job is run alone through its ordinary handler, so one bad job fails only itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
import msgspec
import structlog
from sqlalchemy.engine import Connection

from core.engine.batch_lifecycle import claim_many, mark_many_succeeded
from core.engine.consumer import batch_actor_name
from core.engine.job_types import JobType
from core.engine.jobs import utcnow
from core.engine.lifecycle import Claim, open_claim
from core.errors import ClaimLost
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings
from workers import middleware

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a batch handler gets: the claims (in queue order) and the transaction of their effects."""

    claims: Sequence[Claim]
    settings: Settings
    conn: Connection


#: Takes the payloads in queue order and returns one result per payload, in the same order, as
#: if the jobs had run one after the other.
BatchHandler = Callable[[BatchContext, list[Any]], list[Any]]
_batch_handlers: dict[str, BatchHandler] = {}


def batch_handler(type_name: str) -> Callable[[BatchHandler], BatchHandler]:
    """Register a batch handler for ``type_name``, which must also have an ordinary handler
    (used when a batch fails, to run its jobs one by one)."""

    def register(fn: BatchHandler) -> BatchHandler:
        _batch_handlers[type_name] = fn
        return fn

    return register


def declare_batch_actor(
    broker: dramatiq.Broker, settings: Settings, job_type: JobType, options: dict[str, Any]
) -> None:
    if job_type.name not in _batch_handlers or settings.worker_batch_max <= 1:
        return

    def fn(job_ids: list[str], _type: JobType = job_type) -> None:
        run_batch(_type, [uuid.UUID(j) for j in job_ids], settings)

    dramatiq.Actor(
        fn,
        broker=broker,
        actor_name=batch_actor_name(job_type.name),
        queue_name=job_type.queue_name,
        priority=0,
        options=options,
    )


def run_batch(job_type: JobType, job_ids: list[uuid.UUID], settings: Settings) -> None:
    lifecycle = middleware.current_lifecycle()
    deadline = utcnow() + timedelta(seconds=job_type.timeout_s + settings.stuck_grace_s)
    # One statement (claim and attempt records), committed on its own before any effect.
    with autocommit(settings) as conn:
        claims = claim_many(conn, job_ids, middleware.worker_name(), lifecycle.worker_id, deadline)
    if len(claims) < len(job_ids):
        # Not claimable, or a second delivery of a job already in this batch.
        unclaimed = {c.job_id for c in claims}
        for job_id in job_ids:
            if job_id in unclaimed:
                unclaimed.discard(job_id)
            else:
                log.info("job_skipped", job_id=str(job_id), type=job_type.name, reason="not claimable")
    for c in claims:
        _log_job("job_started", c)
    claims, payloads = _open_payloads(lifecycle, job_type, claims)
    if not claims:
        return
    try:
        with transaction(settings) as conn:
            results = _batch_handlers[job_type.name](BatchContext(claims, settings, conn), payloads)
            mark_many_succeeded(conn, claims, results)
    except Exception as exc:
        # Run each job alone: its own transaction, fenced on its own (a claim taken over by recovery
        # or another worker is dropped there), and its own failure record if it fails again.
        log.warning("batch_failed_running_singly", type=job_type.name, jobs=len(claims), error=str(exc))
        for claim in claims:
            _run_single(lifecycle, claim, settings)
        return
    for c in claims:
        _log_job("job_succeeded", c)


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


def _log_job(event: str, c: Claim) -> None:
    # The fields JobLifecycle binds for a single job, so a job's log lines read the same either way.
    log.info(event, job_id=str(c.job_id), type=c.type, attempt=c.attempt, request_id=c.request_id)


def _run_single(lifecycle: middleware.JobLifecycle, claim: Claim, settings: Settings) -> None:
    from workers.handlers import run_claimed

    try:
        run_claimed(claim, settings)
    except ClaimLost:
        log.warning("claim_lost", job_id=str(claim.job_id), detail="another worker owns this job now")
    except Exception as exc:
        lifecycle.record_failure(claim, exc)

"""Redrive and discard: what changes the dead letters, in batches, with one audit row per action.

Both first resolve their selection to job ids (a redrive also checks every patched payload, so a
bad patch changes nothing), then work through those ids in batches, each its own transaction.
Resolving first means a job that dies again while a large redrive is still running is not picked
up a second time; small batches mean a 10,000-job redrive never holds thousands of row locks
against the workers, and its jobs start running while later batches are still being written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.broker import Publication, new_message_id, publish
from core.engine.deadletters import PREVIEW_SIZE, Outcome, Selection, any_id, newest_first, patched, resolve
from core.engine.job_types import get_job_type
from core.engine.jobs import Job, JobStatus, utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

#: Jobs changed per transaction: large enough to redrive 10,000 jobs in seconds, small enough that
#: the row locks and the Redis burst of one batch stay short.
BATCH_SIZE = 500
#: The error code a discarded job carries; the error it died with stays under "last_error".
DISCARDED = "discarded"

#: Called after each batch with the number of selected jobs it handled.
Progress = Callable[[int], object]


def _batches(ids: list[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(ids), BATCH_SIZE):
        yield ids[start : start + BATCH_SIZE]


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise ValueError("a reason is required")


#: One batch's work in its transaction: (jobs changed, up to ``room`` of them to show, what to do
#: once the transaction is committed).
BatchStep = Callable[[Connection, list[uuid.UUID], int], tuple[int, list[Job], Callable[[], object] | None]]


def _in_batches(
    settings: Settings,
    selection: Selection,
    step: BatchStep,
    *,
    action: str,
    done: str,
    reason: str,
    actor: str,
    payload_patch: dict[str, Any] | None = None,
    check: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """The loop of every action on dead letters: resolve the selection, ``step`` through it batch by
    batch, one transaction each, then one audit row with the counts (``done``: what the action did).
    ``check``: every (patched) payload is checked against its type first, see ``resolve``."""
    _require_reason(reason)
    with transaction(settings) as conn:
        ids = resolve(conn, selection, payload_patch, check=check)
    changed = handled = 0
    shown: list[Job] = []
    try:
        for batch in _batches(ids):
            with transaction(settings) as conn:
                count, preview, committed = step(conn, batch, PREVIEW_SIZE - len(shown))
            if committed is not None:
                committed()
            changed += count
            shown += preview
            handled += len(batch)
            if progress is not None:
                progress(len(batch))
            # A long run's progress in the logs too, whoever started it (the API, the dashboard).
            log.info("dead_letters_progress", action=action, handled=handled, matched=len(ids), actor=actor)
    finally:
        # Written even when stopped part-way, so that what was done is on record.
        with transaction(settings) as conn:
            audit_id = audit.record(
                conn,
                tenant=selection.tenant,
                actor=actor,
                action=action,
                selection=selection.as_json(),
                reason=reason,
                counts={"matched": len(ids), done: changed},
                payload_patch=payload_patch,
            )
    log.info(f"dead_letters_{done}", matched=len(ids), **{done: changed}, actor=actor, audit_id=str(audit_id))
    return Outcome(len(ids), changed, audit_id, shown)


def redrive(
    settings: Settings,
    broker: RedisBroker,
    selection: Selection,
    reason: str,
    actor: str,
    payload_patch: dict[str, Any] | None = None,
    progress: Progress | None = None,
    by: uuid.UUID | None = None,
) -> Outcome:
    """Put the selected dead letters back in their queues with a fresh retry budget.

    Each job keeps its attempt history (numbers continue); its payload is patched first when
    ``payload_patch`` is given. Raises InvalidPayloads, changing nothing, if any patched payload
    is invalid. ``progress(n)`` is called after each batch with the number of jobs it handled.
    ``by``: the API key that asked, recorded on each job.
    """

    def step(
        conn: Connection, batch: list[uuid.UUID], room: int
    ) -> tuple[int, list[Job], Callable[[], object]]:
        pubs = _redrive_batch(conn, batch, payload_patch, by)
        preview = _jobs(conn, [p.job_id for p in pubs[:room]]) if room > 0 and pubs else []
        return len(pubs), preview, lambda: _publish(broker, pubs)

    return _in_batches(
        settings,
        selection,
        step,
        action="redrive",
        done="redriven",
        reason=reason,
        actor=actor,
        payload_patch=payload_patch,
        check=True,
        progress=progress,
    )


def _redrive_batch(
    conn: Connection, batch: list[uuid.UUID], patch: dict[str, Any] | None, by: uuid.UUID | None
) -> list[Publication]:
    # SKIP LOCKED: a job another redrive or discard holds right now is theirs; it is left alone.
    rows = conn.execute(
        newest_first(
            sa.select(
                jobs.c.id,
                jobs.c.type,
                jobs.c.queue,
                jobs.c.payload,
                jobs.c.request_id,
                jobs.c.tenant,
                jobs.c.priority,
            ).where(jobs.c.status == JobStatus.DEAD, any_id(batch))
        ).with_for_update(skip_locked=True)
    ).all()
    params: list[dict[str, Any]] = []
    pubs: list[Publication] = []
    for row in rows:
        payload, errors = patched(row.type, row.payload, patch)
        if errors:
            # Its payload changed since the check (another redrive patched it and it died again).
            log.warning("redrive_skipped_invalid_payload", job_id=str(row.id), errors=len(errors))
            continue
        message_id = new_message_id()
        stored = get_job_type(row.type).seal(payload)
        params.append({"b_id": row.id, "b_payload": stored, "b_message_id": message_id})
        pubs.append(
            Publication(row.id, row.type, row.queue, message_id, row.request_id, row.tenant, row.priority)
        )
    if params:
        now = utcnow()
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == sa.bindparam("b_id"))
            .values(
                status=JobStatus.QUEUED,
                payload=sa.bindparam("b_payload", type_=JSONB),
                # A fresh budget: the lifecycle counts attempts - retry_base against max_retries.
                retry_base=jobs.c.attempts,
                error=sa.null(),
                finished_at=None,
                run_at=now,
                message_id=sa.bindparam("b_message_id"),
                published_at=now,
                updated_at=now,
                redriven_by=by,
            ),
            params,
        )
    return pubs


def _publish(broker: RedisBroker, pubs: list[Publication]) -> None:
    try:
        publish(broker, pubs)
    except (redis.RedisError, OSError) as exc:
        # The jobs are committed as queued: the scheduler's sweeper publishes them once it sees
        # their messages missing.
        log.warning("redrive_publish_failed_will_sweep", jobs=len(pubs), error=str(exc))


def _jobs(conn: Connection, ids: list[uuid.UUID]) -> list[Job]:
    rows = conn.execute(newest_first(sa.select(jobs).where(any_id(ids))))
    return [Job.from_row(r) for r in rows]


def discard(
    settings: Settings,
    selection: Selection,
    reason: str,
    actor: str,
    progress: Progress | None = None,
    by: uuid.UUID | None = None,
) -> Outcome:
    """Give up on the selected dead letters: they become `cancelled`, finished now.

    The job's error becomes {"code": "discarded", "message": reason, "retryable": false,
    "last_error": the error it died with (without its traceback)}; its attempts are kept. ``by``:
    the API key that asked, recorded on each job as the one that cancelled it.
    """

    def step(conn: Connection, batch: list[uuid.UUID], room: int) -> tuple[int, list[Job], None]:
        rows = conn.execute(_discard_batch(batch, reason, by)).all()
        rows = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
        return len(rows), [Job.from_row(r) for r in rows[:room]], None

    return _in_batches(
        settings,
        selection,
        step,
        action="discard",
        done="discarded",
        reason=reason,
        actor=actor,
        progress=progress,
    )


def _discard_batch(batch: list[uuid.UUID], reason: str, by: uuid.UUID | None) -> Any:
    locked = (
        sa.select(jobs.c.id)
        .where(jobs.c.status == JobStatus.DEAD, any_id(batch))
        .with_for_update(skip_locked=True)
    )
    error = sa.literal({"code": DISCARDED, "message": reason, "retryable": False}, JSONB).op(
        "||", return_type=JSONB
    )(sa.func.jsonb_build_object("last_error", jobs.c.error.op("-")(sa.cast("traceback", sa.Text))))
    now = utcnow()
    return (
        sa.update(jobs)
        .where(jobs.c.id.in_(locked.scalar_subquery()))
        .values(
            status=JobStatus.CANCELLED,
            error=error,
            finished_at=now,
            updated_at=now,
            message_id=None,
            cancelled_by=by,
        )
        .returning(*jobs.c)
    )

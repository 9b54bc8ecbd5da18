"""Moving jobs from Postgres onto Redis: due jobs, and queued jobs whose message Redis lost.

Publishing due jobs locks the rows it takes (FOR UPDATE SKIP LOCKED) and records the new message id
before publishing. The sweeper reads its candidates without locks, asks Redis where their messages
are, then changes only rows still queued under the message id it looked up; no lock is held across a
Redis call. Either way several schedulers can run at once without publishing a job twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from core.engine.broker import Publication, encode_message, new_message_id, publish
from core.engine.deadletters import any_id
from core.engine.isolation import publish_isolated
from core.engine.jobs import JobStatus, utcnow
from core.engine.locate import MISSING, WAITING, locate_messages
from core.engine.pauses import not_paused
from core.engine.recovery import live_broker_ids
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

#: Batches one publisher thread takes in a row before the scheduler's other steps get their turn.
BACKLOG_BATCHES = 10

_PUBLISHED = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.queue,
    jobs.c.message_id,
    jobs.c.request_id,
    jobs.c.tenant,
    jobs.c.priority,
)


def _publications(rows: Sequence[Any], redelivered: bool = False) -> list[Publication]:
    return [
        Publication(
            r.id, r.type, r.queue, r.message_id, r.request_id, r.tenant, r.priority, redelivered=redelivered
        )
        for r in rows
    ]


def publish_due(settings: Settings, broker: RedisBroker) -> int:
    """Publish scheduled jobs and retries whose run_at has come, but not those of a paused queue
    (core/engine/pauses.py): they wait in Postgres until it is resumed. Returns how many."""
    now = utcnow()
    due = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)),
            jobs.c.run_at <= now,
            not_paused(jobs.c.queue),
        )
        .order_by(jobs.c.run_at)
        .limit(settings.scheduler_batch)
        .with_for_update(skip_locked=True)
    )
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.update(jobs)
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                status=JobStatus.QUEUED,
                message_id=sa.cast(sa.func.gen_random_uuid(), sa.Text),
                published_at=now,
                updated_at=now,
            )
            .returning(*_PUBLISHED)
        ).all()
    # Committed first: if Redis fails now, the sweeper sees the message missing and retries; a job
    # whose message cannot be published at all goes to the dead letters alone.
    return publish_isolated(settings, broker, _publications(rows))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A job read ahead of its due time (``read_ahead``): its publication under a message id chosen
    then, that message encoded, its run_at (epoch seconds), the fields of ``_PUBLISHED`` after the
    id as that read found them, and the job's id as text."""

    pub: Publication
    message: bytes
    run_at: float
    fields: tuple[Any, ...]
    job_id: str


def read_ahead(settings: Settings, until: float, limit: int, stop_at: float | None = None) -> list[Prepared]:
    """Scheduled jobs and retries due by ``until`` (epoch seconds, Jobyard's clock), oldest due
    first, at most ``limit``, but not those of a paused queue; read without locks, each with a fresh
    message id and its message encoded (stamped with the time it is expected to be published: its
    run_at, or now for one overdue, on the wall clock publish uses). Nothing is decided
    here: ``publish_prepared`` takes a job only if it is still due and untaken when its time comes.
    Preparing stops at ``stop_at`` (``time.monotonic()``), with the jobs prepared so far: the
    others go the ordinary way, rather than their due time find the scheduler still reading."""
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(
                jobs.c.id,
                jobs.c.type,
                jobs.c.queue,
                jobs.c.request_id,
                jobs.c.tenant,
                jobs.c.priority,
                sa.cast(sa.func.extract("epoch", jobs.c.run_at), sa.Float).label("due"),
            )
            .where(
                jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)),
                jobs.c.run_at <= datetime.fromtimestamp(until, UTC),
                not_paused(jobs.c.queue),
            )
            .order_by(jobs.c.run_at)
            .limit(limit)
        ).all()
    prepared = []
    now, wall = utcnow().timestamp(), time.time()
    for n, (job_id, type_, queue, request_id, tenant, priority, due) in enumerate(rows):
        if stop_at is not None and n % 256 == 0 and time.monotonic() >= stop_at:
            break
        pub = Publication(job_id, type_, queue, new_message_id(), request_id, tenant, priority)
        fields = (type_, queue, pub.message_id, request_id, tenant, priority)
        stamp = int((wall + max(due - now, 0.0)) * 1000)
        prepared.append(Prepared(pub, encode_message(pub, stamp), due, fields, str(job_id)))
    return prepared


def publish_prepared(settings: Settings, broker: RedisBroker, batch: Sequence[Prepared]) -> int:
    """Publish the jobs of ``batch`` (read ahead) that are still due and not taken, as
    ``publish_due`` does, in one statement: it locks those rows (SKIP LOCKED, the status, run_at and
    pause checked again on the locked row) and changes them to queued under the message ids chosen
    ahead. Postgres's answer is the truth: a row whose fields differ from those read ahead has its
    message encoded again. Returns how many were published."""
    given = {p.pub.job_id: p for p in batch}  # one message id per job, whatever the caller passed
    if not given:
        return 0
    now = utcnow()
    # Two text parameters that Postgres splits, not arrays: psycopg writes an array element by element.
    ids = (
        sa.func.unnest(
            sa.cast(
                sa.func.string_to_array(",".join(p.job_id for p in given.values()), ","),
                ARRAY(UUID(as_uuid=True)),
            ),
            sa.func.string_to_array(",".join(p.pub.message_id for p in given.values()), ","),
        )
        .table_valued("id", "message_id")
        .render_derived(name="given")
    )
    # Each row looked up by its key (a LATERAL subquery per id), whatever the planner thinks of the
    # due index: a join may read every due row for each batch.
    row = jobs.alias("due_job")
    locked = (
        sa.select(row.c.id)
        .where(
            row.c.id == ids.c.id,
            row.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)),
            row.c.run_at <= now,
            not_paused(row.c.queue),
        )
        .with_for_update(skip_locked=True)
        .lateral("locked")
    )
    taken = sa.select(locked.c.id, ids.c.message_id).join_from(ids, locked, sa.true()).subquery("taken")
    # One statement, committed on its own: no BEGIN and COMMIT round trips.
    with autocommit(settings) as conn:
        rows = conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == taken.c.id)
            .values(
                status=JobStatus.QUEUED,
                message_id=taken.c.message_id,
                published_at=now,
                updated_at=now,
            )
            .returning(*_PUBLISHED)
        ).all()
    pubs: list[Publication] = []
    encoded: list[bytes] = []
    for r in rows:
        ahead = given[r[0]]
        if tuple(r[1:]) == ahead.fields:
            pubs.append(ahead.pub)
            encoded.append(ahead.message)
        else:  # changed since it was read: Postgres's row is the truth
            pub = _publications([r])[0]
            pubs.append(pub)
            encoded.append(encode_message(pub, int(time.time() * 1000)))
    return publish_isolated(settings, broker, pubs, None if broker.middleware else encoded)


def publish_due_backlog(
    settings: Settings, broker: RedisBroker, executor: Executor | None, ahead: Sequence[Prepared] = ()
) -> int:
    """First the jobs read ahead that are due now (``ahead``): their batches of ``scheduler_batch``
    all at once, ``scheduler_publishers`` side by side on ``executor``. Then ``publish_due`` for
    any other due job; when that finds a full batch, ``scheduler_publishers`` threads of ``executor``
    side by side, each going on batch after batch (a transaction each) while it finds full ones, up
    to BACKLOG_BATCHES: when thousands come due at once, the Postgres update of one batch overlaps
    another's and the Redis publish of a third; SKIP LOCKED keeps their rows apart. A pass with
    nothing due (most of them) stays one look at an index. Returns how many were published; a full
    batch's worth tells the caller to come back at once, so the scheduler's other steps still run
    between such passes."""
    size = settings.scheduler_batch
    batches = [ahead[i : i + size] for i in range(0, len(ahead), size)]
    if executor is None or len(batches) < 2:
        early = sum(publish_prepared(settings, broker, b) for b in batches)
    else:
        early = sum(
            f.result() for f in [executor.submit(publish_prepared, settings, broker, b) for b in batches]
        )
    return early + _publish_due_rest(settings, broker, executor)


def _publish_due_rest(settings: Settings, broker: RedisBroker, executor: Executor | None) -> int:
    published = publish_due(settings, broker)
    if executor is None or published < settings.scheduler_batch:
        return published

    def publisher() -> int:
        published = 0
        for _ in range(BACKLOG_BATCHES):
            batch = publish_due(settings, broker)
            published += batch
            if batch < settings.scheduler_batch:
                break
        return published

    threads = [executor.submit(publisher) for _ in range(settings.scheduler_publishers)]
    return published + sum(t.result() for t in threads)


def republish_lost(settings: Settings, broker: RedisBroker) -> int:
    """Re-publish queued jobs whose message is no longer in Redis (publish failed, or Redis lost data).

    A pass costs O(scheduler_batch), whatever the backlog: it reads its candidates without locking
    them, asks Redis where each message is (one script call, see ``locate_messages``), then applies
    the answers in a short transaction to the rows still queued under the message id it looked up.
    No row lock is held across a Redis call, and of several schedulers deciding the same job, one
    re-publishes it: the others find its message id changed.
    """
    stale_before = utcnow() - timedelta(seconds=settings.republish_after_s)
    with transaction(settings) as conn:
        candidates = conn.execute(
            sa.select(*_PUBLISHED)
            .where(jobs.c.status == JobStatus.QUEUED, jobs.c.published_at < stale_before)
            .order_by(jobs.c.published_at)
            .limit(settings.scheduler_batch)
        ).all()
    if not candidates:
        return 0
    pubs = _publications(candidates)
    locations = locate_messages(broker, pubs)
    now = utcnow()
    with transaction(settings) as conn:
        # A message fetched by a consumer that stopped beating will only come back after Dramatiq's
        # heartbeat timeout and a chance maintenance run: treat it as lost.
        holders = {where for where in locations if where not in (WAITING, MISSING)}
        live = live_broker_ids(conn, settings) if holders else set()
        # Message ids are unique to a job and a publication, so a row whose message id is among the
        # candidates' is still the one looked up. Rows another pass or a claim holds are left to it.
        unchanged = set(
            conn.execute(
                sa.select(jobs.c.id)
                .where(
                    any_id([p.job_id for p in pubs]),
                    jobs.c.message_id == sa.any_(sa.literal([p.message_id for p in pubs], ARRAY(sa.Text))),
                    jobs.c.status == JobStatus.QUEUED,
                )
                .order_by(jobs.c.id)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        kept = {
            p.job_id for p, where in zip(pubs, locations, strict=True) if where == WAITING or where in live
        }
        fine = [job_id for job_id in unchanged if job_id in kept]
        lost = [job_id for job_id in unchanged if job_id not in kept]
        if fine:
            # Only waiting behind others (or held by a live worker): mark them checked.
            conn.execute(sa.update(jobs).where(any_id(fine)).values(published_at=now))
        republished: Sequence[sa.Row[Any]] = []
        if lost:
            republished = conn.execute(
                sa.update(jobs)
                .where(any_id(lost))
                .values(
                    message_id=sa.cast(sa.func.gen_random_uuid(), sa.Text),
                    published_at=now,
                    updated_at=now,
                )
                .returning(*_PUBLISHED)
            ).all()
    if republished:
        log.warning("republishing_lost_messages", jobs=len(republished))
    return publish(broker, _publications(republished, redelivered=True))


def seconds_until_due(settings: Settings) -> float | None:
    """How long until the next scheduled job or retry comes due (None when nothing waits). Those of
    a paused queue are not waited for: they would keep the loop awake while publish_due skips them.

    Read as epoch seconds, never as a datetime: a run_at Python cannot hold (year 10000, stored
    before client times were bounded) must not stop the loop that waits for it.
    """
    with transaction(settings) as conn:
        next_due = conn.execute(
            sa.select(sa.func.extract("epoch", sa.func.min(jobs.c.run_at))).where(
                jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)), not_paused(jobs.c.queue)
            )
        ).scalar_one()
    if next_due is None:
        return None
    return max(float(next_due) - utcnow().timestamp(), 0.0)

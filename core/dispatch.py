"""Moving jobs from Postgres onto Redis: due jobs, and queued jobs whose message Redis lost.

Both steps lock the rows they take with FOR UPDATE SKIP LOCKED and record the new message id
before publishing, so several schedulers can run at once without publishing a job twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker

from core.broker import MISSING, WAITING, Publication, locate_messages, publish
from core.db import transaction
from core.isolation import publish_isolated
from core.jobs import JobStatus, utcnow
from core.models import jobs
from core.recovery import live_broker_ids
from core.settings import Settings

log = structlog.get_logger(__name__)

_PUBLISHED = (jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.message_id, jobs.c.request_id)


def _publications(rows: Sequence[Any]) -> list[Publication]:
    return [Publication(r.id, r.type, r.queue, r.message_id, r.request_id) for r in rows]


def publish_due(settings: Settings, broker: RedisBroker) -> int:
    """Publish scheduled jobs and retries whose run_at has come; returns how many."""
    now = utcnow()
    due = (
        sa.select(jobs.c.id)
        .where(jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)), jobs.c.run_at <= now)
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


def republish_lost(settings: Settings, broker: RedisBroker) -> int:
    """Re-publish queued jobs whose message is no longer in Redis (publish failed, or Redis lost data)."""
    stale_before = utcnow() - timedelta(seconds=settings.republish_after_s)
    republished: Sequence[sa.Row[Any]] = []
    with transaction(settings) as conn:
        candidates = conn.execute(
            sa.select(*_PUBLISHED)
            .where(jobs.c.status == JobStatus.QUEUED, jobs.c.published_at < stale_before)
            .order_by(jobs.c.published_at)
            .limit(settings.scheduler_batch)
            .with_for_update(skip_locked=True)
        ).all()
        pubs = _publications(candidates)
        locations = locate_messages(broker, pubs)
        # A message fetched by a consumer that stopped beating will only come back after Dramatiq's
        # heartbeat timeout and a chance maintenance run: treat it as lost.
        live = (
            live_broker_ids(conn, settings) if any(w not in (WAITING, MISSING) for w in locations) else set()
        )
        fine = [
            p.job_id for p, where in zip(pubs, locations, strict=True) if where == WAITING or where in live
        ]
        now = utcnow()
        if fine:
            # Only waiting behind others (or held by a live worker): mark them checked.
            conn.execute(sa.update(jobs).where(jobs.c.id.in_(fine)).values(published_at=now))
        lost = [p.job_id for p in pubs if p.job_id not in set(fine)]
        if lost:
            republished = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(lost))
                .values(
                    message_id=sa.cast(sa.func.gen_random_uuid(), sa.Text),
                    published_at=now,
                    updated_at=now,
                )
                .returning(*_PUBLISHED)
            ).all()
    if republished:
        log.warning("republishing_lost_messages", jobs=len(republished))
    return publish(broker, _publications(republished))


def seconds_until_due(settings: Settings) -> float | None:
    """How long until the next scheduled job or retry comes due (None when nothing waits).

    Read as epoch seconds, never as a datetime: a run_at Python cannot hold (year 10000, stored
    before client times were bounded) must not stop the loop that waits for it.
    """
    with transaction(settings) as conn:
        next_due = conn.execute(
            sa.select(sa.func.extract("epoch", sa.func.min(jobs.c.run_at))).where(
                jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING))
            )
        ).scalar_one()
    if next_due is None:
        return None
    return max(float(next_due) - utcnow().timestamp(), 0.0)

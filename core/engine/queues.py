"""The state of the queues, per job type and queue: what `GET /v1/queues`, the dashboard's overview
and the metrics gauges show.

How many messages wait in each queue comes from Redis (its lanes and Dramatiq's list,
core/engine/lanes.py); everything else from Postgres, which holds every job's state, so the
answer is the same whichever API process gives it. Read inside a snapshot (core.platform.db.snapshot).

A key of one tenant sees that tenant's counts only (``tenant``; None for every tenant's, an admin
key's). Redis's lists are shared by every tenant: their depths (``ready``) are shown to admin keys
only, and are null for a tenant's key. The workers are the farm's, shown to both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.job_types import get_job_type, job_types
from core.engine.jobs import JobStatus, utcnow
from core.engine.lanes import waiting_counts
from core.engine.pauses import QueueState, paused_queues
from core.engine.stats import FAILED_OUTCOMES, attempt_type
from core.errors import UnknownJobType
from core.platform.db import snapshot
from core.platform.settings import Settings
from core.platform.tables import IN_FLIGHT_STATUSES, dead_letter_counts, job_attempts, jobs, workers
from core.platform.tenants import reached

#: The window of the throughput and latency figures (`succeeded_1m`, `latency_p50_ms`, ...).
RECENT = timedelta(minutes=1)
#: Latency percentiles are taken over at most this many of a type's latest successes in the window.
LATENCY_SAMPLE = 500


class QueueRow(msgspec.Struct, kw_only=True):
    """One job type on one queue."""

    type: str
    queue: str
    #: Messages waiting in the queue in Redis; shared by the types of one queue, and by every
    #: tenant. Null if Redis did not answer, and for a key of one tenant.
    ready: int | None = 0
    #: Jobs queued in Postgres: those ready plus those a worker has fetched but not started. Far more
    #: than `ready` for long means messages were lost; the scheduler's sweeper re-publishes them.
    queued: int = 0
    #: Scheduled or retrying jobs already due that no scheduler has published yet.
    delayed: int = 0
    scheduled: int = 0
    running: int = 0
    retrying: int = 0
    dead: int = 0
    #: Seconds since the longest-waiting queued job was published; null when none waits.
    oldest_ready_age_s: float | None = None
    succeeded_1m: int = 0
    #: Attempts that failed in the last minute (to be retried or dead).
    failed_1m: int = 0
    #: Due to done, over the jobs that succeeded in the last minute (the latest 500); null when none did.
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    #: Whether the queue is paused (core/engine/pauses.py): its jobs wait, none starts.
    paused: bool = False


class QueueDepth(msgspec.Struct, kw_only=True):
    name: str
    ready: int | None
    #: Paused: workers start none of its jobs, the scheduler publishes none (core/engine/pauses.py).
    paused: bool = False
    paused_at: datetime | None = None
    #: Who paused it (an API key's name, "cli:<os user>"); null for a key of one tenant.
    paused_by: str | None = None
    reason: str | None = None


class WorkerInfo(msgspec.Struct, kw_only=True):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    started_at: datetime
    last_seen_at: datetime


class Workers(msgspec.Struct, kw_only=True):
    #: Worker processes that beat within JOBYARD_WORKER_DEAD_AFTER.
    alive: int
    items: list[WorkerInfo]


class Overview(msgspec.Struct, kw_only=True):
    at: datetime
    items: list[QueueRow]
    queues: list[QueueDepth]
    workers: Workers
    #: Why the Redis figures are missing, when they are.
    redis_error: str | None = None


@dataclass
class _Rows:
    by_key: dict[tuple[str, str], QueueRow] = field(default_factory=dict)

    def get(self, type_: str, queue: str) -> QueueRow:
        row = self.by_key.get((type_, queue))
        if row is None:
            row = self.by_key[(type_, queue)] = QueueRow(type=type_, queue=queue)
        return row

    def for_type(self, type_: str) -> QueueRow:
        """The row of a type's own queue (attempts do not record the queue; a type has one)."""
        try:
            return self.get(type_, get_job_type(type_).queue_name)
        except UnknownJobType:
            return next((r for (t, _), r in self.by_key.items() if t == type_), None) or self.get(
                type_, type_
            )


def queue_depths(client: redis.Redis, namespace: str, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (fetched ones sit in their consumer's ack set)."""
    return waiting_counts(client, namespace, queues)


def read_overview(settings: Settings, client: redis.Redis, tenant: str | None = None) -> Overview:
    """The overview now, in a snapshot of its own, of ``tenant``'s jobs (None: every tenant's)."""
    with snapshot(settings) as conn:
        return queue_overview(
            conn, client, settings.redis_namespace, utcnow(), settings.worker_dead_after_s, tenant
        )


def queue_overview(
    conn: Connection,
    client: redis.Redis,
    namespace: str,
    now: datetime,
    dead_after_s: float,
    tenant: str | None = None,
) -> Overview:
    """Every registered job type (idle ones too) and any other type with jobs in an open state, with
    their counts, ages and last-minute throughput, of ``tenant``'s jobs (None: every tenant's); and
    the workers alive."""
    rows = _Rows()
    for job_type in job_types().values():
        rows.get(job_type.name, job_type.queue_name)
    _count_open(conn, rows, now, tenant)
    _count_delayed(conn, rows, now, tenant)
    _recent(conn, rows, now, tenant)
    redis_error = None
    queues = {queue for _, queue in rows.by_key}
    depths: dict[str, int | None] = dict.fromkeys(queues)
    if tenant is None:
        try:
            depths.update(queue_depths(client, namespace, queues))
        except (redis.RedisError, OSError) as exc:
            redis_error = f"Redis did not answer: {exc}"
    pauses = paused_queues(conn)
    for row in rows.by_key.values():
        row.ready = depths[row.queue]
        row.paused = row.queue in pauses
    return Overview(
        at=now,
        items=sorted(rows.by_key.values(), key=lambda r: (r.type, r.queue)),
        queues=[_depth(q, depths[q], pauses.get(q), tenant) for q in sorted(queues)],
        workers=alive_workers(conn, now, dead_after_s),
        redis_error=redis_error,
    )


def _depth(queue: str, ready: int | None, pause: QueueState | None, tenant: str | None) -> QueueDepth:
    if pause is None:
        return QueueDepth(name=queue, ready=ready)
    # A key of one tenant sees that the farm paused the queue, and why, not which key did.
    by = pause.paused_by if tenant is None else None
    return QueueDepth(
        name=queue, ready=ready, paused=True, paused_at=pause.paused_at, paused_by=by, reason=pause.reason
    )


def _count_open(conn: Connection, rows: _Rows, now: datetime, tenant: str | None) -> None:
    # Answered from ix_jobs_open alone: the finished jobs and the dead letters are not in it. Dead
    # letters are counted by tenant, type and queue in dead_letter_counts (triggers on jobs,
    # migrations 0012 and 0016).
    dead = (
        sa.select(dead_letter_counts.c.type, dead_letter_counts.c.queue, sa.func.sum(dead_letter_counts.c.n))
        .where(dead_letter_counts.c.n > 0, reached(dead_letter_counts, tenant))
        .group_by(dead_letter_counts.c.type, dead_letter_counts.c.queue)
    )
    for type_, queue, n in conn.execute(dead):
        rows.get(type_, queue).dead = int(n)
    query = (
        sa.select(
            jobs.c.type,
            jobs.c.queue,
            jobs.c.status,
            sa.func.count().label("n"),
            sa.func.min(jobs.c.published_at).label("oldest"),
        )
        .where(jobs.c.status.in_(IN_FLIGHT_STATUSES), reached(jobs, tenant))
        .group_by(jobs.c.type, jobs.c.queue, jobs.c.status)
    )
    for r in conn.execute(query):
        row = rows.get(r.type, r.queue)
        setattr(row, r.status, r.n)
        if r.status == JobStatus.QUEUED and r.oldest is not None:
            row.oldest_ready_age_s = round(max((now - r.oldest).total_seconds(), 0.0), 3)


def _count_delayed(conn: Connection, rows: _Rows, now: datetime, tenant: str | None) -> None:
    query = (
        sa.select(jobs.c.type, jobs.c.queue, sa.func.count().label("n"))
        .where(
            jobs.c.status.in_((JobStatus.SCHEDULED, JobStatus.RETRYING)),
            jobs.c.run_at <= now,
            reached(jobs, tenant),
        )
        .group_by(jobs.c.type, jobs.c.queue)
    )
    for r in conn.execute(query):
        rows.get(r.type, r.queue).delayed = r.n


def _recent(conn: Connection, rows: _Rows, now: datetime, tenant: str | None) -> None:
    succeeded = job_attempts.c.outcome == "succeeded"
    type_ = attempt_type()
    window = job_attempts.c.finished_at >= now - RECENT
    if tenant is not None:
        # Attempts do not record their tenant; their jobs, still in the live table a minute after
        # they finished (core/engine/finished.py moves them later), do.
        window = sa.and_(
            window,
            sa.exists().where(jobs.c.id == job_attempts.c.job_id, jobs.c.tenant == tenant),
        )
    counts = (
        sa.select(
            type_.label("type"),
            sa.func.count().filter(succeeded).label("succeeded"),
            sa.func.count().filter(job_attempts.c.outcome.in_(FAILED_OUTCOMES)).label("failed"),
        )
        .where(window)
        .group_by(type_)
    )
    for r in conn.execute(counts):
        row = rows.for_type(r.type)
        row.succeeded_1m, row.failed_1m = r.succeeded, r.failed
    # Latency needs each job's due time from jobs: one lookup per success, so it is taken over the
    # latest LATENCY_SAMPLE successes of each type, which keeps a busy minute cheap.
    latest = (
        sa.select(
            job_attempts.c.job_id,
            job_attempts.c.finished_at,
            type_.label("type"),
            sa.func.row_number()
            .over(partition_by=type_, order_by=job_attempts.c.finished_at.desc())
            .label("rank"),
        )
        .where(window, succeeded)
        .subquery()
    )
    run_at = sa.select(jobs.c.run_at).where(jobs.c.id == latest.c.job_id).scalar_subquery()
    latency_ms = sa.func.extract("epoch", latest.c.finished_at - run_at) * 1000
    latencies = (
        sa.select(
            latest.c.type,
            sa.func.percentile_cont(0.5).within_group(latency_ms).label("p50"),
            sa.func.percentile_cont(0.95).within_group(latency_ms).label("p95"),
        )
        .where(latest.c.rank <= LATENCY_SAMPLE)
        .group_by(latest.c.type)
    )
    for r in conn.execute(latencies):
        row = rows.for_type(r.type)
        row.latency_p50_ms = round(float(r.p50), 1)
        row.latency_p95_ms = round(float(r.p95), 1)


def alive_workers(conn: Connection, now: datetime, dead_after_s: float) -> Workers:
    query = (
        sa.select(workers)
        .where(workers.c.last_seen_at >= now - timedelta(seconds=dead_after_s))
        .order_by(workers.c.started_at)
    )
    items = [
        WorkerInfo(
            id=r.id,
            hostname=r.hostname,
            pid=r.pid,
            queues=list(r.queues),
            started_at=r.started_at,
            last_seen_at=r.last_seen_at,
        )
        for r in conn.execute(query)
    ]
    return Workers(alive=len(items), items=items)

"""The worker processes as ops see them (`GET /v1/workers`, the dashboard's workers page), and quieting
one (`POST /v1/workers/{id}/quiet`).

Each worker process registers itself in ``workers`` and beats there (core/engine/recovery.py); the
jobs it runs are the running jobs whose ``worker_id`` is its id (index ``ix_jobs_running_worker``).
Workers are the farm's, shared by every tenant: a key of one tenant sees every worker alive (as
`GET /v1/queues` shows them), but only its own tenant's jobs among those they run.

Quiet, as in Sidekiq: the worker finishes the jobs it holds and takes nothing new. Asking writes
``quiet_requested_at`` (with an audit entry); the worker's heartbeat reads it back in the statement
that records the beat, stops its consumers fetching, gives the messages it fetched but did not
start back to Redis, and writes ``quiet_at`` (workers/quiet.py). It keeps beating, so its running
jobs are not taken for lost. A quiet worker may then be stopped without a job handed back: wait
until its ``jobs`` list is empty. Quiet lasts until the process stops; a new process starts awake.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.jobs import JobStatus
from core.errors import NotFound
from core.platform.tables import jobs, workers
from core.platform.tenants import reached

#: What a worker is doing: taking jobs, asked to be quiet (not yet seen by it), or quiet.
WorkerState = Literal["running", "quieting", "quiet"]
#: Running jobs listed per worker at most (a batch handler's run holds many jobs at once).
JOBS_SHOWN = 100


class RunningJob(msgspec.Struct, kw_only=True):
    id: str
    type: str
    queue: str
    tenant: str
    attempt: int
    started_at: datetime | None
    #: Seconds since this attempt started.
    running_s: float | None


class WorkerView(msgspec.Struct, kw_only=True):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    #: Jobs it runs at once; null for a worker of an older release.
    threads: int | None
    started_at: datetime
    #: Seconds since it started.
    age_s: float
    last_seen_at: datetime
    state: WorkerState
    quiet_requested_at: datetime | None
    quiet_at: datetime | None
    #: The running jobs it holds that the caller may see (a tenant's key: its tenant's only).
    jobs: list[RunningJob]


class WorkerList(msgspec.Struct, kw_only=True):
    at: datetime
    #: Worker processes that beat within JOBYARD_WORKER_DEAD_AFTER.
    alive: int
    items: list[WorkerView]


def _state(row: sa.Row[tuple[object, ...]]) -> WorkerState:
    if row.quiet_at is not None:
        return "quiet"
    return "quieting" if row.quiet_requested_at is not None else "running"


def _alive(now: datetime, dead_after_s: float) -> sa.ColumnElement[bool]:
    return workers.c.last_seen_at >= now - timedelta(seconds=dead_after_s)


def identity(row: sa.Row[Any]) -> dict[str, Any]:
    """What every view of a worker shows of its row: who it is, what it consumes, since and until when."""
    return {
        "id": row.id,
        "hostname": row.hostname,
        "pid": row.pid,
        "queues": list(row.queues),
        "started_at": row.started_at,
        "last_seen_at": row.last_seen_at,
    }


def alive_rows(conn: Connection, now: datetime, dead_after_s: float) -> Sequence[sa.Row[Any]]:
    """The rows of the workers that beat within ``dead_after_s`` of ``now``, oldest first."""
    query = sa.select(workers).where(_alive(now, dead_after_s)).order_by(workers.c.started_at, workers.c.id)
    return conn.execute(query).all()


def list_workers(
    conn: Connection, now: datetime, dead_after_s: float, tenant: str | None = None
) -> WorkerList:
    """The workers alive, oldest first, each with the running jobs of ``tenant`` (None: every
    tenant's) it holds."""
    rows = alive_rows(conn, now, dead_after_s)
    held = _running_jobs(conn, [r.id for r in rows], now, tenant)
    items = [
        WorkerView(
            **identity(r),
            threads=r.threads,
            age_s=round(max((now - r.started_at).total_seconds(), 0.0), 3),
            state=_state(r),
            quiet_requested_at=r.quiet_requested_at,
            quiet_at=r.quiet_at,
            jobs=held.get(r.id, []),
        )
        for r in rows
    ]
    return WorkerList(at=now, alive=len(items), items=items)


def _running_jobs(
    conn: Connection, worker_ids: list[str], now: datetime, tenant: str | None
) -> dict[str, list[RunningJob]]:
    if not worker_ids:
        return {}
    ranked = (
        sa.select(
            jobs.c.id,
            jobs.c.type,
            jobs.c.queue,
            jobs.c.tenant,
            jobs.c.attempts,
            jobs.c.started_at,
            jobs.c.worker_id,
            sa.func.row_number()
            .over(partition_by=jobs.c.worker_id, order_by=(jobs.c.started_at, jobs.c.id))
            .label("rank"),
        )
        .where(
            jobs.c.status == JobStatus.RUNNING,
            jobs.c.worker_id.in_(worker_ids),
            reached(jobs, tenant),
        )
        .subquery()
    )
    out: dict[str, list[RunningJob]] = defaultdict(list)
    for r in conn.execute(sa.select(ranked).where(ranked.c.rank <= JOBS_SHOWN).order_by(ranked.c.rank)):
        running = None if r.started_at is None else round(max((now - r.started_at).total_seconds(), 0.0), 3)
        out[r.worker_id].append(
            RunningJob(
                id=str(r.id),
                type=r.type,
                queue=r.queue,
                tenant=r.tenant,
                attempt=r.attempts,
                started_at=r.started_at,
                running_s=running,
            )
        )
    return out


class QuietOutcome(msgspec.Struct, kw_only=True):
    worker: WorkerView
    #: The audit entry of this request; null when the worker was already asked (nothing changed).
    audit_id: str | None


def request_quiet(
    conn: Connection, worker_id: str, now: datetime, dead_after_s: float, *, actor: str, reason: str
) -> QuietOutcome:
    """Ask a live worker to go quiet (idempotent: asking again changes nothing and writes no entry).
    NotFound for an id that is no live worker's."""
    asked = conn.execute(
        sa.update(workers)
        .where(workers.c.id == worker_id, _alive(now, dead_after_s), workers.c.quiet_requested_at.is_(None))
        .values(quiet_requested_at=now)
        .returning(workers.c.id)
    ).first()
    audit_id = None
    if asked is not None:
        audit_id = audit.record(
            conn,
            actor=actor,
            action="worker_quiet",
            selection={"worker": worker_id},
            reason=reason,
            counts={"workers": 1},
        )
    found = [w for w in list_workers(conn, now, dead_after_s).items if w.id == worker_id]
    if not found:
        raise NotFound(f"no live worker {worker_id[:200]!r}", code="worker_not_found")
    return QuietOutcome(worker=found[0], audit_id=None if audit_id is None else str(audit_id))

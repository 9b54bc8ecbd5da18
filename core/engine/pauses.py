"""Pausing a queue: it still accepts jobs, but no worker starts them and no scheduler publishes its
due ones, until it is resumed. Nothing is lost, reordered or run twice by a pause.

Postgres is the truth (``queue_pauses``, a row per paused queue). The workers never ask it: they read
a mirror in Redis, the set ``<namespace>:paused-queues``, which

- the fetch script checks on every fetch (core/engine/lua/fetch.lua): a consumer takes nothing from
  a paused queue, whose messages stay in their lanes, in order;
- each worker process reads at most once a second (``PausedQueues``) before it starts a message it
  had fetched already: such a message is handed back to the front of its queue instead of running
  (workers/middleware.py, core/engine/consumer.py), neither acknowledged nor counted as a failure.

A pause or resume writes the mirror right after its commit; the scheduler rewrites it whole from
Postgres every ``SYNC_EVERY_S`` (``sync_pauses``), so a Redis that lost its data (or a write that
failed) is paused again within a second. The scheduler reads the table itself: it publishes no due
job (scheduled, retrying) of a paused queue, and publishes them once the queue is resumed.

Jobs running when the queue is paused finish normally. A resume pushes wake tokens, so idle
consumers fetch at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import Any, cast

import msgspec
import redis
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.consumer import WAKE_TOKENS, wake_key
from core.engine.job_types import job_types
from core.engine.jobs import JobStatus, utcnow
from core.errors import QueueNotFound
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs, queue_pauses

log = structlog.get_logger(__name__)

#: How often the scheduler rewrites the Redis mirror from Postgres.
SYNC_EVERY_S = 1.0
#: How long a worker process trusts what it last read of the mirror.
WORKER_READ_EVERY_S = 1.0
#: The audit log's names of the two actions.
PAUSE, RESUME = "pause_queue", "resume_queue"
#: The queue's jobs a pause or resume answer counts (from the index of open jobs).
_COUNTED = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.RUNNING)


def paused_key(namespace: str) -> str:
    """The Redis set of paused queues (lua/fetch.lua names it too)."""
    return f"{namespace}:paused-queues"


class QueueState(msgspec.Struct, kw_only=True):
    queue: str
    paused: bool
    paused_at: datetime | None = None
    #: The API key's name, or "cli:<os user>".
    paused_by: str | None = None
    reason: str | None = None


class QueueChange(QueueState, kw_only=True):
    """A pause or resume: the queue's state after it, and what it found."""

    #: Whether this request changed the state (False: it already was so, or a dry run).
    changed: bool
    dry_run: bool = False
    #: The audit entry of the change; null when nothing changed.
    audit_id: uuid.UUID | None = None
    #: The queue's jobs, every tenant's, when the request was answered.
    queued: int = 0
    running: int = 0
    scheduled: int = 0
    retrying: int = 0


def known_queue(queue: str) -> str:
    """``queue`` if a registered job type uses it; QueueNotFound (404) otherwise."""
    if queue not in {t.queue_name for t in job_types().values()}:
        shown = queue if len(queue) <= 100 else queue[:100] + "…"
        raise QueueNotFound(f"no job type uses the queue {shown!r}")
    return queue


def paused_queues(conn: Connection) -> dict[str, QueueState]:
    """Every paused queue's state."""
    return {
        r.queue: QueueState(
            queue=r.queue, paused=True, paused_at=r.paused_at, paused_by=r.paused_by, reason=r.reason
        )
        for r in conn.execute(sa.select(queue_pauses))
    }


def not_paused(queue: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """A WHERE clause: the job's queue is not paused (the scheduler's due jobs)."""
    return queue.not_in(sa.select(queue_pauses.c.queue))


def _state(conn: Connection, queue: str) -> QueueState:
    return paused_queues(conn).get(queue) or QueueState(queue=queue, paused=False)


def _counts(conn: Connection, queue: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(jobs.c.status, sa.func.count())
        .where(jobs.c.queue == queue, jobs.c.status.in_(_COUNTED))
        .group_by(jobs.c.status)
    ).all()
    found = {str(status): int(n) for status, n in rows}
    return {str(s): found.get(str(s), 0) for s in _COUNTED}


def _answer(state: QueueState, counts: dict[str, int], **more: object) -> QueueChange:
    return QueueChange(**msgspec.structs.asdict(state), **counts, **more)  # type: ignore[arg-type]


def pause(
    settings: Settings, client: redis.Redis, queue: str, *, actor: str, reason: str, dry_run: bool = False
) -> QueueChange:
    """Pause ``queue`` for the whole farm. Pausing a paused queue changes nothing (no audit entry)."""
    return _change(settings, client, queue, PAUSE, actor, reason, dry_run)


def resume(
    settings: Settings,
    client: redis.Redis,
    queue: str,
    *,
    actor: str,
    reason: str = "",
    dry_run: bool = False,
) -> QueueChange:
    """Resume ``queue``: its waiting jobs start, its due jobs are published at the scheduler's next
    pass. Resuming a queue that is not paused changes nothing (no audit entry)."""
    return _change(settings, client, queue, RESUME, actor, reason, dry_run)


def _change(
    settings: Settings, client: redis.Redis, queue: str, action: str, actor: str, reason: str, dry_run: bool
) -> QueueChange:
    known_queue(queue)
    with transaction(settings) as conn:
        counts = _counts(conn, queue)
        if dry_run:
            return _answer(_state(conn, queue), counts, changed=False, dry_run=True)
        changed = _write(conn, action, queue, actor, reason)
        audit_id = _record(conn, action, queue, actor, reason, counts) if changed else None
        state = _state(conn, queue)
    _mirror(client, settings.redis_namespace, queue, paused=action == PAUSE)
    if changed:
        log.info(action, queue=queue, actor=actor, reason=reason)
    return _answer(state, counts, changed=changed, audit_id=audit_id)


def _write(conn: Connection, action: str, queue: str, actor: str, reason: str) -> bool:
    """The row of the pause, inserted or deleted; whether that changed anything."""
    if action == PAUSE:
        statement: Any = (
            pg_insert(queue_pauses)
            .values(queue=queue, paused_at=utcnow(), paused_by=actor, reason=reason)
            .on_conflict_do_nothing()
        )
    else:
        statement = sa.delete(queue_pauses).where(queue_pauses.c.queue == queue)
    return conn.execute(statement.returning(queue_pauses.c.queue)).first() is not None


def _record(
    conn: Connection, action: str, queue: str, actor: str, reason: str, counts: dict[str, int]
) -> uuid.UUID:
    # A farm-wide action (tenant null), shown with the dead letters' actions; "matched" is what the
    # pause holds: the queue's jobs waiting for a worker or for their time.
    waiting = counts["queued"] + counts["scheduled"] + counts["retrying"]
    return audit.record(
        conn,
        actor=actor,
        action=action,
        selection={"filter": {"queue": queue}},
        reason=reason,
        counts={"matched": waiting, **counts},
    )


def _mirror(client: redis.Redis, namespace: str, queue: str, *, paused: bool) -> None:
    """The change into the Redis mirror, after the commit. A failure is only logged: the scheduler
    rewrites the mirror from Postgres within ``SYNC_EVERY_S``."""
    try:
        if paused:
            client.sadd(paused_key(namespace), queue)
            return
        pipe = client.pipeline(transaction=False)
        pipe.srem(paused_key(namespace), queue)
        # Idle consumers block on the wake list: they fetch at once instead of at their next poll.
        wake = wake_key(namespace, queue)
        pipe.rpush(wake, *(b"1" for _ in range(WAKE_TOKENS)))
        pipe.ltrim(wake, -WAKE_TOKENS, -1)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("queue_pause_mirror_failed", queue=queue, paused=paused, error=str(exc))


def sync_pauses(settings: Settings, client: redis.Redis) -> int:
    """Rewrite the Redis mirror whole from Postgres: a scheduler step, which publishes nothing (0)."""
    with transaction(settings) as conn:
        queues = list(conn.execute(sa.select(queue_pauses.c.queue)).scalars())
    key = paused_key(settings.redis_namespace)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if queues:
        pipe.sadd(key, *queues)
    pipe.execute()
    return 0


class PausedQueues:
    """The paused queues as a worker process sees them: the Redis mirror, read at most every
    ``every_s`` (one SMEMBERS a second per process, not a query per job). If Redis does not answer,
    the last answer stands.

    A queue the last read found paused is asked about again at once (one SISMEMBER): right after a
    resume the fetch already hands out its messages, and a stale "paused" would give each one back,
    to be fetched again, until the next read.
    """

    def __init__(self, client: redis.Redis, namespace: str, every_s: float = WORKER_READ_EVERY_S) -> None:
        self.client = client
        self.key = paused_key(namespace)
        self.every_s = every_s
        self._queues: frozenset[str] = frozenset()
        self._next_read = 0.0
        self._lock = threading.Lock()

    def __contains__(self, queue: object) -> bool:
        now = time.monotonic()
        if now >= self._next_read:
            with self._lock:
                if now >= self._next_read:
                    self._read()
                    self._next_read = now + self.every_s
        if queue not in self._queues:
            return False
        try:
            return bool(self.client.sismember(self.key, str(queue)))
        except (redis.RedisError, OSError):
            return True

    def _read(self) -> None:
        try:
            members = cast(set[bytes], self.client.smembers(self.key))
        except (redis.RedisError, OSError) as exc:
            log.warning("paused_queues_unread", error=str(exc))
            return
        self._queues = frozenset(m.decode() for m in members)

"""One bad item fails alone: the scheduler's loops (publishing, firing schedules, recovery) run each
item in a savepoint, and an item that raises is failed with a code (a dead-lettered job, a disabled
schedule) while the loop goes on.

Errors of the farm itself (Postgres or Redis unreachable, a statement timeout, a table missing) are
not an item's fault: they propagate, the whole pass rolls back, and the scheduler backs off and tries
again. Anything else an item raises (its data refused by Postgres, a payload that does not validate,
a rule with no next slot, a bug that only its data reaches) fails that item.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import redis
import sqlalchemy as sa
import sqlalchemy.exc
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Connection

from core.engine.broker import Publication, publish
from core.engine.jobs import JobStatus, utcnow
from core.errors import JobFailure
from core.platform.crypto import mask_phones_in
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Failures of the services, not of an item: retried by the whole pass after a backoff.
TRANSIENT: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pool connection free
    psycopg.OperationalError,
    redis.RedisError,
    ConnectionError,
    TimeoutError,
)


#: Failures of the farm's own schema or code as Postgres sees it (a missing table or column, a denied
#: permission, an internal error): every item would fail alike, so none is blamed; the pass is retried.
SYSTEMIC: tuple[type[BaseException], ...] = (
    *TRANSIENT,
    sqlalchemy.exc.ProgrammingError,
    sqlalchemy.exc.InternalError,
    sqlalchemy.exc.NotSupportedError,
    psycopg.ProgrammingError,
    psycopg.InternalError,
    psycopg.NotSupportedError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def is_items_fault(exc: BaseException) -> bool:
    """Whether ``exc`` can be pinned on the item being processed (its data), not on the farm."""
    return not isinstance(exc, SYSTEMIC)


def describe(exc: BaseException) -> str:
    """A failure as stored on the item and shown to clients: one line, phone numbers masked."""
    text = exc.message if isinstance(exc, JobFailure) else f"{type(exc).__name__}: {exc}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return mask_phones_in(first[:500])


def isolated(
    conn: Connection,
    work: Callable[[], T],
    fail: Callable[[Exception], None],
    event: str,
    **fields: Any,
) -> T | None:
    """``work()`` in a savepoint. If it raises (and not for a transient reason), roll it back, log,
    and run ``fail(exc)`` in a savepoint of its own to mark the item; returns None then."""
    try:
        with conn.begin_nested():
            return work()
    except Exception as exc:
        if not is_items_fault(exc):
            raise
        if isinstance(exc, JobFailure):  # an expected item failure: its code says it all
            log.warning(event, code=exc.code, error=describe(exc), **fields)
        else:
            log.exception(event, error=describe(exc), **fields)
        failure = exc
    try:
        with conn.begin_nested():
            fail(failure)
    except Exception as exc:
        if not is_items_fault(exc):
            raise
        # Not even marking it worked: it stays as it is, and the next pass tries again.
        log.exception(f"{event}_unmarked", error=describe(exc), **fields)
    return None


def dead_letter(conn: Connection, job_id: uuid.UUID, code: str, message: str, *, only_if: Any = None) -> bool:
    """Send one job to the dead letters with ``code``; False when it is no longer in a state to."""
    now = utcnow()
    error = {"code": code, "message": message, "retryable": False}
    condition = jobs.c.id == job_id if only_if is None else sa.and_(jobs.c.id == job_id, only_if)
    result = conn.execute(
        sa.update(jobs)
        .where(condition)
        .values(
            status=JobStatus.DEAD,
            error=error,
            finished_at=now,
            updated_at=now,
            message_id=None,
            worker_id=None,
            deadline_at=None,
        )
    )
    return bool(result.rowcount)


def publish_isolated(
    settings: Settings,
    broker: RedisBroker,
    pubs: Sequence[Publication],
    encoded: Sequence[bytes] | None = None,
) -> int:
    """Publish committed jobs together (``encoded``: their messages encoded beforehand, see
    ``publish``); if that fails for a reason of its own, one by one, and a job whose message cannot be
    published goes to the dead letters (``unpublishable``) instead of being retried by every sweep."""
    try:
        return publish(broker, pubs, encoded)
    except Exception as exc:
        if not is_items_fault(exc):
            raise  # committed: the sweeper publishes them once Redis answers
        log.exception("publish_failed", jobs=len(pubs), error=describe(exc))
    published = 0
    for pub in pubs:
        try:
            published += publish(broker, [pub])
        except Exception as exc:
            if not is_items_fault(exc):
                raise
            with transaction(settings) as conn:
                dead_letter(
                    conn,
                    pub.job_id,
                    "unpublishable",
                    f"its message could not be published: {describe(exc)}",
                    only_if=sa.and_(jobs.c.status == JobStatus.QUEUED, jobs.c.message_id == pub.message_id),
                )
            log.error("job_unpublishable", job_id=str(pub.job_id), error=describe(exc))
    return published

"""The job states, and enqueue: commit the row, then publish. Job types are in core/engine/job_types.py."""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis
import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Connection, Row

from core.engine.broker import Publication, publish
from core.engine.job_types import get_job_type, same_payload, shown_payload
from core.engine.lanes import DEFAULT_PRIORITY
from core.errors import IdempotencyConflict
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings, get_settings
from core.platform.tables import job_history, jobs
from core.platform.tenants import DEFAULT_TENANT
from core.platform.tracing import current_traceparent

log = structlog.get_logger(__name__)


class JobStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting in Postgres for run_at
    QUEUED = "queued"  # published to Redis, waiting for a worker
    RUNNING = "running"  # claimed by a worker
    RETRYING = "retrying"  # failed, waiting in Postgres for its next attempt
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # in the dead letters
    CANCELLED = "cancelled"


#: A worker may start a job only from these states; anything else means another copy already did.
CLAIMABLE = (JobStatus.QUEUED, JobStatus.RETRYING)
#: A job can be cancelled until a worker claims it.
CANCELLABLE = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING)
FINAL = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)


# -- enqueue -----------------------------------------------------------------------------------


class NewJob(msgspec.Struct, kw_only=True):
    """A validated request to run a job (see ``validate_payload``)."""

    type: str
    payload: dict[str, Any]
    idempotency_key: str | None = None
    business_key: str | None = None
    run_at: datetime | None = None
    max_retries: int | None = None
    request_id: str | None = None
    #: Whose job it is: the tenant of the key that asked (core/platform/tenants.py).
    tenant: str = DEFAULT_TENANT
    #: The API key that asked for it; None for the farm's own jobs (schedules, the CLI).
    created_by: uuid.UUID | None = None
    #: 0-9, 9 the most urgent: orders the tenant's jobs within its share (core/engine/lanes.py).
    priority: int = DEFAULT_PRIORITY
    #: The trace of whoever asked (core/platform/tracing.py), for its message; None with tracing off.
    traceparent: str | None = msgspec.field(default_factory=current_traceparent)


class Progress(msgspec.Struct, kw_only=True):
    """What a running job's handler last reported (``ctx.progress``)."""

    #: 0 to 1.
    fraction: float
    message: str | None
    updated_at: datetime

    @classmethod
    def of(cls, m: Any) -> Progress | None:
        """From a row's mapping (``jobs`` or ``job_history``); None when none was reported."""
        at = m.get("progress_at")
        if at is None:
            return None
        return cls(fraction=m["progress_fraction"], message=m["progress_message"], updated_at=at)


class Job(msgspec.Struct, kw_only=True):
    """A job as the API shows it."""

    id: uuid.UUID
    type: str
    queue: str
    status: str
    payload: dict[str, Any]
    business_key: str | None
    idempotency_key: str | None
    attempts: int
    max_retries: int
    result: Any
    error: dict[str, Any] | None
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request_id: str | None
    tenant: str = DEFAULT_TENANT
    #: The API keys that created and cancelled it (null: the farm itself, or the command line).
    created_by: uuid.UUID | None = None
    cancelled_by: uuid.UUID | None = None
    #: The API key that last redrove it from the dead letters.
    redriven_by: uuid.UUID | None = None
    #: 0-9, 9 the most urgent: which of its tenant's jobs a worker takes first.
    priority: int = DEFAULT_PRIORITY
    #: When a cancel was asked while the job ran (it ends cancelled unless it finishes first).
    cancel_requested_at: datetime | None = None
    #: What its handler last reported (``ctx.progress``); null when it never did.
    progress: Progress | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Job:
        m = row._mapping
        error = m["error"]
        if error is not None:
            # The traceback stays in the attempt history; the job shows what a caller can act on.
            error = {k: v for k, v in error.items() if k != "traceback"}
        return cls(
            id=m["id"],
            type=m["type"],
            queue=m["queue"],
            status=m["status"],
            payload=shown_payload(m["type"], m["payload"]),
            business_key=m["business_key"],
            idempotency_key=m["idempotency_key"],
            attempts=m["attempts"],
            max_retries=m["max_retries"],
            result=m["result"],
            error=error,
            created_at=m["created_at"],
            run_at=m["run_at"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
            request_id=m["request_id"],
            tenant=m["tenant"],
            created_by=m["created_by"],
            cancelled_by=m["cancelled_by"],
            redriven_by=m["redriven_by"],
            priority=m["priority"],
            cancel_requested_at=m.get("cancel_requested_at"),
            progress=Progress.of(m),
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: Job
    created: bool
    #: The Redis id committed on a new job that is due now; None when nothing is to be published.
    message_id: str | None = None
    #: The trace its message continues (NewJob.traceparent).
    traceparent: str | None = None


def utcnow() -> datetime:
    """The time as Jobyard sees it: the wall clock plus JOBYARD_CLOCK_OFFSET_S (zero outside drills).

    Every due-time decision goes through here, so moving the offset moves the whole farm's clock.
    """
    offset = get_settings().clock_offset_s
    now = datetime.now(UTC)
    return now + timedelta(seconds=offset) if offset else now


def enqueue(
    new_jobs: Sequence[NewJob], broker: RedisBroker, settings: Settings | None = None
) -> list[Enqueued]:
    """Commit the jobs (all or none), then publish the ones due now.

    A job is accepted once its row is committed. If publishing fails after that, the sweeper
    publishes it later; the caller still gets its job back.
    """
    settings = settings or get_settings()
    # Without idempotency keys the insert is a single statement, atomic on its own: no separate
    # COMMIT round trip. A repeated key needs a read after the insert, in the same transaction.
    keyed = any(nj.idempotency_key for nj in new_jobs)
    with transaction(settings) if keyed else autocommit(settings) as conn:
        results = insert_jobs(conn, new_jobs)
    to_publish = [publication(e) for e in results if e.message_id is not None]
    publish_after_commit(broker, to_publish)
    return results


#: The new rows travel as one JSON array, expanded by Postgres: one statement of fixed shape for any
#: number of jobs, no per-value parameter conversion in Python (a VALUES list of 1,000 jobs has
#: 14,000 parameters, and SQLAlchemy compiles it anew for each batch size).
_NEW_ROW_COLUMNS = {
    "id": "uuid",
    "type": "text",
    "queue": "text",
    "status": "text",
    "payload": "jsonb",
    "idempotency_key": "text",
    "business_key": "text",
    "run_at": "timestamptz",
    "max_retries": "int",
    "request_id": "text",
    "message_id": "text",
    "published_at": "timestamptz",
    "tenant": "text",
    "created_by": "uuid",
    "priority": "smallint",
}


def _insert_many_sql(rows: str, now: str) -> str:
    """The insert of new rows, with the driver's spelling of its two parameters."""
    return (
        f"INSERT INTO jobs ({', '.join(_NEW_ROW_COLUMNS)}, created_at, updated_at) "
        f"SELECT {', '.join(_NEW_ROW_COLUMNS)}, {now}, {now} "
        f"FROM jsonb_to_recordset(CAST({rows} AS jsonb)) AS j("
        + ", ".join(f"{name} {kind}" for name, kind in _NEW_ROW_COLUMNS.items())
        + ") ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id::text"
    )


_INSERT_MANY = sa.text(_insert_many_sql(":rows", ":now"))
#: The same for psycopg used directly (the API's event-loop path, core/engine/fastenqueue.py).
INSERT_MANY_PSYCOPG = _insert_many_sql("%(rows)s", "%(now)s")


class NewRow(msgspec.Struct):
    """A job row as inserted, before Postgres has it."""

    id: uuid.UUID
    type: str
    queue: str
    status: str
    payload: dict[str, Any]
    idempotency_key: str | None
    business_key: str | None
    run_at: datetime
    max_retries: int
    request_id: str | None
    message_id: str | None
    published_at: datetime | None
    tenant: str
    created_by: uuid.UUID | None
    priority: int


_encode_rows = msgspec.json.Encoder().encode


def insert_jobs(conn: Connection, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Insert the jobs in one statement; a repeated idempotency key returns the first job instead."""
    if not new_jobs:
        return []
    now = utcnow()
    rows, texts = new_rows(new_jobs, now)
    # Ids compared as text: hashing uuid.UUID objects is slow Python.
    inserted = set(conn.execute(_INSERT_MANY, {"rows": encode_rows(rows), "now": now}).scalars())
    created = [text in inserted for text in texts]
    # An idempotency key is unique within its tenant: every lookup is by (tenant, key).
    repeated = [(r.tenant, r.idempotency_key) for r, new in zip(rows, created, strict=True) if not new]
    existing = _by_key(conn, jobs, repeated)
    fresh = [
        (r.tenant, r.idempotency_key)
        for r, new in zip(rows, created, strict=True)
        if new and r.idempotency_key
    ]
    if fresh:
        # The unique index covers jobs only: a key whose job has moved to the history is found
        # there. Read after the insert, in a statement of its own: had the job been moving at
        # that moment, the insert waited for the move to commit, and this read sees it.
        moved = _by_key(conn, job_history, fresh)
        if moved:
            taken = [r.id for r in rows if (r.tenant, r.idempotency_key) in moved and str(r.id) in inserted]
            conn.execute(sa.delete(jobs).where(jobs.c.id.in_(taken)))
            existing.update(moved)
            created = [
                new and (r.tenant, r.idempotency_key) not in moved
                for r, new in zip(rows, created, strict=True)
            ]
    results = []
    for index, (r, new) in enumerate(zip(rows, created, strict=True)):
        if new:
            results.append(Enqueued(new_job(r, now), True, r.message_id, new_jobs[index].traceparent))
            continue
        assert r.idempotency_key is not None  # only a repeated key makes the insert skip a row
        first = existing[(r.tenant, r.idempotency_key)]
        # Sealing is randomised (a fresh nonce each time): sealed fields are compared in clear.
        if first.type != r.type or not same_payload(get_job_type(r.type), first.payload, r.payload):
            raise IdempotencyConflict(index, r.idempotency_key, first.id)
        results.append(Enqueued(Job.from_row(first), created=False))
    return results


def _by_key(
    conn: Connection, table: sa.Table, keys: Sequence[tuple[str, str | None]]
) -> dict[tuple[str, str | None], Row[Any]]:
    """The rows of ``table`` holding these (tenant, idempotency key) pairs."""
    if not keys:
        return {}
    pairs = sa.tuple_(table.c.tenant, table.c.idempotency_key).in_(keys)
    return {(row.tenant, row.idempotency_key): row for row in conn.execute(sa.select(table).where(pairs))}


def new_rows(new_jobs: Sequence[NewJob], now: datetime) -> tuple[list[NewRow], list[str]]:
    """The rows to insert for ``new_jobs``, and their ids as text."""
    rows: list[NewRow] = []
    texts: list[str] = []
    for job_id, nj in zip(time_ordered_ids(len(new_jobs), now), new_jobs, strict=True):
        text = str(job_id)
        texts.append(text)
        job_type = get_job_type(nj.type)
        run_at = nj.run_at or now
        due = run_at <= now
        rows.append(
            NewRow(
                id=job_id,
                type=nj.type,
                queue=job_type.queue_name,
                status=JobStatus.QUEUED if due else JobStatus.SCHEDULED,
                payload=job_type.seal(nj.payload),
                idempotency_key=nj.idempotency_key,
                business_key=nj.business_key,
                run_at=run_at,
                max_retries=job_type.max_retries if nj.max_retries is None else nj.max_retries,
                request_id=nj.request_id,
                # A first publication's Redis id is the job's own id (unique, and free to make);
                # a re-publication gets a fresh one.
                message_id=text if due else None,
                published_at=now if due else None,
                tenant=nj.tenant,
                created_by=nj.created_by,
                priority=nj.priority,
            )
        )
    return rows, texts


def encode_rows(rows: list[NewRow]) -> str:
    return _encode_rows(rows).decode()


def time_ordered_ids(n: int, at: datetime) -> list[uuid.UUID]:
    """``n`` time-ordered UUIDs (version 7, RFC 9562): ``at`` in Unix milliseconds in the first 48
    bits, then the version, 12 random bits, the variant and 62 random bits, all the random bits from
    one read of the OS's random source.

    Why time-ordered: a job's id leads the primary keys of jobs, job_attempts and job_history. With
    random ids every new job lands on a random page of those indexes, so the pages enqueue, claim
    and finish touch grow with everything the tables hold (months of dead letters and their
    attempts), and past the database's buffer cache each one costs a read and an eviction. Ids that
    grow with time put every new job on the indexes' newest pages, the same few however long the
    history is. The id tells when the job was created, to the millisecond, as ``created_at`` does.
    """
    # The milliseconds, version 7 and the variant's bits 10, laid over 80 random bits (12 + 62 used).
    fixed = (int(at.timestamp() * 1000) << 80) | (7 << 76) | (2 << 62)
    raw = os.urandom(10 * n)
    ids = []
    for i in range(n):
        r = int.from_bytes(raw[10 * i : 10 * i + 10], "big")
        ids.append(uuid.UUID(int=fixed | ((r >> 68) << 64) | (r & _RAND_B)))
    return ids


_RAND_B = (1 << 62) - 1


def new_job(r: NewRow, now: datetime) -> Job:
    """The job as the row just inserted holds it, without reading it back."""
    return Job(
        id=r.id,
        type=r.type,
        queue=r.queue,
        status=r.status,
        payload=shown_payload(r.type, r.payload),
        business_key=r.business_key,
        idempotency_key=r.idempotency_key,
        attempts=0,
        max_retries=r.max_retries,
        result=None,
        error=None,
        created_at=now,
        run_at=r.run_at,
        started_at=None,
        finished_at=None,
        request_id=r.request_id,
        tenant=r.tenant,
        created_by=r.created_by,
        priority=r.priority,
    )


def publication(e: Enqueued) -> Publication:
    """The message of a new job that is due now (``e.message_id`` is set)."""
    assert e.message_id is not None
    j = e.job
    return Publication(j.id, j.type, j.queue, e.message_id, j.request_id, j.tenant, j.priority, e.traceparent)


def publish_after_commit(broker: RedisBroker, pubs: list[Publication]) -> None:
    """Publish committed jobs' messages; a failure is logged and left to the sweeper."""
    if not pubs:
        return
    try:
        publish(broker, pubs)
    except (redis.RedisError, OSError) as exc:
        # The rows are committed: the sweeper will find the missing messages and publish them.
        log.warning("publish_failed_will_sweep", jobs=len(pubs), error=str(exc))

"""Job types, their payload schemas, the job states, and enqueue: commit the row, then publish."""

from __future__ import annotations

import enum
import importlib
import os
import threading
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

from core.broker import Publication, publish
from core.crypto import data_cipher, is_sealed, masked
from core.db import autocommit, transaction
from core.models import jobs
from core.settings import Settings, get_settings

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


# -- job types ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobType:
    """What the farm knows about one kind of job; each type is one Dramatiq actor on its own queue."""

    name: str
    payload: type[msgspec.Struct]
    queue: str = ""
    #: Retries after the first attempt. Dramatiq's default (20, backing off up to 7 days) is far too many.
    max_retries: int = 3
    min_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    #: Longest run of one attempt; Dramatiq's TimeLimit interrupts Python code at this point, and the
    #: scheduler recovers runs stuck in C code or blocking calls a grace period later.
    timeout_s: float = 300.0
    #: Rate-limited attempts do not spend the retry budget, but they are bounded so a job cannot
    #: wait forever: past this many it goes to the dead letters.
    max_rate_limit_waits: int = 20
    description: str = ""
    #: Largest payload (as JSON) a job of this type may carry; a queue is not a blob store.
    max_payload_bytes: int = 64 * 1024
    #: Top-level payload fields holding personal data (phone numbers): sealed before the payload is
    #: stored, opened for the handler, masked wherever the payload is shown.
    sealed_fields: tuple[str, ...] = ()

    @property
    def queue_name(self) -> str:
        return self.queue or self.name

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload as stored in Postgres: sealed fields encrypted (already sealed ones kept)."""
        if not self.sealed_fields:
            return payload
        cipher = data_cipher()
        return {
            k: cipher.seal(v) if k in self.sealed_fields and isinstance(v, str) else v
            for k, v in payload.items()
        }


def open_payload(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored payload with its sealed fields decrypted, for the handler that runs it."""
    if not any(is_sealed(v) for v in stored.values()):
        return stored
    cipher = data_cipher()
    return {k: cipher.open(v) if is_sealed(v) else v for k, v in stored.items()}


def shown_payload(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as the API shows it: sealed fields masked (``+44*******789``)."""
    if not any(is_sealed(v) for v in stored.values()):
        return stored
    return {k: masked(v) if is_sealed(v) else v for k, v in stored.items()}


class UnknownJobType(LookupError):
    pass


_registry: dict[str, JobType] = {}
_registry_lock = threading.Lock()
#: Modules that define the built-in job types; JOBYARD_JOB_MODULES adds a deployment's own.
BUILTIN_JOB_MODULES = ("core.unread", "core.messaging", "core.ai_reply", "core.embeddings", "core.scrape")


def register_job_type(job_type: JobType) -> JobType:
    with _registry_lock:
        existing = _registry.get(job_type.name)
        if existing is not None and existing != job_type:
            raise ValueError(f"job type {job_type.name!r} is already registered differently")
        _registry[job_type.name] = job_type
    return job_type


def get_job_type(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobType(name) from None


def job_types() -> dict[str, JobType]:
    return dict(_registry)


def load_job_modules(settings: Settings | None = None) -> list[str]:
    """Import the modules that register job types: the built-ins, then JOBYARD_JOB_MODULES."""
    settings = settings or get_settings()
    modules = [*BUILTIN_JOB_MODULES, *settings.job_modules]
    for name in modules:
        importlib.import_module(name)
    return modules


# -- payload validation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def validate_payload(job_type: JobType, data: Any, prefix: str = "payload") -> tuple[Any, list[FieldError]]:
    """Check ``data`` against the type's schema and list every bad field, not only the first.

    Returns the normalised payload (defaults filled in, as stored and compared for idempotency).
    """
    if not isinstance(data, dict):
        return None, [FieldError(prefix, "must be an object")]
    schema = job_type.payload
    try:
        # The common case, valid input, in one call; the field-by-field walk names every error.
        value = msgspec.convert(data, schema)
    except msgspec.ValidationError as first_error:
        errors = _field_errors(schema, data, prefix)
        # No field is wrong on its own: a cross-field check in __post_init__ failed.
        return None, errors or [FieldError(prefix, str(first_error))]
    normalised = msgspec.to_builtins(value)
    size = len(msgspec.json.encode(normalised))
    if size > job_type.max_payload_bytes:
        message = f"is {size} bytes as JSON; a {job_type.name} payload may have at most {job_type.max_payload_bytes}"
        return None, [FieldError(prefix, message)]
    return normalised, []


def _field_errors(schema: type[msgspec.Struct], data: dict[str, Any], prefix: str) -> list[FieldError]:
    errors: list[FieldError] = []
    fields = msgspec.structs.fields(schema)
    known = {f.encode_name for f in fields}
    for f in fields:
        if f.encode_name not in data:
            if f.required:
                errors.append(FieldError(f"{prefix}.{f.encode_name}", "is required"))
            continue
        try:
            msgspec.convert(data[f.encode_name], f.type)
        except msgspec.ValidationError as exc:
            errors.append(FieldError(f"{prefix}.{f.encode_name}", str(exc)))
    if schema.__struct_config__.forbid_unknown_fields:
        errors.extend(
            FieldError(f"{prefix}.{key}", "is not a known field") for key in data if key not in known
        )
    return errors


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
            payload=shown_payload(m["payload"]),
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
        )


class IdempotencyConflict(Exception):
    """The idempotency key was first used with a different type or payload."""

    def __init__(self, index: int, key: str, existing_id: uuid.UUID) -> None:
        super().__init__(f"idempotency key {key!r} was used for a different job ({existing_id})")
        self.index, self.key, self.existing_id = index, key, existing_id


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: Job
    created: bool
    #: The Redis id committed on a new job that is due now; None when nothing is to be published.
    message_id: str | None = None


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
    to_publish = [
        Publication(e.job.id, e.job.type, e.job.queue, e.message_id, e.job.request_id)
        for e in results
        if e.message_id is not None
    ]
    _publish_after_commit(broker, to_publish)
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
}


def _insert_many_sql(rows: str, now: str) -> str:
    """The insert of new rows, with the driver's spelling of its two parameters."""
    return (
        f"INSERT INTO jobs ({', '.join(_NEW_ROW_COLUMNS)}, created_at, updated_at) "
        f"SELECT {', '.join(_NEW_ROW_COLUMNS)}, {now}, {now} "
        f"FROM jsonb_to_recordset(CAST({rows} AS jsonb)) AS j("
        + ", ".join(f"{name} {kind}" for name, kind in _NEW_ROW_COLUMNS.items())
        + ") ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id::text"
    )


_INSERT_MANY = sa.text(_insert_many_sql(":rows", ":now"))
#: The same for psycopg used directly (the API's event-loop path, core/fastenqueue.py).
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
    keys = [r.idempotency_key for r, new in zip(rows, created, strict=True) if not new]
    existing: dict[str, Row[Any]] = {}
    if keys:
        found = conn.execute(sa.select(jobs).where(jobs.c.idempotency_key.in_(keys)))
        existing = {row.idempotency_key: row for row in found}
    results = []
    for index, (r, new) in enumerate(zip(rows, created, strict=True)):
        if new:
            results.append(Enqueued(new_job(r, now), created=True, message_id=r.message_id))
            continue
        assert r.idempotency_key is not None  # only a repeated key makes the insert skip a row
        first = existing[r.idempotency_key]
        # Sealing is randomised (a fresh nonce each time), so compare the payloads in clear.
        if first.type != r.type or open_payload(first.payload) != open_payload(r.payload):
            raise IdempotencyConflict(index, r.idempotency_key, first.id)
        results.append(Enqueued(Job.from_row(first), created=False))
    return results


def new_rows(new_jobs: Sequence[NewJob], now: datetime) -> tuple[list[NewRow], list[str]]:
    """The rows to insert for ``new_jobs``, and their ids as text."""
    rows: list[NewRow] = []
    texts: list[str] = []
    for job_id, nj in zip(_uuid4s(len(new_jobs)), new_jobs, strict=True):
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
            )
        )
    return rows, texts


def encode_rows(rows: list[NewRow]) -> str:
    return _encode_rows(rows).decode()


def _uuid4s(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) UUIDs from one read of the OS's random source, not one each."""
    raw = os.urandom(16 * n)
    return [uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4) for i in range(n)]


def new_job(r: NewRow, now: datetime) -> Job:
    """The job as the row just inserted holds it, without reading it back."""
    return Job(
        id=r.id,
        type=r.type,
        queue=r.queue,
        status=r.status,
        payload=shown_payload(r.payload),
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
    )


def _publish_after_commit(broker: RedisBroker, pubs: list[Publication]) -> None:
    try:
        publish(broker, pubs)
    except (redis.RedisError, OSError) as exc:
        # The rows are committed: the sweeper will find the missing messages and publish them.
        log.warning("publish_failed_will_sweep", jobs=len(pubs), error=str(exc))

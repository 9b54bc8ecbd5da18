"""/v1/jobs: enqueue (one or a batch), read, list, attempts, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import anyio
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import requires
from control_api.fanout import Fanout
from control_api.quotas import QueueCap
from control_api.readerview import all_shown, redactor_for, shown
from control_api.request_id import on_access_line, request_id_of
from control_api.schemas import (
    AttemptList,
    BatchIn,
    BatchOut,
    CancelByKeyIn,
    CancelledCount,
    JobIn,
    JobList,
    RescheduleIn,
)
from core.access.keys import ApiKey
from core.engine.groupcommit import GroupCommit
from core.engine.jobs import FINAL, Enqueued, Job, JobStatus, NewJob
from core.engine.queries import (
    JobFilter,
    cancel_by_business_key,
    cancel_job,
    get_job,
    list_attempts,
    list_jobs,
    reschedule_job,
)
from core.errors import BadRequest, InvalidInput
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: The events that wake a waiting request.
FINAL_EVENTS = frozenset(f"job.{status}" for status in FINAL)
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size.")]


async def _enqueue(state: State, new_jobs: list[NewJob]) -> list[Enqueued]:
    queue_cap: QueueCap = state.queue_cap
    await queue_cap.check(new_jobs)  # TenantQueueFull: 429
    group_commit: GroupCommit = state.group_commit
    return await group_commit.enqueue(new_jobs)  # IdempotencyConflict: 409


async def enqueue_checked(
    state: State, items: Sequence[JobIn], request_id: str | None, prefix: str, key: ApiKey
) -> list[Enqueued]:
    """Validate every item (422 naming each bad item's index and fields), then enqueue all or none,
    as jobs of ``key``'s tenant."""
    new_jobs: list[NewJob] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        new_job, item_errors = item.to_new_job(
            request_id, prefix=f"{prefix}[{index}].", tenant=key.tenant, created_by=key.id
        )
        if new_job is not None:
            new_jobs.append(new_job)
        errors.extend({"index": index, **e.as_dict()} for e in item_errors)
    if errors:
        raise InvalidInput(details=errors)
    return await _enqueue(state, new_jobs)


Wait = Annotated[
    str | None,
    QueryParameter(
        description="Seconds (a number from 0 to JOBYARD_JOB_WAIT_MAX_S) to wait for the job to be final.",
        examples=[Example(value="30")],
    ),
]
#: A waiting request reads its job again this often, in case a wake-up was missed.
RECHECK_S = 2.0


def checked_wait(wait: str | None, most: float) -> float:
    """The seconds a request may wait; BadRequest for anything but a number from 0 to ``most``."""
    if wait is None:
        return 0.0
    try:
        seconds = float(wait)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= most:  # NaN too
        raise BadRequest(f"wait must be a number of seconds from 0 to {most:g}", code="bad_wait")
    return seconds


def _read_job(settings: Settings, job_id: uuid.UUID, reach: str | None) -> Job:
    with transaction(settings) as conn:
        return get_job(conn, job_id, reach)


async def wait_final(fanout: Fanout, settings: Settings, job: Job, reach: str | None, seconds: float) -> Job:
    """``job`` once it is final or ``seconds`` passed: woken by its final event, read again every
    RECHECK_S in case a wake-up was missed."""
    deadline = time.monotonic() + seconds
    sub = await fanout.subscribe(job.tenant, FINAL_EVENTS, subject=str(job.id), record_s=seconds + RECHECK_S)
    try:
        while True:
            # Read after subscribing: a job that became final before its event was recorded is seen here.
            job = await anyio.to_thread.run_sync(_read_job, settings, job.id, reach)
            left = deadline - time.monotonic()
            if job.status in FINAL or left <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.queue.get(), min(left, RECHECK_S))
    finally:
        fanout.unsubscribe(sub)


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    # Async: the request waits on the event loop for its group's commit (core/engine/groupcommit.py).
    @post(
        "/",
        guards=[requires("jobs:write")],
        summary="Enqueue a job",
        responses={200: ResponseSpec(Job, description="The idempotency key was seen: the first job")},
    )
    async def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[JobIn]
    ) -> Response[Job]:
        key = request.user
        new_job, errors = data.to_new_job(request_id_of(request.scope), tenant=key.tenant, created_by=key.id)
        if new_job is None:
            raise InvalidInput(details=[e.as_dict() for e in errors])
        (result,) = await _enqueue(state, [new_job])
        # On the request's access line: one line a request at INFO on the busiest route.
        on_access_line(request.scope, job_id=str(result.job.id), type=result.job.type, created=result.created)
        # An idempotent repeat answers the first job, which may have failed by now.
        job = shown(result.job, redactor_for(request)) if result.job.error else result.job
        return Response(job, status_code=201 if result.created else 200)

    @post("/batch", guards=[requires("jobs:write")], summary="Enqueue up to 1000 jobs")
    async def create_batch(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[BatchIn]
    ) -> Response[BatchOut]:
        results = await enqueue_checked(
            state, data.jobs, request_id_of(request.scope), prefix="jobs", key=request.user
        )
        log.info("jobs_enqueued", jobs=len(results), created=sum(r.created for r in results))
        jobs = [r.job for r in results]
        if any(j.error for j in jobs):
            jobs = all_shown(jobs, redactor_for(request))
        return Response(BatchOut(jobs), status_code=201)

    @get("/", guards=[requires("jobs:read")], sync_to_thread=True, summary="List jobs, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        type: FromQuery[str | None] = None,
        status: FromQuery[JobStatus | None] = None,
        business_key: FromQuery[str | None] = None,
        queue: FromQuery[str | None] = None,
        created_after: FromQuery[datetime | None] = None,
        created_before: FromQuery[datetime | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> JobList:
        naive = [
            n
            for n, v in (("created_after", created_after), ("created_before", created_before))
            if v and not v.tzinfo
        ]
        if naive:
            raise InvalidInput(
                details=[{"field": n, "message": "needs a time zone (e.g. Z or +01:00)"} for n in naive]
            )
        f = JobFilter(
            type=type,
            status=status.value if status else None,
            business_key=business_key,
            queue=queue,
            created_after=created_after,
            created_before=created_before,
            tenant=request.user.reach,
        )
        with transaction(state.settings) as conn:
            items, next_cursor = list_jobs(conn, f, limit, cursor)
        return JobList(all_shown(items, redactor_for(request)), next_cursor)

    # Async: a wait holds no thread and no connection (control_api/fanout.py wakes it).
    @get(
        "/{job_id:uuid}",
        guards=[requires("jobs:read")],
        summary="Get a job",
        description="With `wait`, answers once the job is final (succeeded, dead or cancelled) or "
        "after that many seconds (at most JOBYARD_JOB_WAIT_MAX_S), whichever comes first.",
    )
    async def read(
        self, request: Request[ApiKey, Any, Any], state: State, job_id: FromPath[uuid.UUID], wait: Wait = None
    ) -> Job:
        settings: Settings = state.settings
        reach = request.user.reach
        seconds = checked_wait(wait, settings.job_wait_max_s)
        job = await anyio.to_thread.run_sync(_read_job, settings, job_id, reach)
        if seconds and job.status not in FINAL:
            job = await wait_final(state.fanout, settings, job, reach, seconds)
        return shown(job, redactor_for(request))

    @get("/{job_id:uuid}/attempts", guards=[requires("jobs:read")], sync_to_thread=True, summary="Attempts")
    def attempts(
        self, request: Request[ApiKey, Any, Any], state: State, job_id: FromPath[uuid.UUID]
    ) -> AttemptList:
        with transaction(state.settings) as conn:
            attempts = list_attempts(conn, job_id, request.user.reach)
        return AttemptList(all_shown(attempts, redactor_for(request)))

    @post(
        "/{job_id:uuid}/cancel",
        guards=[requires("jobs:write")],
        sync_to_thread=True,
        status_code=200,
        description="A job not yet running is cancelled at once (200). A running job is asked to stop "
        "(202, `cancel_requested_at` set): its worker aborts it within about a second and it ends "
        "`cancelled`, unless it finishes first. A finished job is 409 `not_cancellable`.",
        responses={202: ResponseSpec(Job, description="Running: the worker was asked to stop it")},
    )
    def cancel(
        self, request: Request[ApiKey, Any, Any], state: State, job_id: FromPath[uuid.UUID]
    ) -> Response[Job]:
        key = request.user
        with transaction(state.settings) as conn:
            job = shown(cancel_job(conn, job_id, key.reach, by=key.id), redactor_for(request))
        return Response(job, status_code=202 if job.status == JobStatus.RUNNING else 200)

    @post("/{job_id:uuid}/reschedule", guards=[requires("jobs:write")], sync_to_thread=True, status_code=200)
    def reschedule(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        job_id: FromPath[uuid.UUID],
        data: JSONBody[RescheduleIn],
    ) -> Job:
        run_at, errors = data.checked_run_at()
        if run_at is None:
            raise InvalidInput(details=[e.as_dict() for e in errors])
        with transaction(state.settings) as conn:
            return shown(reschedule_job(conn, job_id, run_at, request.user.reach), redactor_for(request))

    @post("/cancel", guards=[requires("jobs:write")], sync_to_thread=True, status_code=200)
    def cancel_by_key(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[CancelByKeyIn]
    ) -> CancelledCount:
        # A business key names jobs within one tenant: even an admin key cancels only its own
        # tenant's "order-123", never every tenant's.
        key = request.user
        with transaction(state.settings) as conn:
            return CancelledCount(cancel_by_business_key(conn, data.business_key, key.tenant, by=key.id))

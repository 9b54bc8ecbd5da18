"""/v1/workers: the worker processes alive and the jobs each runs (`ops` or `ops:read`), and quieting
one (`ops`, with a key reaching every tenant: workers are the farm's, shared by every tenant).

A key of one tenant sees every worker (as `GET /v1/queues` shows them) and, among the jobs they run,
its own tenant's only. What quiet does, and how a worker is then stopped safely, is in
core/engine/workers.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from control_api.auth import reaches_every_tenant, requires, requires_any
from core.access.keys import ApiKey
from core.engine.jobs import utcnow
from core.engine.workers import QuietOutcome, WorkerList, list_workers, request_quiet
from core.errors import InvalidInput
from core.platform.db import snapshot, transaction

#: A worker id as workers name themselves (host-pid-random); anything longer is no worker's.
MAX_WORKER_ID = 300
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]


class QuietIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Why, for the audit log.
    reason: Reason


class WorkersController(Controller):
    path = "/v1/workers"
    tags = ["queues and health"]

    @get(
        "/",
        guards=[requires_any("ops", "ops:read")],
        sync_to_thread=True,
        summary="Workers alive and the jobs each runs",
    )
    def list(self, request: Request[ApiKey, Any, Any], state: State) -> WorkerList:
        """Every worker process that beat within JOBYARD_WORKER_DEAD_AFTER: host, pid, queues, threads,
        age, last heartbeat, state (`running`, `quieting`, `quiet`) and the running jobs it holds. A
        key of one tenant sees every worker but only its own tenant's jobs."""
        settings = state.settings
        with snapshot(settings) as conn:
            return list_workers(conn, utcnow(), settings.worker_dead_after_s, request.user.reach)

    @post(
        "/{worker_id:str}/quiet",
        guards=[requires("ops"), reaches_every_tenant],
        sync_to_thread=True,
        status_code=200,
        summary="Quiet a worker: it finishes its jobs and takes no new one",
    )
    def quiet(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        worker_id: FromPath[str],
        data: JSONBody[QuietIn],
    ) -> QuietOutcome:
        """The worker finishes the jobs it holds and takes nothing new (within a heartbeat; its state
        turns `quieting`, then `quiet`); it keeps beating. Stop it once its `jobs` list is empty.
        Asking again changes nothing (`audit_id` null). 404 for an id that is no live worker's."""
        if len(worker_id) > MAX_WORKER_ID:
            raise InvalidInput(details=[{"field": "worker_id", "message": "is no worker's id (too long)"}])
        settings = state.settings
        with transaction(settings) as conn:
            return request_quiet(
                conn,
                worker_id,
                utcnow(),
                settings.worker_dead_after_s,
                actor=request.user.name,
                reason=data.reason,
            )

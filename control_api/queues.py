"""/v1/queues: the state of every queue, per job type (scope `ops`); a key of one tenant sees that
tenant's jobs only (core/engine/queues.py). Pausing and resuming a queue (scope `ops`, and a key
reaching every tenant: a queue is the whole farm's), core/engine/pauses.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from control_api.auth import OPS_READ, acts_on_every_tenant, requires
from control_api.deadletters import Reason
from core.access.keys import ApiKey
from core.engine.pauses import QueueChange, pause, resume
from core.engine.queues import Overview, read_overview

#: Pausing or resuming acts on every tenant's jobs of the queue.
FARM_OPS = [requires("ops"), acts_on_every_tenant]
#: A resume's reason may be left out: it undoes a pause, whose entry says why.
OptionalReason = Annotated[str, msgspec.Meta(max_length=2000)]


class PauseIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Reason
    #: Answer what the pause would hold; change nothing.
    dry_run: bool = False


class ResumeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: OptionalReason = ""
    dry_run: bool = False


def _act(
    change: Callable[..., QueueChange],
    request: Request[ApiKey, Any, Any],
    state: State,
    queue: str,
    data: PauseIn | ResumeIn,
) -> QueueChange:
    """A pause or resume by the request's key (its name is the audit entry's actor)."""
    return change(
        state.settings,
        state.broker.client,
        queue,
        actor=request.user.name,
        reason=data.reason,
        dry_run=data.dry_run,
    )


class QueuesController(Controller):
    path = "/v1/queues"
    tags = ["queues and health"]

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="Queues, per job type, and workers alive")
    def overview(self, request: Request[ApiKey, Any, Any], state: State) -> Overview:
        """Ready (Redis), delayed, scheduled, running, retrying and dead jobs per job type and queue,
        the oldest ready job's age, the last minute's throughput and latency, and the workers alive.
        A key of one tenant sees its tenant's jobs, and no Redis depths (`ready` is null): Redis's
        queues are shared by every tenant. Each queue says whether it is paused."""
        return read_overview(state.settings, state.health_redis, request.user.reach)

    @post(
        "/{queue:str}/pause", guards=FARM_OPS, sync_to_thread=True, status_code=200, summary="Pause a queue"
    )
    def pause(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        queue: FromPath[str],
        data: JSONBody[PauseIn],
    ) -> QueueChange:
        """The queue keeps accepting jobs; workers start none of them and the scheduler publishes
        none of its due jobs until it is resumed. Jobs already running finish. Pausing a paused
        queue answers its state unchanged (`changed: false`, no audit entry). 404 `queue_not_found`
        for a queue no job type uses; 403 for a key of one tenant."""
        return _act(pause, request, state, queue, data)

    @post(
        "/{queue:str}/resume", guards=FARM_OPS, sync_to_thread=True, status_code=200, summary="Resume a queue"
    )
    def resume(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        queue: FromPath[str],
        data: JSONBody[ResumeIn],
    ) -> QueueChange:
        """Workers start the queue's waiting jobs at once, in their order; its due jobs are
        published at the scheduler's next pass. Resuming a queue that is not paused answers
        `changed: false` and writes no audit entry."""
        return _act(resume, request, state, queue, data)

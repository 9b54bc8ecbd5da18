"""GET /v1/queues: the state of every queue, per job type (scope `ops`); a key of one tenant sees that
tenant's jobs only (core/engine/queues.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State

from control_api.auth import OPS_READ
from core.access.keys import ApiKey
from core.engine.queues import Overview, read_overview


class QueuesController(Controller):
    path = "/v1/queues"
    tags = ["queues and health"]

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="Queues, per job type, and workers alive")
    def overview(self, request: Request[ApiKey, Any, Any], state: State) -> Overview:
        """Ready (Redis), delayed, scheduled, running, retrying and dead jobs per job type and queue,
        the oldest ready job's age, the last minute's throughput and latency, and the workers alive.
        A key of one tenant sees its tenant's jobs, and no Redis depths (`ready` is null): Redis's
        queues are shared by every tenant."""
        return read_overview(state.settings, state.health_redis, request.user.reach)

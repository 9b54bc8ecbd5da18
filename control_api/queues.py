"""GET /v1/queues: the state of every queue, per job type (scope `ops`)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State

from control_api.auth import requires
from core.engine.queues import Overview, read_overview


class QueuesController(Controller):
    path = "/v1/queues"
    tags = ["queues and health"]

    @get(
        "/", guards=[requires("ops")], sync_to_thread=True, summary="Queues, per job type, and workers alive"
    )
    def overview(self, state: State) -> Overview:
        """Ready (Redis), delayed, scheduled, running, retrying and dead jobs per job type and queue,
        the oldest ready job's age, the last minute's throughput and latency, and the workers alive."""
        return read_overview(state.settings, state.health_redis)

"""The cap on a tenant's queued jobs at the door: an enqueue that would take the tenant past it is
refused whole, 429 ``tenant_queue_full`` with Retry-After (core/access/quotas.py).

The count is the tenant's messages waiting in its lanes in Redis, over every queue, read with the cap
in one script call. A tenant under half its cap is not counted again for ``CLEAR_S``: a busy tenant
far from its cap pays no round trip per request, and one near it is counted on each. So a burst may
pass the cap by what a tenant enqueues in ``CLEAR_S`` from under half of it, never more. If Redis does
not answer, the enqueue goes on (as the rate limits do): Postgres holds the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis
import redis.asyncio
import structlog

from core.engine.job_types import job_types
from core.engine.jobs import NewJob, utcnow
from core.engine.lanes import TENANT_WAITING_LUA
from core.errors import TenantQueueFull
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: How long a tenant under half its cap is let through without being counted.
CLEAR_S = 1.0
#: What a refused client is told to wait: a backlog at its cap drains for a while.
RETRY_AFTER_S = 5.0


class QueueCap:
    """One per API process."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.settings = settings
        self._script = client.register_script(TENANT_WAITING_LUA)
        self._clear_until: dict[str, float] = {}

    async def check(self, new_jobs: Sequence[NewJob]) -> None:
        """Raise TenantQueueFull if the jobs due now would take their tenant past its cap."""
        now = utcnow()
        due = sum(1 for j in new_jobs if j.run_at is None or j.run_at <= now)
        if not due:
            return
        tenant = new_jobs[0].tenant  # a request's jobs are all its key's tenant's
        if self._clear_until.get(tenant, 0.0) > time.monotonic():
            return
        queues = sorted({t.queue_name for t in job_types().values()})
        try:
            cap, queued = await self._script(
                keys=[self.settings.redis_namespace], args=[tenant, self.settings.tenant_max_queued, *queues]
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("queue_cap_unavailable", error=str(exc), detail="the enqueue goes on")
            return
        cap, queued = int(cap), int(queued)
        if cap > 0 and queued + due > cap:
            raise TenantQueueFull(
                f"tenant {tenant!r} has {queued:,} jobs waiting for a worker and may have {cap:,}; "
                f"these {due:,} would pass it: retry once its workers have caught up",
                retry_after=RETRY_AFTER_S,
                details={"tenant": tenant, "queued": queued, "max_queued": cap, "adding": due},
            )
        if cap <= 0 or queued + due <= cap // 2:
            if len(self._clear_until) > 10_000:
                self._clear_until.clear()
            self._clear_until[tenant] = time.monotonic() + CLEAR_S

"""/v1/tenants/{tenant}/limits: a tenant's quotas and fair-share weight (core/access/quotas.py).

An `ops` key reads its own tenant's; another tenant's answers 404, as everywhere. Only an `admin` key
sets them: a tenant's quotas protect the other tenants, so no tenant sets its own.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import redis
import structlog
from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from control_api.auth import OPS_READ, requires
from core.access.keys import ApiKey
from core.access.quotas import LimitOverrides, TenantLimits, get_limits, mirror, set_limits
from core.errors import NotFound
from core.platform.db import transaction
from core.platform.tenants import checked_tenant, reaches

log = structlog.get_logger(__name__)

Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]


class LimitsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The tenant's own limits, replacing those set before; a field left out or null takes the farm's
    setting (JOBYARD_TENANT_*), and 0 lifts the cap."""

    max_queued: Count | None = None
    max_running_per_queue: Count | None = None
    rate_limit_per_s: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    weight: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None


def _reached(key: ApiKey, tenant: str) -> str:
    checked_tenant(tenant)
    if not reaches(key.reach, tenant):
        raise NotFound(f"no tenant {tenant!r}", code="tenant_not_found")
    return tenant


class TenantsController(Controller):
    path = "/v1/tenants"
    tags = ["tenants"]

    @get("/{tenant:str}/limits", guards=[OPS_READ], sync_to_thread=True)
    def read_limits(
        self, request: Request[ApiKey, Any, Any], state: State, tenant: FromPath[str]
    ) -> TenantLimits:
        """A tenant's limits in force, and those set for it alone."""
        tenant = _reached(request.user, tenant)
        with transaction(state.settings) as conn:
            return get_limits(conn, state.settings, tenant)

    @put("/{tenant:str}/limits", guards=[requires("admin")], sync_to_thread=True)
    def set_limits(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        tenant: FromPath[str],
        data: JSONBody[LimitsIn],
    ) -> TenantLimits:
        """Set a tenant's own quotas and weight."""
        tenant = checked_tenant(tenant)
        own = LimitOverrides(**msgspec.structs.asdict(data))
        with transaction(state.settings) as conn:
            limits = set_limits(conn, state.settings, tenant, own, request.user.id)
        try:
            mirror(state.health_redis, state.settings.redis_namespace, limits)
        except (redis.RedisError, OSError) as exc:
            # Stored: the scheduler's next sync (core/access/quotas.py) writes them to Redis.
            log.warning("tenant_limits_not_mirrored", tenant=tenant, error=str(exc))
        log.info("tenant_limits_set", tenant=tenant, by=str(request.user.id))
        return limits

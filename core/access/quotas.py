"""A tenant's quotas and fair-share weight: the farm's settings, and a tenant's own limits over them.

Three caps, each 0 for none:

- **jobs queued** (JOBYARD_TENANT_MAX_QUEUED): the tenant's jobs waiting in Redis for a worker, over
  every queue. An enqueue that would pass it is refused whole, 429 ``tenant_queue_full``
  (control_api/quotas.py); jobs due later wait in Postgres and do not count until published.
- **jobs running per queue** (JOBYARD_TENANT_MAX_RUNNING_PER_QUEUE): the tenant's jobs that workers
  hold (running, or fetched to run next) at once in one queue. Nothing is refused: past the cap the
  fetch takes none of the tenant's messages, which wait their turn (core/engine/lua/fetch.lua).
- **requests per second** (JOBYARD_TENANT_RATE_LIMIT_PER_S): every key of the tenant together,
  429 ``tenant_rate_limited`` (control_api/ratelimit.py), beside each key's own rate.

The weight (1 by default) gives the tenant that many turns for another's one in the fetch.

A tenant's own limits live in Postgres (``tenant_limits``, one row per tenant, NULL for the farm's
setting), set by an admin key (PUT /v1/tenants/{tenant}/limits). The hot paths never read Postgres:
the API and the fetch script read a mirror in Redis (hashes tenant -> value, core/engine/lanes.py),
written after every change and rewritten whole by the scheduler every ``SYNC_EVERY_S``, so a Redis
that lost its data has the limits back within that time (the farm's settings apply meanwhile).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import redis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.lanes import MAX_QUEUED, MAX_RUNNING, RATE, WEIGHTS, tenant_limits_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import tenant_limits
from core.platform.tenants import checked_tenant

#: How often the scheduler rewrites the mirror in Redis from Postgres.
SYNC_EVERY_S = 30.0
#: Column -> the Redis hash that mirrors it.
MIRRORED = {
    "max_queued": MAX_QUEUED,
    "max_running_per_queue": MAX_RUNNING,
    "rate_limit_per_s": RATE,
    "weight": WEIGHTS,
}


class LimitOverrides(msgspec.Struct, kw_only=True):
    """What is set for the tenant itself; null: the farm's setting."""

    max_queued: int | None = None
    max_running_per_queue: int | None = None
    rate_limit_per_s: float | None = None
    weight: int | None = None


class TenantLimits(msgspec.Struct, kw_only=True):
    """A tenant's limits in force (0: no cap), and those set for it alone."""

    tenant: str
    max_queued: int
    max_running_per_queue: int
    rate_limit_per_s: float
    weight: int
    overrides: LimitOverrides
    updated_at: datetime | None = None
    #: The API key that last set them (null: never set, or the command line).
    updated_by: uuid.UUID | None = None


def in_force(settings: Settings, tenant: str, row: Any | None) -> TenantLimits:
    own = LimitOverrides(**{f: getattr(row, f) for f in MIRRORED}) if row is not None else LimitOverrides()
    return TenantLimits(
        tenant=tenant,
        max_queued=settings.tenant_max_queued if own.max_queued is None else own.max_queued,
        max_running_per_queue=(
            settings.tenant_max_running_per_queue
            if own.max_running_per_queue is None
            else own.max_running_per_queue
        ),
        rate_limit_per_s=(
            settings.tenant_rate_limit_per_s if own.rate_limit_per_s is None else own.rate_limit_per_s
        ),
        weight=1 if own.weight is None else own.weight,
        overrides=own,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )


def get_limits(conn: Connection, settings: Settings, tenant: str) -> TenantLimits:
    row = conn.execute(sa.select(tenant_limits).where(tenant_limits.c.tenant == tenant)).first()
    return in_force(settings, tenant, row)


def set_limits(
    conn: Connection, settings: Settings, tenant: str, own: LimitOverrides, by: uuid.UUID | None
) -> TenantLimits:
    """Store the tenant's own limits, as given: a null field takes the farm's setting again."""
    checked_tenant(tenant)
    values = {**msgspec.structs.asdict(own), "updated_at": sa.func.now(), "updated_by": by}
    row = conn.execute(
        pg_insert(tenant_limits)
        .values(tenant=tenant, **values)
        .on_conflict_do_update(index_elements=[tenant_limits.c.tenant], set_=values)
        .returning(*tenant_limits.c)
    ).one()
    return in_force(settings, tenant, row)


def mirror(client: redis.Redis, namespace: str, limits: TenantLimits) -> None:
    """Write one tenant's own limits to Redis (a null field: the hash forgets the tenant)."""
    pipe = client.pipeline(transaction=True)
    for field, name in MIRRORED.items():
        value = getattr(limits.overrides, field)
        key = tenant_limits_key(namespace, name)
        if value is None:
            pipe.hdel(key, limits.tenant)
        else:
            pipe.hset(key, limits.tenant, value)
    pipe.execute()


def sync_limits(settings: Settings, client: redis.Redis) -> int:
    """Rewrite the mirror whole from Postgres: a scheduler step, which publishes nothing (0)."""
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(tenant_limits)).all()
    pipe = client.pipeline(transaction=True)
    for field, name in MIRRORED.items():
        key = tenant_limits_key(settings.redis_namespace, name)
        pipe.delete(key)
        values = {r.tenant: getattr(r, field) for r in rows if getattr(r, field) is not None}
        if values:
            pipe.hset(key, mapping=values)
    pipe.execute()
    return 0  # publishes nothing: the scheduler counts published jobs

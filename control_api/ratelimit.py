"""A request rate per API key, and per tenant, shared by every API process through Redis: 429 with
Retry-After.

GCRA (the generic cell rate algorithm): one Redis key per API key holds the theoretical arrival
time of the next request; a request is let through if that time is within ``burst`` intervals of
now. One Lua script decides (core/platform/lua/gcra.lua, shared with every other rate limit), so
there is no race between processes.

A busy key does not pay a round trip per request: a process takes a small lease of requests from
the shared budget (the script grants up to the asked number at once) and spends it locally for at
most a quarter of a second. The lease starts at one request, doubles while leases run out before
they expire, and halves when one expires unspent; it never exceeds 2 % of the key's rate per
second, nor a sixteenth of its burst. So a slow key, or one with a small limit (a 5/s key leases
nothing), is counted exactly; a key at thousands of requests a second costs a round trip per
hundred; and what a lease can hand out beyond the shared budget is bounded by the leases in flight.
Refills of one key are single-flight: requests that find the lease spent wait for one refill.

Every answer carries RateLimit-* and X-RateLimit-* headers. If Redis does not answer, requests are
let through (fail open): the API must keep accepting jobs, which Postgres holds, while Redis blips.

A tenant's rate (JOBYARD_TENANT_RATE_LIMIT_PER_S, or its own: core/access/quotas.py) is a second
budget the same way, shared by every key of the tenant, with one second of it as its burst; over it,
429 ``tenant_rate_limited``. Its own rate is read from Redis at most every ``TENANT_RATE_CACHE_S``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from control_api.errors import ApiError
from core.access.keys import ApiKey
from core.engine.lanes import RATE, tenant_limits_key
from core.platform.ratelimit import GCRA_SCRIPT
from core.platform.settings import Settings

log = structlog.get_logger(__name__)
#: While Redis is unreachable, the warning is logged at most this often.
_WARN_EVERY_S = 10.0

#: How long a process may spend a lease before handing the rest back to the budget (by dropping it).
LEASE_TTL_S = 0.25
#: A lease holds at most this share of the key's rate per second...
LEASE_RATE_SHARE = 0.02
#: ... and at most this share of its burst.
LEASE_BURST_SHARE = 1 / 16
#: How long an API process keeps a tenant's own rate before reading it again (a change's lag).
TENANT_RATE_CACHE_S = 5.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    reset_s: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = {
            b"limit": str(self.limit).encode(),
            b"remaining": str(max(self.remaining, 0)).encode(),
            b"reset": str(math.ceil(self.reset_s)).encode(),
        }
        out = [(b"ratelimit-" + k, v) for k, v in values.items()]
        out += [(b"x-ratelimit-" + k, v) for k, v in values.items()]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after_s))).encode()))
        return out


@dataclass(slots=True)
class _Lease:
    """Requests this process may let through for one key without asking Redis."""

    left: int
    expires_at: float
    size: int  # how many were granted
    verdict: Verdict  # the budget as Redis saw it at the grant


class KeyRateLimiter:
    """Decides whether a key may make one more request now, leasing from the shared budget."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._script: Any = client.register_script(GCRA_SCRIPT)
        self._warned_at = -_WARN_EVERY_S
        # Per budget (a key's id, or a tenant's name).
        self._leases: dict[uuid.UUID | str, _Lease] = {}
        self._next_size: dict[uuid.UUID | str, int] = {}
        self._refills: dict[uuid.UUID | str, asyncio.Future[Verdict | None]] = {}

    def limits(self, key: ApiKey) -> tuple[float, int]:
        """(requests per second, burst) for the key; a rate of 0 means unlimited.

        A key with a rate of its own gets one second of it as its burst, so a key limited to 10/s
        cannot spend the farm-wide burst at once.
        """
        if key.rate_limit_per_s is not None:
            return key.rate_limit_per_s, max(1, math.ceil(key.rate_limit_per_s))
        return self.settings.rate_limit_per_s, max(1, self.settings.rate_limit_burst)

    @staticmethod
    def max_lease(rate: float, burst: int) -> int:
        return max(1, int(min(rate * LEASE_RATE_SHARE, burst * LEASE_BURST_SHARE)))

    async def check(self, key: ApiKey) -> Verdict | None:
        """The verdict for one request, or None when the key is unlimited or Redis did not answer."""
        rate, burst = self.limits(key)
        return await self.spend(key.id, rate, burst)

    async def spend(self, budget: uuid.UUID | str, rate: float, burst: int) -> Verdict | None:
        """One request from ``budget`` (a key's id, or a tenant's name); None when unlimited."""
        if rate <= 0:
            return None
        while True:
            lease = self._leases.get(budget)
            if lease is not None and lease.left > 0 and lease.expires_at > time.monotonic():
                lease.left -= 1
                if lease.left == 0:  # spent before it expired: ask for more next time
                    self._next_size[budget] = min(lease.size * 2, self.max_lease(rate, burst))
                v = lease.verdict
                return Verdict(True, v.limit, v.remaining + lease.left, 0.0, v.reset_s)
            refill = self._refills.get(budget)
            # A finished refill stays in the map until its done-callback runs, on a later turn of
            # the event loop. Awaiting it again would not yield (a done future returns at once), so
            # with its lease already spent this loop would spin and that callback never run: the
            # whole process would hang. A finished refill is spent; ask for a new one.
            if refill is None or refill.done():
                refill = asyncio.ensure_future(self._refill(budget, rate, burst))
                self._refills[budget] = refill
                refill.add_done_callback(functools.partial(self._refilled, budget))
            verdict = await asyncio.shield(refill)
            if verdict is None or not verdict.allowed:
                return verdict
            # Granted: loop to take one from the new lease (others waiting may have spent it).

    def _refilled(self, budget: uuid.UUID | str, refill: asyncio.Future[Verdict | None]) -> None:
        if self._refills.get(budget) is refill:  # not a newer refill started since
            del self._refills[budget]

    async def _refill(self, budget: uuid.UUID | str, rate: float, burst: int) -> Verdict | None:
        old = self._leases.pop(budget, None)
        size = self._next_size.get(budget, 1)
        if old is not None and old.left > 0:  # expired unspent: the key is slower than the lease
            size = max(1, size // 2)
        size = min(size, self.max_lease(rate, burst))
        self._next_size[budget] = size
        interval_us = max(1, round(1_000_000 / rate))
        # A tenant's budget has a key of its own: names and key ids never meet.
        name = f"tenant:{budget}" if isinstance(budget, str) else str(budget)
        redis_key = f"{self.settings.redis_namespace}:ratelimit:{name}"
        try:
            granted, retry_us, remaining, reset_us, _ = await self._script(
                keys=[redis_key], args=[interval_us, interval_us * burst, size]
            )
        except (redis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > _WARN_EVERY_S:  # one line per interval, not one per request
                self._warned_at = now
                log.warning("rate_limit_unavailable", error=str(exc), detail="requests are let through")
            return None
        verdict = Verdict(
            allowed=int(granted) > 0,
            limit=burst,
            remaining=int(remaining),
            retry_after_s=int(retry_us) / 1_000_000,
            reset_s=int(reset_us) / 1_000_000,
        )
        if verdict.allowed:
            if len(self._leases) > 10_000:  # many keys at once must not grow memory without bound
                self._leases.clear()
                self._next_size.clear()
            self._leases[budget] = _Lease(int(granted), time.monotonic() + LEASE_TTL_S, int(granted), verdict)
        return verdict


class TenantRateLimiter(KeyRateLimiter):
    """The budget every key of a tenant shares (module docstring)."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        super().__init__(client, settings)
        self._rates: dict[str, tuple[float, float]] = {}  # tenant -> (its rate, read at)
        self._rates_key = tenant_limits_key(settings.redis_namespace, RATE)

    async def rate(self, tenant: str) -> float:
        """The tenant's own rate, or the farm's; the farm's when Redis does not answer."""
        now = time.monotonic()
        cached = self._rates.get(tenant)
        if cached is not None and now - cached[1] < TENANT_RATE_CACHE_S:
            return cached[0]
        rate = self.settings.tenant_rate_limit_per_s
        try:
            own = await self.client.hget(self._rates_key, tenant)
        except (redis.RedisError, OSError):
            return rate
        if own is not None:
            rate = float(own)
        if len(self._rates) > 10_000:
            self._rates.clear()
        self._rates[tenant] = (rate, now)
        return rate

    async def check_tenant(self, tenant: str) -> tuple[Verdict | None, float]:
        """The verdict for one request of ``tenant`` (None: unlimited, or Redis did not answer) and
        the rate it was judged by."""
        rate = await self.rate(tenant)
        return await self.spend(tenant, rate, max(1, math.ceil(rate))), rate


#: Where control_api/lean_enqueue.py leaves the verdicts it already spent on a request it hands to
#: the full stack (its refusal, or a body the full stack must answer): not spent twice.
SPENT_VERDICTS = "jobyard.spent_rate_verdicts"


@dataclass(frozen=True, slots=True)
class Verdicts:
    """A request's verdicts: its key's (None: unlimited or Redis did not answer) and its tenant's
    (None: not asked, unlimited or Redis did not answer), with the tenant's rate."""

    key: Verdict | None
    tenant: Verdict | None
    tenant_rate: float

    @property
    def allowed(self) -> bool:
        return (self.tenant is None or self.tenant.allowed) and (self.key is None or self.key.allowed)


async def spend(limiter: KeyRateLimiter, tenants: TenantRateLimiter | None, key: ApiKey) -> Verdicts:
    """One request of ``key`` from its own budget, then (if that allowed it) from its tenant's."""
    verdict = await limiter.check(key)
    shared: Verdict | None = None
    rate = 0.0
    if tenants is not None and (verdict is None or verdict.allowed):
        shared, rate = await tenants.check_tenant(key.tenant)
    return Verdicts(verdict, shared, rate)


def refusal(limiter: KeyRateLimiter, key: ApiKey, verdicts: Verdicts) -> ApiError | None:
    """The 429 to answer for ``verdicts``, or None when they let the request through."""
    shared = verdicts.tenant
    if shared is not None and not shared.allowed:
        error = ApiError(
            429,
            "tenant_rate_limited",
            f"tenant {key.tenant!r} is over its rate of {verdicts.tenant_rate:g} requests per second, all "
            f"its keys together; retry after {shared.retry_after_s:.2f} s",
            {"retry_after_s": round(shared.retry_after_s, 3), "tenant": key.tenant},
        )
        error.headers = {k.decode(): v.decode() for k, v in shared.headers()}
        return error
    verdict = verdicts.key
    if verdict is not None and not verdict.allowed:
        error = ApiError(
            429,
            "rate_limited",
            f"this API key is over its rate of {limiter.limits(key)[0]:g} requests per second; "
            f"retry after {verdict.retry_after_s:.2f} s",
            {"retry_after_s": round(verdict.retry_after_s, 3)},
        )
        error.headers = {k.decode(): v.decode() for k, v in verdict.headers()}
        return error
    return None


class RateLimitMiddleware:
    """Runs after authentication: limits requests that carry a key, and says so in headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = scope.get("user") if scope["type"] == "http" else None  # type: ignore[comparison-overlap]
        limiter: KeyRateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        if not isinstance(key, ApiKey) or limiter is None:
            await self.app(scope, receive, send)
            return
        verdicts: Verdicts | None = scope["state"].pop(SPENT_VERDICTS, None)
        if verdicts is None:
            verdicts = await spend(limiter, getattr(scope["app"].state, "tenant_rate_limiter", None), key)
        error = refusal(limiter, key, verdicts)
        if error is not None:
            raise error
        verdict = verdicts.key
        if verdict is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *verdict.headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)

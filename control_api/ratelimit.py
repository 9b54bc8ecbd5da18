"""A request rate per API key, shared by every API process through Redis: 429 with Retry-After.

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
        self._leases: dict[uuid.UUID, _Lease] = {}
        self._next_size: dict[uuid.UUID, int] = {}
        self._refills: dict[uuid.UUID, asyncio.Future[Verdict | None]] = {}

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
        if rate <= 0:
            return None
        while True:
            lease = self._leases.get(key.id)
            if lease is not None and lease.left > 0 and lease.expires_at > time.monotonic():
                lease.left -= 1
                if lease.left == 0:  # spent before it expired: ask for more next time
                    self._next_size[key.id] = min(lease.size * 2, self.max_lease(rate, burst))
                v = lease.verdict
                return Verdict(True, v.limit, v.remaining + lease.left, 0.0, v.reset_s)
            refill = self._refills.get(key.id)
            if refill is None:
                refill = asyncio.ensure_future(self._refill(key, rate, burst))
                self._refills[key.id] = refill
                refill.add_done_callback(functools.partial(self._refilled, key.id))
            verdict = await asyncio.shield(refill)
            if verdict is None or not verdict.allowed:
                return verdict
            # Granted: loop to take one from the new lease (others waiting may have spent it).

    def _refilled(self, key_id: uuid.UUID, _: asyncio.Future[Verdict | None]) -> None:
        self._refills.pop(key_id, None)

    async def _refill(self, key: ApiKey, rate: float, burst: int) -> Verdict | None:
        old = self._leases.pop(key.id, None)
        size = self._next_size.get(key.id, 1)
        if old is not None and old.left > 0:  # expired unspent: the key is slower than the lease
            size = max(1, size // 2)
        size = min(size, self.max_lease(rate, burst))
        self._next_size[key.id] = size
        interval_us = max(1, round(1_000_000 / rate))
        redis_key = f"{self.settings.redis_namespace}:ratelimit:{key.id}"
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
            self._leases[key.id] = _Lease(int(granted), time.monotonic() + LEASE_TTL_S, int(granted), verdict)
        return verdict


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
        verdict = await limiter.check(key)
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            error = ApiError(
                429,
                "rate_limited",
                f"this API key is over its rate of {limiter.limits(key)[0]:g} requests per second; "
                f"retry after {verdict.retry_after_s:.2f} s",
                {"retry_after_s": round(verdict.retry_after_s, 3)},
            )
            error.headers = {k.decode(): v.decode() for k, v in verdict.headers()}
            raise error

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *verdict.headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""A request rate per API key, shared by every API process through Redis: 429 with Retry-After.

GCRA (the generic cell rate algorithm): one Redis key per API key holds the theoretical arrival
time of the next request; a request is let through if that time is within ``burst`` intervals of
now. One Lua script, so one round trip per request and no race between processes. Every answer
carries RateLimit-* and X-RateLimit-* headers. If Redis does not answer, requests are let through
(fail open): the API must keep accepting jobs, which Postgres holds, while Redis blips.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from control_api.errors import ApiError
from core.keys import ApiKey
from core.settings import Settings

log = structlog.get_logger(__name__)
#: While Redis is unreachable, the warning is logged at most this often.
_WARN_EVERY_S = 10.0

# KEYS[1]: theoretical arrival time (µs) of the next request. ARGV: emission interval (µs) and burst
# tolerance (µs). Returns {allowed, retry_after µs, remaining, reset µs}; integers as %.0f strings
# because Lua numbers are doubles and tostring() rounds µs timestamps.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, string.format('%.0f', allow_at - now), 0, string.format('%.0f', tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now - allow_at) / interval)
return {1, '0', remaining, string.format('%.0f', new_tat - now)}
"""


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


class KeyRateLimiter:
    """Decides, in one Redis round trip, whether a key may make one more request now."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._script: Any = client.register_script(_GCRA)
        self._warned_at = -_WARN_EVERY_S

    def limits(self, key: ApiKey) -> tuple[float, int]:
        """(requests per second, burst) for the key; a rate of 0 means unlimited.

        A key with a rate of its own gets one second of it as its burst, so a key limited to 10/s
        cannot spend the farm-wide burst at once.
        """
        if key.rate_limit_per_s is not None:
            return key.rate_limit_per_s, max(1, math.ceil(key.rate_limit_per_s))
        return self.settings.rate_limit_per_s, max(1, self.settings.rate_limit_burst)

    async def check(self, key: ApiKey) -> Verdict | None:
        """The verdict for one request, or None when the key is unlimited or Redis did not answer."""
        rate, burst = self.limits(key)
        if rate <= 0:
            return None
        interval_us = max(1, round(1_000_000 / rate))
        redis_key = f"{self.settings.redis_namespace}:ratelimit:{key.id}"
        try:
            allowed, retry_us, remaining, reset_us = await self._script(
                keys=[redis_key], args=[interval_us, interval_us * burst]
            )
        except (redis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > _WARN_EVERY_S:  # one line per interval, not one per request
                self._warned_at = now
                log.warning("rate_limit_unavailable", error=str(exc), detail="requests are let through")
            return None
        return Verdict(
            allowed=bool(int(allowed)),
            limit=burst,
            remaining=int(remaining),
            retry_after_s=int(retry_us) / 1_000_000,
            reset_s=int(reset_us) / 1_000_000,
        )


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

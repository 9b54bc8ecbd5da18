"""A limit per client address on requests that fail authentication, applied before authentication.

A flood of bad keys (none, malformed, unknown, revoked) from one address spends that address's budget
of failures: JOBYARD_AUTH_FAILURES_PER_S with bursts of JOBYARD_AUTH_FAILURES_BURST, shared by every
API process through Redis with the key limiter's GCRA script (control_api/ratelimit.py). Once it is
spent, the address's requests are answered 429 with Retry-After before any key is hashed or looked
up, from a local note of how long the address is blocked: a refused request costs no Redis call, no
thread and no query. Requests that authenticate never spend the budget, so a busy client is never
slowed by it; and a request carrying a key this process already knows to be live still goes through
from a blocked address, so a good client behind the same NAT as a bad one keeps working.

The address is the connection's peer, or what a trusted proxy says (control_api/forwarded.py).
If Redis does not answer, failures are not counted (fail open), as with the key limiter.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

import redis
import redis.asyncio
import structlog

from control_api.errors import ApiError
from control_api.ratelimit import GCRA_SCRIPT
from core.settings import Settings

log = structlog.get_logger(__name__)
#: Blocked addresses remembered per process; past it the oldest notes go (the budget is in Redis).
MAX_BLOCKED = 100_000
#: While Redis is unreachable, the warning is logged at most this often.
_WARN_EVERY_S = 10.0


class AddressLimiter:
    """Counts one process's failed authentications per address against the shared budget."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.rate = settings.auth_failures_per_s
        self.burst = max(1, settings.auth_failures_burst)
        self.prefix = f"{settings.redis_namespace}:authfail:"
        self._script: Any = client.register_script(GCRA_SCRIPT)
        self._blocked: OrderedDict[str, float] = OrderedDict()
        self._warned_at = -_WARN_EVERY_S

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it is not blocked (no Redis call)."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[address]
            return None
        return left

    async def failed(self, address: str) -> float | None:
        """Count one failed authentication; the seconds to wait when that spent the budget, else None."""
        if self.rate <= 0:
            return None
        interval_us = max(1, round(1_000_000 / self.rate))
        try:
            granted, retry_us, _, _ = await self._script(
                keys=[self.prefix + address], args=[interval_us, interval_us * self.burst, 1]
            )
        except (redis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > _WARN_EVERY_S:
                self._warned_at = now
                log.warning("auth_failure_limit_unavailable", error=str(exc), detail="failures not counted")
            return None
        if int(granted) > 0:
            return None
        wait = max(int(retry_us) / 1_000_000, 0.001)
        self._blocked[address] = time.monotonic() + wait
        self._blocked.move_to_end(address)
        while len(self._blocked) > MAX_BLOCKED:
            self._blocked.popitem(last=False)
        return wait


def too_many_failures(retry_after_s: float) -> ApiError:
    """The 429 a blocked address gets."""
    error = ApiError(
        429,
        "too_many_auth_failures",
        "too many requests from this address failed authentication; "
        f"retry after {retry_after_s:.2f} s with a valid API key",
        {"retry_after_s": round(retry_after_s, 3)},
    )
    error.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return error

"""Politeness: at most N pages of one host loading at once, across every worker, through Redis.

A slot is a member of a sorted set per host, scored with the time its lease runs out. A worker that
dies holding one (SIGKILL, OOM) cannot keep it: expired members are dropped by the next acquire.
A worker waits up to ``max_wait_s`` for a slot; past that the job waits in Postgres instead
(RateLimitedError, free of the retry budget), so a crawl of one site never fills every worker
thread with jobs that only wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from core.errors import RateLimitedError

#: Longest a worker thread waits for a slot before the job goes back to wait in Postgres.
MAX_WAIT_S = 10.0
#: How long a job that found the host busy waits in Postgres before it tries again (at least its
#: type's shortest backoff: 5 s for scrapes).
BUSY_RETRY_AFTER_S = 2.0

# KEYS[1]: the host's slots. ARGV: the limit, the lease (ms), the holder's token.
# Returns 1 when the token holds a slot (taken now or already), else 0.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  return 1
end
return 0
"""


class DomainSlots:
    """``limit`` concurrent holders per host; ``limit <= 0`` means no limit."""

    def __init__(self, client: redis.Redis, namespace: str, limit: int, max_wait_s: float = MAX_WAIT_S):
        self.client = client
        self.prefix = f"{namespace}:scrape:host:"
        self.limit = limit
        self.max_wait_s = max_wait_s
        self._script: Any = client.register_script(_ACQUIRE)

    def _acquire(self, key: str, token: str, lease_ms: int) -> bool:
        return bool(int(self._script(keys=[key], args=[self.limit, lease_ms, token])))

    @contextmanager
    def hold(self, host: str, token: str, lease_s: float) -> Iterator[None]:
        """Hold one of ``host``'s slots for the block; RateLimitedError if none frees up in time."""
        if self.limit <= 0:
            yield
            return
        key = self.prefix + host
        lease_ms = max(int(lease_s * 1000), 1)
        deadline = time.monotonic() + self.max_wait_s
        while not self._acquire(key, token, lease_ms):
            if time.monotonic() >= deadline:
                raise RateLimitedError(
                    f"{self.limit} pages of {host} are loading already (JOBYARD_SCRAPE_DOMAIN_CONCURRENCY)",
                    retry_after=BUSY_RETRY_AFTER_S,
                    code="domain_busy",
                )
            time.sleep(random.uniform(0.02, 0.1))  # noqa: S311 - jitter, not a secret
        try:
            yield
        finally:
            self.client.zrem(key, token)

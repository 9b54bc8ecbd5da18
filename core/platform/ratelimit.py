"""A send rate shared by every worker through Redis: GCRA, one key per sending number.

Each send reserves the next free slot (slots are 1/rate apart, on Redis's clock so hosts need not
agree). A slot within ``max_wait_s`` is taken and waited for in the worker, which smooths a burst
into an even stream; a slot further out is not taken and the job waits in Postgres instead
(RateLimitedError, free of the retry budget). Unlike a fixed one-second window it never lets a
whole second's quota out in the same millisecond, which is what the provider's limit punishes.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from core.errors import RateLimitedError

#: Longest a worker thread sleeps for its slot; past this, the job waits in Postgres instead.
MAX_WAIT_S = 1.0

# KEYS[1]: the theoretical arrival time (µs) of the next free slot. ARGV: slot spacing and the
# longest acceptable wait, both µs. Returns {taken (0/1), wait µs}. Integers as %.0f strings: Lua
# numbers are doubles, and tostring() would round a µs timestamp to 14 digits.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return {0, string.format('%.0f', wait)} end
local ttl = math.ceil((wait + interval) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
return {1, string.format('%.0f', wait)}
"""


class RateLimiter:
    """At most ``rate_per_s`` acquisitions per second on ``key``, across processes and hosts."""

    def __init__(self, client: redis.Redis, key: str, rate_per_s: float, max_wait_s: float = MAX_WAIT_S):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.key = key
        self.interval_us = max(round(1_000_000 / rate_per_s), 1)
        self.max_wait_us = round(max_wait_s * 1_000_000)
        self._script: Any = client.register_script(_GCRA)

    def acquire(self) -> None:
        """Return when a slot has come (sleeping at most max_wait_s); RateLimitedError if none is near."""
        taken, wait_us = self._script(keys=[self.key], args=[self.interval_us, self.max_wait_us])
        wait = int(wait_us) / 1_000_000
        if not int(taken):
            raise RateLimitedError(
                f"over the send rate for this number; next free slot in {wait:.2f} s", retry_after=wait
            )
        if wait > 0:
            time.sleep(wait)

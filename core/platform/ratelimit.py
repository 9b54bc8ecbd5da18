"""A send rate shared by every worker through Redis: GCRA, one key per sending number.

Each send reserves the next free slot (slots are 1/rate apart, on Redis's clock so hosts need not
agree). A slot within ``max_wait_s`` is taken and waited for in the worker, which smooths a burst
into an even stream; a slot further out is not taken and the job waits in Postgres instead
(RateLimitedError, free of the retry budget). Unlike a fixed one-second window it never lets a
whole second's quota out in the same millisecond, which is what the provider's limit punishes.

The script (lua/gcra.lua) is the one every rate limit runs: the API's per key and per address too.
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

import redis

from core.errors import RateLimitedError

#: Longest a worker thread sleeps for its slot; past this, the job waits in Postgres instead.
MAX_WAIT_S = 1.0

#: The one GCRA script of every rate limit (the API's too), read once: see lua/gcra.lua.
GCRA_SCRIPT = (files("core.platform") / "lua" / "gcra.lua").read_text(encoding="utf-8")


class RateLimiter:
    """At most ``rate_per_s`` acquisitions per second on ``key``, across processes and hosts."""

    def __init__(self, client: redis.Redis, key: str, rate_per_s: float, max_wait_s: float = MAX_WAIT_S):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.key = key
        self.interval_us = max(round(1_000_000 / rate_per_s), 1)
        self.max_wait_us = round(max_wait_s * 1_000_000)
        self._script: Any = client.register_script(GCRA_SCRIPT)

    def acquire(self) -> None:
        """Return when a slot has come (sleeping at most max_wait_s); RateLimitedError if none is near."""
        # One slot, taken when it comes within max_wait: a tolerance of max_wait and one interval.
        taken, _, _, _, wait_us = self._script(
            keys=[self.key], args=[self.interval_us, self.max_wait_us + self.interval_us, 1]
        )
        wait = int(wait_us) / 1_000_000
        if not int(taken):
            raise RateLimitedError(
                f"over the send rate for this number; next free slot in {wait:.2f} s", retry_after=wait
            )
        if wait > 0:
            time.sleep(wait)

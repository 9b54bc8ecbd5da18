"""A limit per client address on requests that fail authentication, applied before authentication.

A flood of bad keys (none, malformed, unknown, revoked) from one address spends that address's budget
of failures: JOBYARD_AUTH_FAILURES_PER_S with bursts of JOBYARD_AUTH_FAILURES_BURST, shared by every
API process through Redis with the GCRA script of every rate limit (core/platform/lua/gcra.lua).
Once it is spent, the address's requests are answered 429 with Retry-After before any key is hashed
or looked up, from a local note of how long the address is blocked: a refused request costs no Redis
call, no thread and no query. Requests that authenticate never spend the budget, so a busy client
is never slowed by it; and a request carrying a key this process already knows to be live still goes through
from a blocked address, so a good client behind the same NAT as a bad one keeps working.

The address is the connection's peer, or what a trusted proxy says (control_api/forwarded.py).
If Redis does not answer, failures are not counted (fail open), as with the key limiter.

A blocked address's requests to the key-authenticated API are answered by ``AddressGate``, a plain
ASGI middleware in front of everything else: a refusal costs a dictionary lookup and two ASGI
messages, not a request object, an exception and its handler. And it is not answered at once: the
429 waits until the address may try again (at most ``MAX_HOLD_S``, for at most ``MAX_HELD``
requests at a time per process), a timer that costs nothing while it runs. A client that floods over
a few connections then gets one answer per connection per wait instead of thousands a second, so
the flood takes next to nothing of the event loop a good client shares with it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import Any

import msgspec
import redis
import redis.asyncio
import structlog
from litestar.types import ASGIApp, Receive, Scope, Send

from control_api.auth_metrics import AUTH_REFUSALS
from control_api.errors import ApiError
from control_api.headers import add_security_headers
from core.access.keys import KeyCache, carried_secret, well_formed
from core.platform.ratelimit import GCRA_SCRIPT
from core.platform.settings import Settings

log = structlog.get_logger(__name__)
#: Blocked addresses remembered per process; past it the oldest notes go (the budget is in Redis).
MAX_BLOCKED = 100_000
#: Longest a blocked address's 429 is held back (its Retry-After is never shorter).
MAX_HOLD_S = 1.0
#: Most 429s held back at once per process; beyond, they are answered at once.
MAX_HELD = 1_000
#: How long after its block an address stays on probation: its requests (but those with a key this
#: process knows to be live) go into the app one at a time, so the requests held back during the
#: block, all answered at its end and all sent again at once, do not all reach authentication.
PROBATION_S = 10.0
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
        #: 429s being held back now (AddressGate).
        self.held = 0
        #: Per address on probation: set when its request being tried is done.
        self.trying: dict[str, asyncio.Event] = {}

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` before a refusal, unless MAX_HELD refusals wait already."""
        if self.held >= MAX_HELD or seconds <= 0:
            return
        self.held += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.held -= 1

    def any_blocked(self) -> bool:
        """Whether some address may be blocked now: False costs the gate nothing more."""
        return bool(self._blocked)

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it is not blocked (no Redis call)."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left > 0:
            return left
        if -left > PROBATION_S:
            del self._blocked[address]
        return None

    def on_probation(self, address: str) -> bool:
        """Whether ``address`` was blocked lately (its requests are then tried one at a time)."""
        return address in self._blocked

    async def failed(self, address: str) -> float | None:
        """Count one failed authentication; the seconds to wait when that spent the budget, else None."""
        if self.rate <= 0:
            return None
        interval_us = max(1, round(1_000_000 / self.rate))
        try:
            granted, retry_us, _, _, _ = await self._script(
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


def _message(retry_after_s: float) -> str:
    return (
        "too many requests from this address failed authentication; "
        f"retry after {retry_after_s:.2f} s with a valid API key"
    )


def too_many_failures(retry_after_s: float) -> ApiError:
    """The 429 a blocked address gets."""
    error = ApiError(
        429, "too_many_auth_failures", _message(retry_after_s), {"retry_after_s": round(retry_after_s, 3)}
    )
    error.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return error


#: Paths the gate watches: the key-authenticated API and the dashboard's login form. Probes and
#: provider webhooks are left alone (they are not how keys are guessed).
def _gated(scope: Scope) -> bool:
    path: str = scope["path"]
    if path.startswith("/v1/") or path == "/metrics":
        return True
    return path == "/dashboard/login" and scope.get("method") == "POST"


def _carried_secret(scope: Scope) -> str:
    headers = {bytes(k).lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", ())}
    return carried_secret(headers.get(b"authorization", ""), headers.get(b"x-api-key")) or ""


class AddressGate:
    """Answers 429 to a blocked address before the app routes the request (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state if scope["type"] == "http" else None  # type: ignore[comparison-overlap]
        limiter: AddressLimiter | None = getattr(state, "address_limiter", None)
        if limiter is None or not limiter.any_blocked() or not _gated(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if not limiter.on_probation(address) or _known(scope, state):
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + MAX_HOLD_S
        while True:
            wait = limiter.retry_after(address)
            if wait is not None:  # blocked: answer when it may try again (or at the deadline)
                AUTH_REFUSALS.labels("address_limited").inc()
                await limiter.hold(min(wait, deadline - time.monotonic()))
                await _refuse(scope, send, limiter.retry_after(address) or 0.0)
                return
            trying = limiter.trying.get(address)
            if trying is None:
                break
            # Another request of this address is being tried: wait for its outcome.
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await trying.wait()
            except TimeoutError:
                AUTH_REFUSALS.labels("address_limited").inc()
                await _refuse(scope, send, 1.0)
                return
        done = limiter.trying[address] = asyncio.Event()
        try:
            await self.app(scope, receive, send)
        finally:
            del limiter.trying[address]
            done.set()


def _known(scope: Scope, state: Any) -> bool:
    secret = _carried_secret(scope)
    cache: KeyCache = state.key_cache
    return well_formed(secret) and cache.known(secret)


async def _refuse(scope: Scope, send: Send, wait: float) -> None:
    body = msgspec.json.encode(
        {
            "error": {
                "code": "too_many_auth_failures",
                "message": _message(wait),
                "details": {"retry_after_s": round(wait, 3)},
            }
        }
    )
    start: Any = {
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        ],
    }
    await add_security_headers(start, scope)
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})

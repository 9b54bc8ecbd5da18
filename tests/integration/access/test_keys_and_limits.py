"""API keys across real API processes: revocation within a second on every process, rotation with a
grace period, last-used time written sparingly, and a per-key rate limit the processes share."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import httpx
import redis
import redis.asyncio
from click.testing import CliRunner
from litestar.testing import TestClient

from control_api.ratelimit import KeyRateLimiter, Verdict
from core import cli
from core.access.keys import SCOPES, ApiKey
from core.engine.jobs import utcnow
from core.platform.settings import Settings
from tests.integration.conftest import Farm
from tests.services import ROOT, settings_env, wait_for


def _get(base: str, secret: str) -> httpx.Response:
    return httpx.get(
        f"{base}/v1/jobs", params={"limit": 1}, headers={"Authorization": f"Bearer {secret}"}, timeout=5
    )


def _new_key(api: TestClient[Any], **body: Any) -> dict[str, Any]:
    r = api.post("/v1/keys", json={"name": "caller", "scopes": ["jobs:read"], **body})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["secret"].startswith("jy_") and created["key"]["prefix"] == created["secret"][:10]
    return created


def test_two_api_processes_refuse_a_revoked_key_within_a_second_and_share_rate_limits(
    api: TestClient[Any], farm: Farm
) -> None:
    bases = [farm.api()[1], farm.api()[1]]
    _revoked_key_is_refused_everywhere_within_a_second(api, bases)
    _the_rate_limit_is_shared(api, bases)


def test_one_api_process_rotates_keys_and_records_their_use(api: TestClient[Any], farm: Farm) -> None:
    _, base = farm.api()
    _a_rotated_keys_old_value_works_for_the_grace_period_then_stops(api, base)
    _last_used_is_recorded_once_per_interval_not_per_request(api, base)


def _revoked_key_is_refused_everywhere_within_a_second(api: TestClient[Any], bases: list[str]) -> None:
    created = _new_key(api)
    secret = created["secret"]
    for base in bases:  # both processes have the key in their cache now
        assert _get(base, secret).status_code == 200
    revoked = api.post(f"/v1/keys/{created['key']['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    start = time.monotonic()
    lag = {}
    while len(lag) < len(bases) and time.monotonic() - start < 5:
        for base in bases:
            if base not in lag and _get(base, secret).status_code == 401:
                lag[base] = time.monotonic() - start
    assert len(lag) == 2 and max(lag.values()) < 1.0, lag
    r = _get(bases[0], secret)
    assert r.json()["error"] == {
        "code": "unauthorized",
        "message": "the API key is unknown, revoked or expired",
        "details": None,
    }


def _a_rotated_keys_old_value_works_for_the_grace_period_then_stops(api: TestClient[Any], base: str) -> None:
    created = _new_key(api, scopes=["jobs:read", "jobs:write"], rate_limit_per_s=50)
    old_secret = created["secret"]
    r = api.post(f"/v1/keys/{created['key']['id']}/rotate", json={"grace_seconds": 2})
    rotated_at = time.monotonic()
    assert r.status_code == 201, r.text
    rotated = r.json()
    new_secret = rotated["secret"]
    assert new_secret != old_secret
    assert (
        rotated["key"]["scopes"] == ["jobs:read", "jobs:write"] and rotated["key"]["rate_limit_per_s"] == 50
    )
    assert rotated["previous"]["replaced_by"] == rotated["key"]["id"]
    assert _get(base, new_secret).status_code == 200
    assert _get(base, old_secret).status_code == 200  # still within the grace period

    wait_for(
        lambda: _get(base, old_secret).status_code == 401, timeout=10, interval=0.05, what="old key refused"
    )
    stopped_after = time.monotonic() - rotated_at
    assert 2.0 <= stopped_after < 3.5, stopped_after
    assert _get(base, new_secret).status_code == 200
    # A rotated key cannot be rotated again (that would fork the chain of replacements).
    again = api.post(f"/v1/keys/{created['key']['id']}/rotate", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_rotatable"


def _last_used_is_recorded_once_per_interval_not_per_request(api: TestClient[Any], base: str) -> None:
    created = _new_key(api)
    key_id, secret = created["key"]["id"], created["secret"]
    assert created["key"]["last_used_at"] is None
    assert _get(base, secret).status_code == 200
    first = wait_for(lambda: api.get(f"/v1/keys/{key_id}").json()["last_used_at"], what="last_used_at")
    for _ in range(20):
        assert _get(base, secret).status_code == 200
    time.sleep(1.1)  # later requests fall inside the 60 s interval: no further write
    assert _get(base, secret).status_code == 200
    assert api.get(f"/v1/keys/{key_id}").json()["last_used_at"] == first
    listed = api.get("/v1/keys").json()["items"]
    assert "secret" not in listed[0] and "key_hash" not in listed[0]


def _the_rate_limit_is_shared(api: TestClient[Any], bases: list[str]) -> None:
    limited = _new_key(api, rate_limit_per_s=5)["secret"]  # 5/s, a burst of 5
    statuses: list[int] = []
    refusals: list[httpx.Response] = []
    start = time.monotonic()
    for i in range(40):
        r = _get(bases[i % 2], limited)
        statuses.append(r.status_code)
        if r.status_code == 429:
            refusals.append(r)
    elapsed = time.monotonic() - start
    allowed = statuses.count(200)
    assert set(statuses) == {200, 429}
    # One budget for both processes: the burst plus what the rate refilled meanwhile. Two separate
    # budgets would have let at least ten through at once.
    assert allowed <= 5 + 5 * elapsed + 1, (allowed, elapsed)
    assert {str(r.url).split("/v1")[0] for r in refusals} == set(bases)  # both processes refused
    refused = refusals[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert refused.headers["RateLimit-Limit"] == "5" and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == "5"
    time.sleep(retry_after)
    ok = _get(bases[0], limited)
    assert ok.status_code == 200 and int(ok.headers["RateLimit-Remaining"]) >= 0

    # The default is generous, and a key can be exempted.
    default = _new_key(api)["secret"]
    assert _get(bases[1], default).headers["RateLimit-Limit"] == "10000"
    unlimited = _new_key(api, rate_limit_per_s=0)["secret"]
    answers = [_get(bases[i % 2], unlimited) for i in range(20)]
    assert all(a.status_code == 200 and "RateLimit-Limit" not in a.headers for a in answers)


def test_keys_api_validates_and_keeps_scopes_to_the_known_ones(
    api: TestClient[Any], settings: Settings
) -> None:
    bad = api.post("/v1/keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422
    assert api.post("/v1/keys", json={"name": "x", "scopes": []}).status_code == 422
    assert api.post("/v1/keys", json={"name": "x", "scopes": ["ops"], "admin": True}).status_code == 422
    expiring = _new_key(api, expires_in_seconds=3600)
    assert expiring["key"]["expires_at"] is not None
    assert sorted(SCOPES) == sorted(["jobs:read", "jobs:write", "ops", "ops:read", "admin"])
    assert api.get(f"/v1/keys/{expiring['key']['id']}").json()["name"] == "caller"
    assert api.post("/v1/keys/00000000-0000-0000-0000-000000000000/rotate").status_code == 404


def test_the_command_line_rotates_a_key_and_makes_data_keys(api: TestClient[Any], settings: Settings) -> None:
    created = _new_key(api)
    old = created["secret"]

    def jobyard(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "core.cli", *args],
            env=settings_env(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = jobyard("keys", "rotate", created["key"]["prefix"], "--grace-seconds", "0")
    new = out.strip().splitlines()[-1]
    assert new.startswith("jy_") and new != old
    auth = {"Authorization": f"Bearer {new}"}
    assert api.get("/v1/jobs", headers=auth).status_code == 200
    wait_for(lambda: api.get("/v1/jobs", headers={"Authorization": f"Bearer {old}"}).status_code == 401)
    listing = jobyard("keys", "list")
    assert created["key"]["prefix"] in listing and "expired" in listing and old not in listing
    generated = CliRunner().invoke(cli.main, ["data-key", "generate"])
    assert generated.exit_code == 0 and len(base64.b64decode(generated.output.strip())) == 32


def test_a_busy_key_leases_from_the_shared_budget_without_overspending_it(settings: Settings) -> None:
    """Two API processes' limiters (one each) on one real Redis and a key asked far above its rate:
    within its budget Redis is asked about once per lease, not once per request; past it the shared
    budget is spent fully and not overspent by more than the leases in flight."""
    rate = 2000.0  # and a burst of one second of it
    key = ApiKey(
        id=uuid.uuid4(),
        name="busy",
        prefix="jy_busy",
        scopes=["jobs:write"],
        created_at=utcnow(),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
        rate_limit_per_s=rate,
    )
    probe = redis.Redis.from_url(str(settings.redis_url))
    max_lease = KeyRateLimiter.max_lease(rate, 2000)
    assert max_lease == 40

    async def flood() -> tuple[list[Verdict | None], int, list[Verdict | None], float]:
        clients = [redis.asyncio.Redis.from_url(str(settings.redis_url)) for _ in range(2)]
        limiters = [KeyRateLimiter(c, settings) for c in clients]

        async def waves(n: int) -> list[Verdict | None]:
            out: list[Verdict | None] = []
            for _ in range(n):  # 200 requests in flight at a time, half on each process
                out += await asyncio.gather(*(limiters[i % 2].check(key) for i in range(200)))
            return out

        try:
            started = time.monotonic()
            calls_before = _script_calls(probe)
            within = await waves(8)  # 1,600: within the burst
            calls = _script_calls(probe) - calls_before
            beyond = await waves(32)  # 6,400 more: far past it
            return within, calls, beyond, time.monotonic() - started
        finally:
            for c in clients:
                await c.aclose()

    within, calls, beyond, elapsed = asyncio.run(flood())
    assert all(v is not None and v.allowed for v in within)
    assert calls <= len(within) / 10, calls
    assert all(v is not None for v in beyond)  # Redis answered every refill
    allowed = len(within) + sum(1 for v in beyond if v and v.allowed)
    refused = [v for v in beyond if v and not v.allowed]
    # Not overspent: the burst, what the rate refilled meanwhile, and at most a lease per process.
    assert allowed <= 2000 + rate * elapsed + 2 * max_lease, (allowed, elapsed)
    # Not underspent: at least the whole burst got through.
    assert allowed >= 2000, (allowed, elapsed)
    assert refused and all(v.retry_after_s > 0 and v.remaining == 0 for v in refused)


#: Requests of one key whose other steps run at any moment, around each refill of its small lease.
_REQUESTS_AROUND_REFILLS = textwrap.dedent(
    """
    import asyncio, random, sys, uuid
    import redis.asyncio
    from control_api.ratelimit import KeyRateLimiter
    from core.platform.settings import Settings

    async def main(url: str) -> None:
        limiter = KeyRateLimiter(redis.asyncio.Redis.from_url(url), Settings(redis_url=url))
        budget = uuid.uuid4()  # 100/s with a large burst: leases of at most 2 requests

        async def requests() -> None:
            for _ in range(200):
                await asyncio.sleep(random.random() / 1000)
                verdict = await limiter.spend(budget, 100.0, 100_000)
                assert verdict is not None and verdict.allowed

        await asyncio.gather(*(requests() for _ in range(32)))
        print("all answered")

    asyncio.run(main(sys.argv[1]))
    """
)


def test_requests_arriving_as_a_refill_finishes_never_hang_the_api_process(settings: Settings) -> None:
    """A request that found the lease spent in the moment between a refill finishing and its
    callback running awaited the finished refill again, which returns without yielding: the event
    loop spun at full CPU and the API answered nothing more. Run in a process of its own, since a
    loop that never yields cannot be timed out from inside."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _REQUESTS_AROUND_REFILLS, str(settings.redis_url)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            "6,400 requests of 32 clients were not all answered in 60 s: the limiter hung"
        ) from None
    assert done.returncode == 0 and "all answered" in done.stdout, done.stderr


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

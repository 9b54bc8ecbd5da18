"""A tenant's quotas (core/access/quotas.py): set by an admin and read by the tenant's ops keys; a cap
on queued jobs refusing an enqueue whole (429 tenant_queue_full), a request rate shared by the
tenant's keys (429 tenant_rate_limited), a cap on running jobs per queue holding the tenant's jobs
back and no one else's, and the mirror in Redis rebuilt by the scheduler's sync."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime
from typing import Any

import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from core.access.quotas import LimitOverrides, set_limits, sync_limits
from core.engine.broker import Publication, build_broker, publish
from core.engine.lanes import MAX_QUEUED, MAX_RUNNING, WEIGHTS, running_key, tenant_limits_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, make_key
from tests.services import wait_for


def _headers(settings: Settings, tenant: str, *scopes: str) -> dict[str, str]:
    key = make_key(
        settings, *(scopes or ("jobs:write", "jobs:read")), name=f"{tenant}-{uuid.uuid4()}", tenant=tenant
    )
    return {"Authorization": f"Bearer {key}"}


def _jobs(n: int, **extra: Any) -> dict[str, Any]:
    return {"jobs": [{"type": "test_effect", "payload": {"marker": "m"}, **extra} for _ in range(n)]}


def test_an_admin_sets_a_tenants_limits_and_its_ops_keys_read_them(
    api: TestClient[Any], settings: Settings, redis_conn: redis.Redis
) -> None:
    ns = settings.redis_namespace
    untouched = api.get("/v1/tenants/shop-a/limits").json()
    assert untouched["max_queued"] == settings.tenant_max_queued and untouched["weight"] == 1
    assert untouched["overrides"] == dict.fromkeys(
        ("max_queued", "max_running_per_queue", "rate_limit_per_s", "weight")
    )

    r = api.put("/v1/tenants/shop-a/limits", json={"max_queued": 10, "weight": 3})
    assert r.status_code == 200, r.text
    limits = r.json()
    assert (limits["max_queued"], limits["weight"], limits["rate_limit_per_s"]) == (10, 3, 0.0)
    assert limits["overrides"]["max_running_per_queue"] is None and limits["updated_by"] is not None
    assert redis_conn.hget(tenant_limits_key(ns, WEIGHTS), "shop-a") == b"3"
    assert redis_conn.hget(tenant_limits_key(ns, MAX_QUEUED), "shop-a") == b"10"

    ops_a = _headers(settings, "shop-a", "ops")
    assert api.get("/v1/tenants/shop-a/limits", headers=ops_a).json() == limits
    other = api.get("/v1/tenants/shop-b/limits", headers=ops_a)
    assert (other.status_code, other.json()["error"]["code"]) == (404, "tenant_not_found")
    assert api.put("/v1/tenants/shop-a/limits", json={"weight": 9}, headers=ops_a).status_code == 403
    for bad in ({"weight": 0}, {"max_queued": -1}, {"rate_limit_per_s": "fast"}, {"max_queud": 3}):
        assert api.put("/v1/tenants/shop-a/limits", json=bad).status_code == 422, bad
    assert api.get("/v1/tenants/Shop_A/limits").json()["error"]["code"] == "invalid_tenant"

    # A field left out takes the farm's setting again, in Redis too.
    reset = api.put("/v1/tenants/shop-a/limits", json={}).json()
    assert (reset["max_queued"], reset["weight"]) == (settings.tenant_max_queued, 1)
    assert redis_conn.hget(tenant_limits_key(ns, WEIGHTS), "shop-a") is None


def test_an_enqueue_past_the_tenants_cap_on_queued_jobs_is_refused_whole(
    api: TestClient[Any], settings: Settings
) -> None:
    assert api.put("/v1/tenants/shop-a/limits", json={"max_queued": 5}).status_code == 200
    shop_a, shop_b = _headers(settings, "shop-a"), _headers(settings, "shop-b")
    assert api.post("/v1/jobs/batch", json=_jobs(3), headers=shop_a).status_code == 201

    refused = api.post("/v1/jobs/batch", json=_jobs(3), headers=shop_a)
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "5"
    error = refused.json()["error"]
    assert error["code"] == "tenant_queue_full"
    assert error["details"] == {"tenant": "shop-a", "queued": 3, "max_queued": 5, "adding": 3}
    assert _count(settings, "shop-a") == 3  # all or nothing

    for _ in range(2):
        assert api.post("/v1/jobs", json=_jobs(1)["jobs"][0], headers=shop_a).status_code == 201
    full = api.post("/v1/jobs", json=_jobs(1)["jobs"][0], headers=shop_a)
    assert (full.status_code, full.json()["error"]["code"]) == (429, "tenant_queue_full")
    sequence = {"business_key": "o", "anchor_at": datetime.now().astimezone().isoformat(), "steps": [{"after_seconds": 0, "type": "test_effect", "payload": {"marker": "m"}}]}  # fmt: skip
    assert api.post("/v1/sequences", json=sequence, headers=shop_a).status_code == 429
    # Jobs due later wait in Postgres and count only once published; other tenants are not touched.
    assert api.post("/v1/jobs/batch", json=_jobs(3, delay_seconds=3600), headers=shop_a).status_code == 201
    assert api.post("/v1/jobs/batch", json=_jobs(20), headers=shop_b).status_code == 201


def test_the_farms_cap_on_queued_jobs_applies_to_a_tenant_without_its_own(
    settings: Settings, admin_key: str
) -> None:
    from control_api.app import create_app

    with TestClient(create_app(settings.replace(tenant_max_queued=2), configure_logs=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        assert client.post("/v1/jobs/batch", json=_jobs(2)).status_code == 201
        refused = client.post("/v1/jobs/batch", json=_jobs(1))
        assert refused.json()["error"]["details"]["max_queued"] == 2
        # 0 lifts the cap for one tenant.
        assert client.put("/v1/tenants/default/limits", json={"max_queued": 0}).status_code == 200
        assert client.post("/v1/jobs/batch", json=_jobs(50)).status_code == 201


def test_a_tenants_keys_share_its_request_rate(api: TestClient[Any], settings: Settings) -> None:
    assert api.put("/v1/tenants/shop-a/limits", json={"rate_limit_per_s": 2}).status_code == 200
    first, second = _headers(settings, "shop-a"), _headers(settings, "shop-a")
    assert api.get("/v1/jobs", headers=first).status_code == 200
    assert api.get("/v1/jobs", headers=second).status_code == 200
    refused = api.get("/v1/jobs", headers=first)  # the third in well under half a second: over 2/s
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "tenant_rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another tenant's keys have budgets of their own.
    assert api.get("/v1/jobs", headers=_headers(settings, "shop-b")).status_code == 200


def test_a_running_cap_holds_back_the_tenants_jobs_and_no_one_elses(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    farm.settings = settings.replace(worker_queues=("test_sleep",))
    farm.worker(threads=4)
    assert api.put("/v1/tenants/shop-a/limits", json={"max_running_per_queue": 1}).status_code == 200
    sleep = {"type": "test_sleep", "payload": {"seconds": 0.3}}
    api.post("/v1/jobs/batch", json={"jobs": [sleep] * 4}, headers=_headers(settings, "shop-a"))
    api.post("/v1/jobs/batch", json={"jobs": [sleep] * 3}, headers=_headers(settings, "shop-b"))
    wait_for(lambda: _count(settings, None, "succeeded") == 7, timeout=30, what="7 jobs to succeed")

    runs = _runs(settings)
    a = sorted(runs["shop-a"])
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(a)), a  # one at a time
    # shop-b's ran beside shop-a's first one, on the other threads.
    assert max(start for start, _ in runs["shop-b"]) < a[0][1]


def test_a_consumer_whose_heartbeat_stopped_holds_nothing_against_a_running_cap(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    ns = settings.redis_namespace
    redis_conn.hset(tenant_limits_key(ns, MAX_RUNNING), "shop-a", 1)
    pubs = [Publication(uuid.uuid4(), "q", "q", str(uuid.uuid4()), None, "shop-a") for _ in range(3)]
    publish(broker, pubs)
    gone, live = build_broker(settings), build_broker(settings)
    try:
        assert len(gone.fetch("q", 10)) == 1  # its cap: one at a time
        assert live.fetch("q", 10) == []
        redis_conn.zadd(f"{ns}:__heartbeats__", {gone.broker_id: 0})  # it stopped beating long ago
        (taken,) = live.fetch("q", 10)
        assert redis_conn.hkeys(running_key(ns, "q", "shop-a")) == [
            json.loads(taken)["options"]["redis_message_id"].encode()
        ]
        # Its ack frees the room.
        live.ack("q", [(json.loads(taken)["options"]["redis_message_id"], "shop-a")])
        assert len(live.fetch("q", 10)) == 1
    finally:
        gone.client.close()
        live.client.close()


def test_the_scheduler_writes_the_limits_to_redis_again_after_it_lost_them(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    with transaction(settings) as conn:
        set_limits(conn, settings, "shop-a", LimitOverrides(max_queued=7, weight=2), None)
    redis_conn.delete(tenant_limits_key(settings.redis_namespace, MAX_QUEUED))  # a flush, say
    redis_conn.hset(tenant_limits_key(settings.redis_namespace, WEIGHTS), "gone-tenant", 5)

    sync_limits(settings, redis_conn)

    assert redis_conn.hgetall(tenant_limits_key(settings.redis_namespace, MAX_QUEUED)) == {b"shop-a": b"7"}
    assert redis_conn.hgetall(tenant_limits_key(settings.redis_namespace, WEIGHTS)) == {b"shop-a": b"2"}


def _count(settings: Settings, tenant: str | None, status: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(jobs)
    if tenant:
        query = query.where(jobs.c.tenant == tenant)
    if status:
        query = query.where(jobs.c.status == status)
    with transaction(settings) as conn:
        return int(conn.execute(query).scalar_one())


def _runs(settings: Settings) -> dict[str, list[tuple[datetime, datetime]]]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(jobs.c.tenant, jobs.c.started_at, jobs.c.finished_at)).all()
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for tenant, started, finished in rows:
        out.setdefault(tenant, []).append((started, finished))
    return out

"""Quieting a worker, with real worker processes: the quiet one finishes the job it runs (one
attempt, nothing handed back), gives the message it had fetched but not started back to Redis, and
starts nothing more; the other worker runs everything else. And `GET /v1/workers` as each key sees it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, job_attempts
from tests.integration.conftest import Farm, JobWaiter, make_key, waiting
from tests.services import wait_for


def _pids(settings: Settings, job_id: str) -> list[int]:
    """The pid of the worker process of each attempt of the job."""
    with transaction(settings) as conn:
        workers_of = conn.execute(
            sa.select(job_attempts.c.worker)
            .where(job_attempts.c.job_id == job_id)
            .order_by(job_attempts.c.number)
        ).scalars()
        return [int(w.split(":")[1]) for w in workers_of]


def _workers(api: TestClient[Any], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = api.get("/v1/workers", headers=headers or {})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _job(api: TestClient[Any], headers: dict[str, str], seconds: float) -> str:
    r = api.post("/v1/jobs", json={"type": "test_sleep", "payload": {"seconds": seconds}}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_a_quiet_worker_finishes_what_it_runs_and_takes_nothing_new(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.settings = settings.replace(worker_queues=("test_sleep",))
    default = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read', name='default')}"}
    shop_x_ops = make_key(settings, "jobs:write", "jobs:read", "ops", name="shop-x", tenant="shop-x")
    shop_x = {"Authorization": f"Bearer {shop_x_ops}"}

    # Worker A, one thread: it runs a long job, and fetches shop-x's job (another tenant's, so under
    # its per-tenant cap) into its local queue, where it waits for the busy thread.
    farm.worker(threads=1)
    (a,) = _workers(api)
    assert a["threads"] == 1 and a["state"] == "running"
    long_job = _job(api, default, 25)
    wait_job(long_job, "running")
    waiting_job = _job(api, shop_x, 0.1)
    # Fetched by A (out of Redis's queue, into A's hands), not started: still queued in Postgres.
    wait_for(lambda: waiting(farm.redis, settings, "test_sleep") == 0, what="A to fetch the second job")
    wait_for(
        lambda: any(w["jobs"] for w in _workers(api)),
        what="the long job listed on its worker",
    )

    # Worker B starts; the waiting job is A's (fetched), so it is still queued.
    farm.worker(threads=2)
    b = next(w for w in _workers(api) if w["id"] != a["id"])
    assert api.get(f"/v1/jobs/{waiting_job}").json()["status"] == "queued"

    # What each key sees: every worker; a tenant's key, its own tenant's jobs only.
    (a_now,) = [w for w in _workers(api) if w["id"] == a["id"]]
    assert [j["id"] for j in a_now["jobs"]] == [long_job]
    assert a_now["jobs"][0]["tenant"] == "default" and a_now["jobs"][0]["running_s"] >= 0
    seen_by_shop_x = _workers(api, shop_x)
    assert {w["id"] for w in seen_by_shop_x} == {a["id"], b["id"]}
    assert all(w["jobs"] == [] for w in seen_by_shop_x)

    # Quieting is the farm's business: a tenant's key is refused; an unknown worker is 404.
    refused = api.post(f"/v1/workers/{a['id']}/quiet", json={"reason": "mine"}, headers=shop_x)
    assert refused.status_code == 403, refused.text
    assert api.post("/v1/workers/no-such-worker/quiet", json={"reason": "x"}).status_code == 404
    assert api.post(f"/v1/workers/{a['id']}/quiet", json={"reason": " "}).status_code == 422
    assert api.post(f"/v1/workers/{a['id']}/quiet", json={}).status_code == 422
    assert api.post(f"/v1/workers/{'x' * 400}/quiet", json={"reason": "x"}).status_code == 422

    quiet = api.post(f"/v1/workers/{a['id']}/quiet", json={"reason": "draining host a"})
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["worker"]["state"] in ("quieting", "quiet") and quiet.json()["audit_id"]
    again = api.post(f"/v1/workers/{a['id']}/quiet", json={"reason": "twice"})
    assert again.status_code == 200 and again.json()["audit_id"] is None
    wait_for(
        lambda: next(w for w in _workers(api) if w["id"] == a["id"])["state"] == "quiet",
        timeout=15,
        what="worker A quiet",
    )

    # The message A had fetched went back to Redis: B runs it, while A's long job still runs.
    wait_job(waiting_job, "succeeded", timeout=15)
    assert _pids(settings, waiting_job) == [b["pid"]]
    later = [_job(api, default, 0.1) for _ in range(6)]
    for job_id in later:
        wait_job(job_id, "succeeded", timeout=20)
        assert _pids(settings, job_id) == [b["pid"]]
    assert api.get(f"/v1/jobs/{long_job}").json()["status"] == "running"

    # A finishes what it held, in its one attempt, and keeps beating: quiet, nothing running.
    wait_job(long_job, "succeeded", timeout=40)
    assert _pids(settings, long_job) == [a["pid"]]
    (a_done,) = [w for w in _workers(api) if w["id"] == a["id"]]
    assert a_done["state"] == "quiet" and a_done["jobs"] == []
    with transaction(settings) as conn:
        entries = conn.execute(sa.select(audit_log.c.action, audit_log.c.selection, audit_log.c.reason)).all()
    assert [tuple(e) for e in entries] == [("worker_quiet", {"worker": a["id"]}, "draining host a")]

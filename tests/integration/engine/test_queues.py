"""GET /v1/queues (API.md "Queues and health"): each figure per job type and queue against what
Postgres and Redis hold, with a real worker and no scheduler (so a due retry stays "delayed")."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, JobWaiter, waiting
from tests.services import wait_for


def _enqueue(api: TestClient[Any], type_: str, payload: dict[str, Any], **extra: Any) -> str:
    r = api.post("/v1/jobs", json={"type": type_, "payload": payload, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def _status_counts(settings: Settings) -> dict[tuple[str, str], int]:
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(jobs.c.type, jobs.c.status, sa.func.count()).group_by(jobs.c.type, jobs.c.status)
        )
        return {(t, s): n for t, s, n in rows}


def test_queues_show_what_postgres_and_redis_hold(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    # The sleeping job is handed back at once when the test ends, rather than waited for.
    farm.settings = settings.replace(
        worker_queues=("test_flaky", "test_sleep"), worker_shutdown_timeout_s=0.5
    )
    farm.worker()
    for _ in range(4):
        _enqueue(api, "test_flaky", {})
    dead = [_enqueue(api, "test_flaky", {"fail_times": 1, "error": "permanent"}) for _ in range(2)]
    retrying = _enqueue(api, "test_flaky", {"fail_times": 1})
    running = _enqueue(api, "test_sleep", {"seconds": 30})
    for _ in range(3):  # nobody consumes test_crash here: they stay ready in Redis
        _enqueue(api, "test_crash", {})
    for _ in range(2):
        _enqueue(api, "test_flaky", {}, delay_seconds=3600)
    for job_id in dead:
        wait_job(job_id, "dead")
    wait_job(retrying, "retrying")
    wait_job(running, "running")
    wait_for(lambda: _status_counts(settings).get(("test_flaky", "succeeded")) == 4, what="4 successes")

    body: dict[str, Any] = wait_for(
        # The retry's backoff (0.1-0.3 s) passes; with no scheduler to publish it, it is delayed.
        lambda: (
            (b := api.get("/v1/queues").json())
            and next(r for r in b["items"] if r["type"] == "test_flaky")["delayed"] == 1
            and b
        ),
        what="the due retry to show as delayed",
    )
    rows = {r["type"]: r for r in body["items"]}
    flaky, sleep, crash = rows["test_flaky"], rows["test_sleep"], rows["test_crash"]
    counts = _status_counts(settings)
    assert flaky["queue"] == "test_flaky"
    assert flaky["dead"] == counts[("test_flaky", "dead")] == 2
    assert flaky["retrying"] == counts[("test_flaky", "retrying")] == 1
    assert flaky["scheduled"] == counts[("test_flaky", "scheduled")] == 2
    assert flaky["running"] == 0 and flaky["ready"] == 0
    assert flaky["succeeded_1m"] == 4
    assert flaky["failed_1m"] == 3  # two dead at once, one to be retried
    assert 0 < flaky["latency_p50_ms"] <= flaky["latency_p95_ms"] < 10_000
    assert sleep["running"] == counts[("test_sleep", "running")] == 1
    assert sleep["succeeded_1m"] == 0 and sleep["latency_p50_ms"] is None
    assert crash["ready"] == waiting(farm.redis, settings, "test_crash") == 3
    assert crash["queued"] == counts[("test_crash", "queued")] == 3
    assert crash["oldest_ready_age_s"] > 0
    # Registered types with no jobs are listed too, at zero.
    assert rows["unread_count"]["ready"] == 0 and rows["unread_count"]["dead"] == 0
    not_paused = {"paused": False, "paused_at": None, "paused_by": None, "reason": None}
    assert {"name": "test_crash", "ready": 3, **not_paused} in body["queues"]
    assert body["workers"]["alive"] == 1
    assert body["workers"]["items"][0]["queues"] == ["test_flaky", "test_sleep"]  # what it consumes
    assert body["redis_error"] is None


def test_queues_need_the_ops_scope(api: TestClient[Any], settings: Settings) -> None:
    from tests.integration.conftest import make_key

    reader = make_key(settings, "jobs:read", "jobs:write")
    r = api.get("/v1/queues", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"

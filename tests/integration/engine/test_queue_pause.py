"""Pausing a queue (core/engine/pauses.py) with real Postgres, Redis, worker and scheduler processes:
a paused queue accepts jobs and runs none, its due jobs stay in Postgres, a Redis that lost its data
keeps it paused, and on resume every job runs once, in order. Each wait for "nothing happened" is
bounded by something that did happen: a job of another queue ran on the same worker."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.pauses import paused_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, job_attempts, jobs
from tests.integration.conftest import Farm, JobWaiter, count_rows, make_key, waiting
from tests.services import wait_for

PAUSED = "test_echo"


def _echo(api: TestClient[Any], value: int, **more: Any) -> str:
    answer = api.post("/v1/jobs", json={"type": "test_echo", "payload": {"value": value}, **more})
    assert answer.status_code in (200, 201, 202), answer.text
    return str(answer.json()["id"])


def _worker_ran_something_else(api: TestClient[Any], wait_job: JobWaiter, **more: Any) -> None:
    """A job of another queue runs to the end: the worker is alive and fetching."""
    payload = {"chat_id": uuid.uuid4().hex, "user_id": "u"}
    other = api.post("/v1/jobs", json={"type": "unread_count", "payload": payload, **more})
    assert other.status_code in (200, 201, 202), other.text
    wait_job(other.json()["id"], timeout=15)


def _statuses(api: TestClient[Any], ids: list[str]) -> list[str]:
    return [api.get(f"/v1/jobs/{i}").json()["status"] for i in ids]


def _runs(settings: Settings, ids: list[str]) -> list[tuple[str, int]]:
    """(job id, attempts) in the order the jobs started."""
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(job_attempts.c.job_id, job_attempts.c.number)
            .where(job_attempts.c.job_id.in_([uuid.UUID(i) for i in ids]))
            .order_by(job_attempts.c.started_at)
        ).all()
    return [(str(job_id), number) for job_id, number in rows]


def _queue(api: TestClient[Any], name: str) -> dict[str, Any]:
    return next(q for q in api.get("/v1/queues").json()["queues"] if q["name"] == name)


def test_a_paused_queue_accepts_jobs_starts_none_and_runs_each_once_in_order_on_resume(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.worker(threads=1)  # one thread: the order jobs start in is the order they were fetched in
    paused = api.post(f"/v1/queues/{PAUSED}/pause", json={"reason": "provider outage"})
    assert paused.status_code == 200, paused.text
    assert paused.json() | {"paused_at": None, "audit_id": None} == {
        "queue": PAUSED,
        "paused": True,
        "paused_at": None,
        "paused_by": "admin",
        "reason": "provider outage",
        "changed": True,
        "dry_run": False,
        "audit_id": None,
        "queued": 0,
        "running": 0,
        "scheduled": 0,
        "retrying": 0,
    }
    assert paused.json()["audit_id"]

    ids = [_echo(api, i) for i in range(6)]
    _worker_ran_something_else(api, wait_job)
    assert _statuses(api, ids) == ["queued"] * 6
    assert waiting(farm.redis, settings, PAUSED) == 6  # still in Redis, where they were published
    shown = _queue(api, PAUSED)
    assert (shown["paused"], shown["reason"], shown["paused_by"]) == (True, "provider outage", "admin")
    assert all(r["paused"] == (r["queue"] == PAUSED) for r in api.get("/v1/queues").json()["items"])

    resumed = api.post(f"/v1/queues/{PAUSED}/resume", json={})
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["changed"], resumed.json()["paused"], resumed.json()["queued"]) == (True, False, 6)
    for job_id in ids:
        wait_job(job_id, timeout=15)
    assert _runs(settings, ids) == [(job_id, 1) for job_id in ids]  # each once, in order
    assert not _queue(api, PAUSED)["paused"]
    with transaction(settings) as conn:
        actions = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor).order_by(audit_log.c.at)
        ).all()
    assert [tuple(a) for a in actions] == [("pause_queue", "admin"), ("resume_queue", "admin")]


def test_a_due_job_of_a_paused_queue_is_not_published_until_resume(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.scheduler()
    farm.worker(threads=2)
    assert api.post(f"/v1/queues/{PAUSED}/pause", json={"reason": "hold the delayed one"}).status_code == 200
    delayed = _echo(api, 1, delay_seconds=1)
    # Due at the same moment on a queue that is not paused: once it ran, the scheduler has passed
    # the paused job's due time too.
    _worker_ran_something_else(api, wait_job, delay_seconds=1)
    assert _statuses(api, [delayed]) == ["scheduled"]
    with transaction(settings) as conn:
        assert (
            conn.execute(sa.select(jobs.c.published_at).where(jobs.c.id == uuid.UUID(delayed))).scalar()
            is None
        )
    assert waiting(farm.redis, settings, PAUSED) == 0
    [row] = [r for r in api.get("/v1/queues").json()["items"] if r["type"] == "test_echo"]
    assert (row["delayed"], row["paused"]) == (1, True)

    assert api.post(f"/v1/queues/{PAUSED}/resume", json={"reason": "over"}).json()["changed"] is True
    wait_job(delayed, timeout=15)
    assert _runs(settings, [delayed]) == [(delayed, 1)]


def test_a_redis_that_lost_its_data_keeps_the_queue_paused(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.scheduler()
    farm.worker(threads=2)
    assert api.post(f"/v1/queues/{PAUSED}/pause", json={"reason": "outage"}).status_code == 200
    key = paused_key(settings.redis_namespace)
    assert farm.redis.sismember(key, PAUSED)
    farm.redis.flushall()
    # The scheduler writes the pause back from Postgres within a second.
    wait_for(lambda: farm.redis.sismember(key, PAUSED), timeout=5, what="the pause back in Redis")
    ids = [_echo(api, i) for i in range(3)]
    _worker_ran_something_else(api, wait_job)
    assert _statuses(api, ids) == ["queued"] * 3

    assert api.post(f"/v1/queues/{PAUSED}/resume", json={}).status_code == 200
    for job_id in ids:
        wait_job(job_id, timeout=15)
    assert sorted(_runs(settings, ids)) == sorted((job_id, 1) for job_id in ids)
    assert count_rows(settings, jobs, jobs.c.status == "succeeded", jobs.c.type == "test_echo") == 3


def test_a_message_fetched_before_the_pause_is_handed_back_unstarted_and_runs_once_on_resume(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    # One thread, so a second tenant's message is fetched ahead while the first tenant's job runs.
    farm.worker(threads=1)
    first = api.post("/v1/jobs", json={"type": "test_sleep", "payload": {"seconds": 2}}).json()["id"]
    wait_job(first, "running")
    other_tenant = {
        "Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read', tenant='shop-b')}"
    }
    ahead = api.post("/v1/jobs", json={"type": "test_sleep", "payload": {"seconds": 0}}, headers=other_tenant)
    ahead_id = ahead.json()["id"]
    wait_for(
        lambda: waiting(farm.redis, settings, "test_sleep") == 0, timeout=5, what="the second job fetched"
    )
    assert api.post("/v1/queues/test_sleep/pause", json={"reason": "mid-run"}).status_code == 200

    wait_job(first, timeout=15)  # running at pause time: it finishes
    # The thread came free and took the fetched message: not started, back in Redis, still queued.
    wait_for(lambda: waiting(farm.redis, settings, "test_sleep") == 1, timeout=10, what="the message back")
    assert api.get(f"/v1/jobs/{ahead_id}").json()["status"] == "queued"
    assert _runs(settings, [ahead_id]) == []

    assert api.post("/v1/queues/test_sleep/resume", json={}).status_code == 200
    wait_job(ahead_id, timeout=15)
    assert _runs(settings, [first, ahead_id]) == [(first, 1), (ahead_id, 1)]

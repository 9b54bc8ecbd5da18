"""Postgres is the truth: effects happen once under duplicate delivery, and Redis losing its data
loses no job. Real API, worker and scheduler processes."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy as sa

from core.engine.broker import Publication, publish
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, waiting
from tests.services import wait_for


def _status_counts(settings: Settings) -> dict[str, int]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
    return {status: count for status, count in rows}


def test_increments_apply_exactly_once_under_duplicate_delivery(
    farm: Farm, settings: Settings, admin_key: str, broker: Any
) -> None:
    worker = farm.worker(processes=2, threads=8)
    _, base = farm.api()
    headers = {"Authorization": f"Bearer {admin_key}"}
    body = {"type": "unread_count", "payload": {"chat_id": "hot", "user_id": "u1", "op": "increment"}}

    def client_run(client_no: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for _ in range(50):
                r = client.post("/v1/jobs", json=body)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
                if len(ids) % 10 == 0:
                    # The same job delivered a second time, straight through Redis.
                    publish(
                        broker,
                        [Publication(uuid.UUID(ids[-1]), "unread_count", "unread_count", str(uuid.uuid4()))],
                    )
        return ids

    with ThreadPoolExecutor(20) as pool:
        ids = [i for batch in pool.map(client_run, range(20)) for i in batch]
    assert len(set(ids)) == 1000

    wait_for(
        lambda: _status_counts(settings).get("succeeded") == 1000, timeout=120, what="1000 jobs to succeed"
    )
    unread = httpx.get(f"{base}/v1/unread", params={"user_id": "u1"}, headers=headers).json()
    assert unread == {"items": [{"chat_id": "hot", "unread": 1000, "tenant": "default"}], "total": 1000}
    assert _status_counts(settings) == {"succeeded": 1000}
    # All 100 duplicates really were delivered, and each was skipped rather than applied.
    wait_for(lambda: worker.log().count('"job_skipped"') == 100, timeout=30, what="100 duplicates skipped")


def test_no_job_is_lost_when_redis_loses_its_data(farm: Farm, settings: Settings, api: Any) -> None:
    batch = [
        {"type": "unread_count", "payload": {"chat_id": f"c{i % 10}", "user_id": "u1"}} for i in range(500)
    ]
    r = api.post("/v1/jobs/batch", json={"jobs": batch})
    assert r.status_code == 201
    assert waiting(farm.redis, settings, "unread_count") == 500

    farm.redis.flushall()
    assert waiting(farm.redis, settings, "unread_count") == 0

    farm.worker()
    farm.scheduler()
    wait_for(lambda: _status_counts(settings).get("succeeded") == 500, timeout=60, what="500 jobs to succeed")
    assert api.get("/v1/unread", params={"user_id": "u1"}).json()["total"] == 500


def test_several_schedulers_publish_each_due_job_once(farm: Farm, settings: Settings, api: Any) -> None:
    batch = [
        {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}, "delay_seconds": 1}
        for _ in range(300)
    ]
    assert api.post("/v1/jobs/batch", json={"jobs": batch}).status_code == 201
    assert _status_counts(settings) == {"scheduled": 300}
    queue = f"{settings.redis_namespace}:unread_count"
    assert waiting(farm.redis, settings, "unread_count") == 0

    for _ in range(3):
        farm.scheduler()
    wait_for(lambda: _status_counts(settings) == {"queued": 300}, timeout=30, what="all due jobs published")
    # Give the schedulers a few more rounds, sweeps included: still one message per job.
    wait_for(lambda: all(p.log().count("scheduler_started") for p in farm.processes), what="schedulers")
    with transaction(settings) as conn:
        published_before = conn.execute(sa.select(sa.func.max(jobs.c.published_at))).scalar_one()
    wait_for(
        lambda: _max_published(settings) > published_before, timeout=10, what="a sweep to check the messages"
    )
    assert waiting(farm.redis, settings, "unread_count") == 300
    assert farm.redis.hlen(f"{queue}.msgs") == 300


def test_a_backlog_of_due_jobs_is_published_once_by_batches_side_by_side(
    farm: Farm, settings: Settings, api: Any
) -> None:
    """Two schedulers, each publishing batches of 50 three at a time: 1,000 jobs come due at once,
    and each gets exactly one message."""
    batch = [
        {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}, "delay_seconds": 1}
        for _ in range(1000)
    ]
    assert api.post("/v1/jobs/batch", json={"jobs": batch}).status_code == 201
    farm.env.update(JOBYARD_SCHEDULER_BATCH="50", JOBYARD_SCHEDULER_PUBLISHERS="3")
    for _ in range(2):
        farm.scheduler()
    wait_for(lambda: _status_counts(settings) == {"queued": 1000}, timeout=30, what="all due jobs published")
    queue = f"{settings.redis_namespace}:unread_count"
    assert waiting(farm.redis, settings, "unread_count") == 1000
    assert farm.redis.hlen(f"{queue}.msgs") == 1000
    with transaction(settings) as conn:
        message_ids = conn.execute(sa.select(sa.func.count(sa.distinct(jobs.c.message_id)))).scalar_one()
    assert message_ids == 1000
    assert all(p.alive() for p in farm.processes)


def _max_published(settings: Settings) -> Any:
    with transaction(settings) as conn:
        return conn.execute(sa.select(sa.func.max(jobs.c.published_at))).scalar_one()

"""Priority (0-9, 9 the most urgent): taken by every way jobs are created, stored and shown, refused
out of range with a 422 naming the field, and honoured by a real worker process: an urgent job
enqueued behind 10,000 of its tenant's ordinary ones starts within a second."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.broker import build_broker
from core.engine.lanes import lane_key
from core.engine.schedules import fire_due_schedules
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs, schedules
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}}


def test_priority_defaults_to_5_and_is_stored_shown_and_published_in_its_lane(
    api: TestClient[Any], redis_conn: Any, settings: Settings
) -> None:
    plain = api.post("/v1/jobs", json=UNREAD).json()
    urgent = api.post("/v1/jobs", json={**UNREAD, "priority": 9}).json()
    assert (plain["priority"], urgent["priority"]) == (5, 9)
    assert api.get(f"/v1/jobs/{urgent['id']}").json()["priority"] == 9
    with transaction(settings) as conn:
        stored = dict(conn.execute(sa.select(jobs.c.id, jobs.c.priority)).all())
    assert {str(k): v for k, v in stored.items()} == {plain["id"]: 5, urgent["id"]: 9}
    ns = settings.redis_namespace
    assert redis_conn.lrange(lane_key(ns, "unread_count", "default", 9), 0, -1) == [urgent["id"].encode()]
    assert redis_conn.lrange(lane_key(ns, "unread_count", "default", 5), 0, -1) == [plain["id"].encode()]

    batch = api.post("/v1/jobs/batch", json={"jobs": [{**UNREAD, "priority": 0}, UNREAD]}).json()
    assert [j["priority"] for j in batch["items"]] == [0, 5]


@pytest.mark.parametrize("bad", [10, -1, 5.5, True, None, "high", "9.5"])
def test_a_priority_out_of_range_or_not_an_integer_is_422_naming_the_field(
    api: TestClient[Any], bad: Any
) -> None:
    one = api.post("/v1/jobs", json={**UNREAD, "priority": bad})
    assert one.status_code == 422, one.text
    assert one.json()["error"]["code"] == "validation_error"
    assert [d["field"] for d in one.json()["error"]["details"]] == ["priority"]

    batch = api.post("/v1/jobs/batch", json={"jobs": [UNREAD, {**UNREAD, "priority": bad}]})
    assert batch.status_code == 422
    assert [d["field"] for d in batch.json()["error"]["details"]] == ["jobs[1].priority"]

    step = {"after_seconds": 0, **UNREAD, "priority": bad}
    sequence = api.post(
        "/v1/sequences",
        json={"business_key": "o-1", "anchor_at": datetime.now(UTC).isoformat(), "steps": [step]},
    )
    assert sequence.status_code == 422
    assert [d["field"] for d in sequence.json()["error"]["details"]] == ["steps[0].priority"]

    schedule = api.post("/v1/schedules", json={**UNREAD, "every_seconds": 60, "priority": bad})
    assert schedule.status_code == 422
    assert [d["field"] for d in schedule.json()["error"]["details"]] == ["priority"]
    assert api.get("/v1/jobs").json()["items"] == []  # nothing was created


def test_sequences_and_schedules_give_their_jobs_a_priority(
    api: TestClient[Any], settings: Settings, broker: Any
) -> None:
    anchor = datetime.now(UTC)
    steps = [{"after_seconds": 0, **UNREAD, "priority": 8}, {"after_seconds": 60, **UNREAD}]
    sequence = api.post(
        "/v1/sequences", json={"business_key": "o-2", "anchor_at": anchor.isoformat(), "steps": steps}
    )
    assert [j["priority"] for j in sequence.json()["jobs"]] == [8, 5]

    created = api.post("/v1/schedules", json={**UNREAD, "every_seconds": 3600, "priority": 7})
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["priority"] == 7
    patched = api.patch(f"/v1/schedules/{schedule['id']}", json={"priority": 2})
    assert patched.json()["priority"] == 2
    assert api.patch(f"/v1/schedules/{schedule['id']}", json={"priority": 10}).status_code == 422

    with transaction(settings) as conn:  # its first slot, come now
        conn.execute(sa.update(schedules).values(next_run_at=sa.func.now() - timedelta(seconds=1)))
    assert fire_due_schedules(settings, broker) == 1
    fired = api.get(f"/v1/schedules/{schedule['id']}").json()["last_job_id"]
    assert api.get(f"/v1/jobs/{fired}").json()["priority"] == 2


def test_an_urgent_job_behind_10000_of_its_tenants_jobs_starts_within_a_second(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    # A backlog that takes minutes to drain: 10,000 jobs of 50 ms on one worker of 4 threads.
    farm.settings = settings.replace(worker_queues=("test_sleep",))
    farm.worker(threads=4)
    ordinary = {"type": "test_sleep", "payload": {"seconds": 0.05}}
    for _ in range(10):
        r = api.post("/v1/jobs/batch", json={"jobs": [ordinary] * 1000})
        assert r.status_code == 201
    wait_for(lambda: _running(settings) > 0, what="the worker to be busy with the backlog")

    sent = datetime.now(UTC)
    urgent = api.post("/v1/jobs", json={**ordinary, "priority": 9}).json()
    started = datetime.fromisoformat(wait_job(urgent["id"], "running", "succeeded", timeout=10)["started_at"])

    assert started - sent < timedelta(seconds=1)
    with transaction(settings) as conn:
        queued = conn.execute(sa.select(sa.func.count()).where(jobs.c.status == "queued")).scalar_one()
    assert queued > 9000  # the backlog was still there: the urgent job went ahead of it


def _running(settings: Settings) -> int:
    with transaction(settings) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(jobs.c.status.in_(("running", "succeeded")))
            ).scalar_one()
        )


def test_priority_orders_a_tenants_jobs_as_a_worker_fetches_them(
    settings: Settings, api: TestClient[Any]
) -> None:
    """The fetch itself (no worker): most urgent first, first in first out within a priority."""
    ids = []
    for priority in (5, 0, 9, 5, 9):
        ids.append((priority, api.post("/v1/jobs", json={**UNREAD, "priority": priority}).json()["id"]))
    consumer = build_broker(settings)
    try:
        fetched = [_job_id(m) for m in consumer.fetch("unread_count", 10)]
    finally:
        consumer.client.close()
    expected = [i for _, i in sorted(ids, key=lambda pair: -pair[0])]  # a stable sort keeps FIFO
    assert fetched == expected


def _job_id(data: bytes) -> str:
    return str(json.loads(data)["options"]["job_id"])

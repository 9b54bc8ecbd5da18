"""Due jobs read ahead of their time (core/engine/dispatch.py read_ahead, publish_prepared): at their
time only the update of their rows and the publish remain, and Postgres's rows still decide what is
published: each job once, not before its time, not when cancelled or its queue paused, and with the
fields its row holds then."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa

from core.engine.dispatch import publish_due_backlog, publish_prepared, read_ahead
from core.engine.jobs import NewJob, insert_jobs, utcnow
from core.engine.pauses import pause, resume
from core.engine.queries import cancel_job
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, waiting
from tests.services import wait_for
from workers.scheduler import Scheduler

QUEUE = "test_effect"


def _scheduled(settings: Settings, n: int, in_s: float) -> tuple[list[uuid.UUID], datetime]:
    due = utcnow() + timedelta(seconds=in_s)
    with transaction(settings) as conn:
        results = insert_jobs(
            conn, [NewJob(type=QUEUE, payload={"marker": f"r{i}"}, run_at=due) for i in range(n)]
        )
    return [e.job.id for e in results], due


def _until(due: datetime) -> None:
    wait_for(lambda: utcnow() >= due, timeout=30, interval=0.01, what="the jobs' due time")


def _rows(settings: Settings) -> dict[uuid.UUID, tuple[str, str | None]]:
    with transaction(settings) as conn:
        return {
            r.id: (r.status, r.message_id)
            for r in conn.execute(sa.select(jobs.c.id, jobs.c.status, jobs.c.message_id))
        }


def _messages(client: redis.Redis, settings: Settings) -> dict[str, bytes]:
    return {k.decode(): v for k, v in client.hgetall(f"{settings.redis_namespace}:{QUEUE}.msgs").items()}


def test_jobs_read_ahead_are_published_once_under_the_message_ids_chosen_ahead(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    ids, due = _scheduled(settings, 120, 1.0)
    ahead = read_ahead(settings, due.timestamp() + 0.05, 1000)
    assert sorted(p.pub.job_id for p in ahead) == sorted(ids)
    assert {r[0] for r in _rows(settings).values()} == {"scheduled"}  # reading decides nothing
    _until(due)

    # Batches side by side, one of them given twice: each job is published once.
    batches = [ahead[:50], ahead[50:], ahead[:50]]
    with ThreadPoolExecutor(3) as pool:
        assert sum(pool.map(lambda b: publish_prepared(settings, broker, b), batches)) == 120

    rows = _rows(settings)
    assert {status for status, _ in rows.values()} == {"queued"}
    assert {p.pub.job_id: p.pub.message_id for p in ahead} == {i: m for i, (_, m) in rows.items()}
    messages = _messages(redis_conn, settings)
    assert messages == {p.pub.message_id: p.message for p in ahead}
    body = json.loads(messages[ahead[0].pub.message_id])
    assert body["args"] == [str(ahead[0].pub.job_id)]
    assert body["options"]["redis_message_id"] == ahead[0].pub.message_id
    assert abs(body["message_timestamp"] / 1000 - due.timestamp()) < 1  # its due time, not the read's
    assert waiting(redis_conn, settings, QUEUE) == 120
    # Read again, nothing is due any more.
    assert read_ahead(settings, utcnow().timestamp(), 1000) == []
    assert publish_prepared(settings, broker, ahead) == 0


def test_a_job_read_ahead_waits_for_its_time_its_queue_and_is_skipped_once_cancelled(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    ids, due = _scheduled(settings, 10, 1.0)
    ahead = read_ahead(settings, due.timestamp(), 1000)
    assert len(ahead) == 10
    assert publish_prepared(settings, broker, ahead) == 0  # not due yet
    with transaction(settings) as conn:
        cancel_job(conn, ids[0])
    pause(settings, redis_conn, QUEUE, actor="test", reason="read ahead")
    _until(due)
    assert publish_prepared(settings, broker, ahead) == 0  # paused
    assert read_ahead(settings, utcnow().timestamp(), 1000) == []  # a paused queue is not read
    resume(settings, redis_conn, QUEUE, actor="test")

    assert publish_prepared(settings, broker, ahead) == 9
    rows = _rows(settings)
    assert rows[ids[0]] == ("cancelled", None)
    assert sum(status == "queued" for status, _ in rows.values()) == 9
    assert waiting(redis_conn, settings, QUEUE) == 9


def test_a_job_changed_after_it_was_read_is_published_as_its_row_holds_it(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    ids, due = _scheduled(settings, 3, 1.0)
    ahead = read_ahead(settings, due.timestamp(), 1000)
    with transaction(settings) as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == ids[1]).values(request_id="req-changed"))
    # Read twice (each read picks its own message ids): one id per job is written, and its message
    # is the one published.
    ahead += read_ahead(settings, due.timestamp(), 1000)
    _until(due)

    assert publish_prepared(settings, broker, ahead) == 3
    rows = _rows(settings)
    messages = _messages(redis_conn, settings)
    assert sorted(messages) == sorted(message_id for _, message_id in rows.values() if message_id)
    for job_id, (_, message_id) in rows.items():
        body = json.loads(messages[str(message_id)])
        assert body["args"] == [str(job_id)]
        assert body["message_id"] == body["options"]["redis_message_id"] == message_id
    changed = json.loads(messages[str(rows[ids[1]][1])])
    assert changed["options"]["request_id"] == "req-changed"
    assert changed["args"] == [str(ids[1])]


def test_the_scheduler_reads_ahead_while_it_waits_then_publishes_at_the_due_time(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    """At most two sleeps before the due time the scheduler reads the jobs; it wakes at that time
    and publishes them side by side; jobs added after the read go the ordinary way."""
    settings = dataclasses.replace(settings, scheduler_interval_s=0.5, scheduler_batch=20)
    scheduler = Scheduler(settings)
    try:
        ids, due = _scheduled(settings, 100, 0.8)
        pause_s = scheduler._pause()
        assert pause_s <= 0.5
        assert sorted(p.pub.job_id for p in scheduler.ahead) == sorted(ids)
        late, _ = _scheduled(settings, 5, (due - utcnow()).total_seconds())
        scheduler._pause()  # covers the same time: not read again
        assert len(scheduler.ahead) == 100
        _until(due)

        scheduler.tick()  # one pass: the jobs read ahead, then the others
        assert scheduler.ahead == []
        rows = _rows(settings)
        assert {status for status, _ in rows.values()} == {"queued"}
        assert sorted(rows) == sorted(ids + late)
        assert waiting(redis_conn, settings, QUEUE) == 105
    finally:
        if scheduler.publishers is not None:
            scheduler.publishers.shutdown()
        scheduler.broker.client.close()


def test_read_ahead_off_publishes_the_ordinary_way(settings: Settings, broker: Any) -> None:
    settings = dataclasses.replace(settings, scheduler_interval_s=0.5, scheduler_read_ahead=0)
    scheduler = Scheduler(settings)
    try:
        _, due = _scheduled(settings, 30, 0.5)
        scheduler._pause()
        assert scheduler.ahead == []
        _until(due)
        assert publish_due_backlog(settings, broker, None, ()) == 30
    finally:
        scheduler.broker.client.close()


def test_two_schedulers_reading_the_same_jobs_ahead_publish_each_once(farm: Farm, settings: Settings) -> None:
    farm.env.update(JOBYARD_SCHEDULER_INTERVAL="0.5", JOBYARD_SCHEDULER_BATCH="50")
    for _ in range(2):
        farm.scheduler()
    _, due = _scheduled(settings, 1000, 2.0)
    _until(due)
    wait_for(
        lambda: {status for status, _ in _rows(settings).values()} == {"queued"},
        timeout=30,
        what="all due jobs published",
    )
    rows = _rows(settings)
    assert len({message_id for _, message_id in rows.values()}) == 1000
    assert waiting(farm.redis, settings, QUEUE) == 1000
    assert farm.redis.hlen(f"{settings.redis_namespace}:{QUEUE}.msgs") == 1000
    assert all(p.alive() for p in farm.processes)


def test_a_read_ahead_short_of_time_prepares_what_it_could_and_the_rest_goes_the_ordinary_way(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    ids, due = _scheduled(settings, 40, 1.0)
    assert read_ahead(settings, due.timestamp(), 1000, stop_at=time.monotonic()) == []
    ahead = read_ahead(settings, due.timestamp(), 1000, stop_at=time.monotonic() + 60)
    assert len(ahead) == 40
    _until(due)
    assert publish_due_backlog(settings, broker, None, ahead[:10]) == 40
    assert sorted(_rows(settings)) == sorted(ids)
    assert {status for status, _ in _rows(settings).values()} == {"queued"}
    assert waiting(redis_conn, settings, QUEUE) == 40

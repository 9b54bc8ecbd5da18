"""The sweeper (``republish_lost``): queued jobs whose message Redis lost are published again, once,
at a cost that does not grow with the backlog. Real Postgres and Redis; consumers are stood in for
by the workers' own fetch script, under broker ids registered as workers the way worker processes do.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa

from core.engine.broker import Publication, build_broker, publish
from core.engine.dispatch import republish_lost
from core.engine.jobs import NewJob, insert_jobs, utcnow
from core.engine.lanes import DEFAULT_PRIORITY, lane_key, ring_key, waiting_ids
from core.engine.recovery import register_worker
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs, workers
from core.platform.tenants import DEFAULT_TENANT
from tests.integration.conftest import waiting

QUEUE = "test_effect"


def _queued(settings: Settings, n: int) -> list[Publication]:
    """``n`` queued jobs, published long enough ago for the sweeper to look at them (not on Redis)."""
    with transaction(settings) as conn:
        results = insert_jobs(conn, [NewJob(type=QUEUE, payload={"marker": f"s{i}"}) for i in range(n)])
        conn.execute(sa.update(jobs).values(published_at=utcnow() - timedelta(hours=1)))
    return [Publication(e.job.id, e.job.type, e.job.queue, str(e.message_id)) for e in results]


def _message_ids(settings: Settings) -> dict[uuid.UUID, str]:
    with transaction(settings) as conn:
        return {
            job_id: message_id for job_id, message_id in conn.execute(sa.select(jobs.c.id, jobs.c.message_id))
        }


def _stale_again(settings: Settings) -> None:
    with transaction(settings) as conn:
        conn.execute(sa.update(jobs).values(published_at=utcnow() - timedelta(hours=1)))


def _sweep_all(settings: Settings, broker: Any) -> int:
    """Passes until one finds nothing more to check (each pass marks what it checked)."""
    total = 0
    while True:
        with transaction(settings) as conn:
            stale = conn.execute(
                sa.select(sa.func.count())
                .select_from(jobs)
                .where(jobs.c.published_at < utcnow() - timedelta(seconds=settings.republish_after_s))
            ).scalar_one()
        if not stale:
            return total
        total += republish_lost(settings, broker)


def _commands(redis_conn: redis.Redis) -> set[str]:
    return {name.removeprefix("cmdstat_") for name in redis_conn.info("commandstats")}


def test_lost_messages_are_found_without_reading_a_queue_or_scanning_keys(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    settings = settings.replace(scheduler_batch=300)
    pubs = _queued(settings, 1000)
    publish(broker, pubs[10:])  # the first 10 never reached Redis
    before = _message_ids(settings)
    redis_conn.config_resetstat()

    assert _sweep_all(settings, broker) == 10

    after = _message_ids(settings)
    assert {j for j in after if after[j] != before[j]} == {p.job_id for p in pubs[:10]}
    assert redis_conn.hlen(f"{settings.redis_namespace}:{QUEUE}.msgs") == 1000
    assert waiting(redis_conn, settings, QUEUE) == 1000
    assert all(redis_conn.hexists(f"{settings.redis_namespace}:{QUEUE}.msgs", m) for m in after.values())
    # Four passes over 1,000 queued messages: none read the queue's lanes or scanned the keyspace.
    assert not _commands(redis_conn) & {"lrange", "scan", "keys", "hkeys", "hgetall", "hscan"}


def test_a_message_held_by_a_silent_worker_is_published_again_and_one_a_live_worker_holds_is_not(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    pubs = _queued(settings, 2)
    publish(broker, pubs)
    live, silent = build_broker(settings), build_broker(settings)
    try:
        # What a consumer's fetch does: the message moves from its lane to the broker's ack set.
        assert len(live.fetch(QUEUE, 1)) == 1
        assert len(silent.fetch(QUEUE, 1)) == 1
        register_worker(settings, "live-worker", [QUEUE], live.broker_id)
        register_worker(settings, "silent-worker", [QUEUE], silent.broker_id)
        with transaction(settings) as conn:
            conn.execute(
                sa.update(workers)
                .where(workers.c.id == "silent-worker")
                .values(last_seen_at=utcnow() - timedelta(hours=1))
            )
        held_by_silent = redis_conn.smembers(
            f"{settings.redis_namespace}:__acks__.{silent.broker_id}.{QUEUE}"
        )
        before = _message_ids(settings)

        assert _sweep_all(settings, broker) == 1

        after = _message_ids(settings)
        changed = [j for j in after if after[j] != before[j]]
        assert [before[j].encode() for j in changed] == list(held_by_silent)
    finally:
        live.client.close()
        silent.client.close()


def test_messages_orphaned_by_an_evicted_lane_are_published_again(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    pubs = _queued(settings, 200)
    publish(broker, pubs)
    # As an eviction policy other than noeviction would: the lane goes, the message hash stays.
    redis_conn.delete(lane_key(settings.redis_namespace, QUEUE, DEFAULT_TENANT, DEFAULT_PRIORITY))

    assert _sweep_all(settings, broker) == 200

    ids = _message_ids(settings)
    messages = f"{settings.redis_namespace}:{QUEUE}.msgs"
    # The orphans are gone and each job is on the queue once, under its new message id.
    assert redis_conn.hlen(messages) == 200
    waiting_now = waiting_ids(redis_conn, settings.redis_namespace, QUEUE)
    assert sorted(m.decode() for m in waiting_now) == sorted(ids.values())
    assert not set(ids.values()) & {str(p.message_id) for p in pubs}
    # The counts add up again, so the next passes are back to their constant cost.
    _stale_again(settings)
    redis_conn.delete(f"{settings.redis_namespace}:{QUEUE}.orphan-check")
    redis_conn.config_resetstat()
    assert _sweep_all(settings, broker) == 0
    assert "lrange" not in _commands(redis_conn)


def test_schedulers_sweeping_side_by_side_publish_each_lost_job_once(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    settings = settings.replace(scheduler_batch=100)
    _queued(settings, 1000)  # none reached Redis
    republished: list[int] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        own = build_broker(settings)
        try:
            republished.append(_sweep_all(settings, own))
        except BaseException as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            own.client.close()

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sum(republished) == 1000
    assert waiting(redis_conn, settings, QUEUE) == 1000
    assert redis_conn.hlen(f"{settings.redis_namespace}:{QUEUE}.msgs") == 1000


def test_a_lane_whose_tenant_left_the_ring_is_served_again_not_published_twice(
    settings: Settings, broker: Any, redis_conn: redis.Redis
) -> None:
    pubs = _queued(settings, 50)
    publish(broker, pubs)
    # The sorted set of tenants goes (an eviction), the lane and the hash stay: nothing would fetch
    # the lane, and the counts no longer add up.
    redis_conn.delete(ring_key(settings.redis_namespace, QUEUE))
    assert broker.fetch(QUEUE, 10) == []
    before = _message_ids(settings)

    assert _sweep_all(settings, broker) == 0

    # The orphan check found the lane, put its tenant back, and every message is where it was.
    assert _message_ids(settings) == before
    assert waiting(redis_conn, settings, QUEUE) == 50
    assert len(broker.fetch(QUEUE, 100)) == 50

"""Fair share between tenants (core/engine/lanes.py, core/engine/consumer.py): the fetch script on a
real Redis, then real worker processes, where one tenant's backlog does not hold back another's jobs."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.broker import Publication, publish
from core.engine.lanes import weights_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, JobWaiter, make_key, waiting
from tests.services import wait_for

QUEUE = "fair_test"


def _publish(broker: Any, tenant: str, n: int, priority: int = 5) -> list[str]:
    pubs = [
        Publication(uuid.uuid4(), QUEUE, QUEUE, str(uuid.uuid4()), None, tenant, priority) for _ in range(n)
    ]
    publish(broker, pubs)
    return [p.message_id for p in pubs]


def _tenants(fetched: list[bytes]) -> list[str]:
    return [json.loads(m)["options"]["jobyard_tenant"] for m in fetched]


def test_tenants_take_turns_whatever_their_backlog(broker: Any) -> None:
    _publish(broker, "big", 1000)
    _publish(broker, "small", 5)
    fetched = _tenants(broker.fetch(QUEUE, 10))
    assert fetched == ["big", "small"] * 5 or fetched == ["small", "big"] * 5
    # Alone again, the big tenant takes everything it may in one go.
    assert _tenants(broker.fetch(QUEUE, 100)) == ["big"] * 100


def test_a_tenant_that_arrives_goes_next_but_banks_no_credit(broker: Any) -> None:
    _publish(broker, "big", 1000)
    assert _tenants(broker.fetch(QUEUE, 300)) == ["big"] * 300  # big alone: its clock runs on
    _publish(broker, "late", 50)
    # The newcomer goes first, then one each: its idle time earned it no run of its own.
    fetched = _tenants(broker.fetch(QUEUE, 20))
    assert fetched[0] == "late"
    assert Counter(fetched) == {"late": 10, "big": 10}


def test_a_consumer_takes_no_more_of_a_tenant_than_its_cap(broker: Any) -> None:
    _publish(broker, "big", 100)
    # It holds 8 of big's messages already, with a cap of 10: two more, and nothing else waits.
    assert _tenants(broker.fetch(QUEUE, 50, 10, {"big": 8})) == ["big"] * 2
    assert broker.fetch(QUEUE, 50, 10, {"big": 10}) == []
    _publish(broker, "other", 3)
    assert _tenants(broker.fetch(QUEUE, 50, 10, {"big": 10})) == ["other"] * 3


def test_messages_given_back_go_first(broker: Any, redis_conn: redis.Redis, settings: Settings) -> None:
    _publish(broker, "a", 5)
    first = broker.fetch(QUEUE, 2)
    held = [json.loads(m)["options"]["redis_message_id"] for m in first]
    broker.do_requeue(QUEUE, *held)  # what a worker does with its prefetched messages at shutdown
    assert [json.loads(m)["options"]["redis_message_id"] for m in broker.fetch(QUEUE, 2)] == held
    assert waiting(redis_conn, settings, QUEUE) == 3


def test_weights_give_a_tenant_more_turns(broker: Any, redis_conn: redis.Redis, settings: Settings) -> None:
    redis_conn.hset(weights_key(settings.redis_namespace), "heavy", 3)
    _publish(broker, "heavy", 300)
    _publish(broker, "light", 300)
    assert Counter(_tenants(broker.fetch(QUEUE, 200))) == {"heavy": 150, "light": 50}


def test_a_message_gone_from_the_hash_is_skipped_and_not_held(
    broker: Any, redis_conn: redis.Redis, settings: Settings
) -> None:
    ids = _publish(broker, "a", 3)
    redis_conn.hdel(f"{settings.redis_namespace}:{QUEUE}.msgs", ids[0])  # an orphan's id in its lane
    fetched = broker.fetch(QUEUE, 10)
    assert [json.loads(m)["options"]["redis_message_id"] for m in fetched] == ids[1:]
    acks = redis_conn.smembers(f"{settings.redis_namespace}:__acks__.{broker.broker_id}.{QUEUE}")
    assert acks == {i.encode() for i in ids[1:]}


def test_one_tenants_backlog_does_not_hold_back_anothers_jobs(
    farm: Farm, settings: Settings, api: TestClient[Any], wait_job: JobWaiter
) -> None:
    """A backlog of minutes (2,000 jobs of 50 ms on 4 threads) of one tenant; the other's jobs,
    published behind it, each start within a second."""
    farm.settings = settings.replace(worker_queues=("test_sleep",))
    farm.worker(threads=4)
    shop_a = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read', tenant='shop-a')}"}
    shop_b = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read', tenant='shop-b')}"}
    job = {"type": "test_sleep", "payload": {"seconds": 0.05}}
    for _ in range(2):
        assert api.post("/v1/jobs/batch", json={"jobs": [job] * 1000}, headers=shop_a).status_code == 201
    wait_for(lambda: _started("shop-a", settings) > 0, what="the worker to be busy with shop-a's backlog")

    waited = []
    for _ in range(5):
        sent = datetime.now(UTC)
        b = api.post("/v1/jobs", json=job, headers=shop_b).json()
        started = wait_job(b["id"], "running", "succeeded", timeout=10)["started_at"]
        waited.append(datetime.fromisoformat(started) - sent)
    assert max(waited) < timedelta(seconds=1), waited
    assert _started("shop-a", settings) < 1000  # shop-a's backlog was still there all along


def _started(tenant: str, settings: Settings) -> int:
    with transaction(settings) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(jobs.c.tenant == tenant, jobs.c.started_at.isnot(None))
            ).scalar_one()
        )

"""Bare Dramatiq with a no-op actor, as its CLI runs it: `dramatiq bench.peers.dramatiq_noop`.

Default middleware, default RedisBroker (its own Redis database, BENCH_PEER_REDIS_URL). Given the
time it was sent, the actor records its start delay in Redis; otherwise it does nothing.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.peers import LATENCY_KEY, QUEUE

broker = RedisBroker(url=os.environ["BENCH_PEER_REDIS_URL"], namespace="peer")
dramatiq.set_broker(broker)
_stamps = redis.Redis.from_url(os.environ["BENCH_PEER_REDIS_URL"])


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(sent: float | None = None) -> None:
    if sent is not None:
        _stamps.rpush(LATENCY_KEY, time.time() - sent)

"""Celery with a no-op task: prefork pool, Redis broker (its own database), acks_late.

Run by `celery -A bench.peers.celery_noop worker -c 2`. Given the time it was sent, the task
records its start delay in Redis; otherwise it does nothing.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from bench.peers import LATENCY_KEY, QUEUE


def broker_url(redis_url: str) -> str:
    """Celery spells a unix-socket Redis URL redis+socket://; a database is its virtual host."""
    if redis_url.startswith("unix://"):
        path, _, query = redis_url[len("unix://") :].partition("?")
        db = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("db", "0")
        return f"redis+socket://{path}?virtual_host={db}"
    return redis_url


app = Celery("peer", broker=broker_url(os.environ["BENCH_PEER_REDIS_URL"]))
app.conf.update(
    task_acks_late=True,
    # Celery's default (4 per process): enough to keep a process busy on no-op tasks.
    worker_prefetch_multiplier=4,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)
_stamps: redis.Redis | None = None


@app.task(name="noop")
def noop(sent: float | None = None) -> None:
    global _stamps
    if sent is not None:
        if _stamps is None:  # one client per prefork child, made after the fork
            _stamps = redis.Redis.from_url(os.environ["BENCH_PEER_REDIS_URL"])
        _stamps.rpush(LATENCY_KEY, time.time() - sent)

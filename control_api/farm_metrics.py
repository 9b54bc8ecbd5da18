"""The farm's processes on /metrics, for the alerts that say a queue or the farm has nobody to run
it (deploy/observability/jobyard-rules.yaml, docs/operations/alerts.md): the live workers that
consume each queue, and the schedulers' heartbeats (core/engine/scheduler_beats.py).

`jobyard_workers_alive` counts the farm's workers; a queue that none of them consumes (its worker
group scaled to zero, crashing at boot) still waits forever, so the per-queue count is what the
JobyardNoWorkerForQueue alert reads. Every known queue has a sample, 0 included.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from core.engine.queues import Overview
from core.engine.scheduler_beats import DEAD_AFTER_S, read_beats


def farm_families(overview: Overview, client: redis.Redis, namespace: str) -> Iterator[Metric]:
    per_queue = GaugeMetricFamily(
        "jobyard_queue_workers_alive",
        "Worker processes that beat recently and consume the queue.",
        labels=["queue"],
    )
    queues = {q.name for q in overview.queues} | {q for w in overview.workers.items for q in w.queues}
    for queue in sorted(queues):
        per_queue.add_metric([queue], sum(1 for w in overview.workers.items if queue in w.queues))
    yield per_queue
    if overview.redis_error:
        return  # jobyard_redis_up says so; the beats are in Redis
    try:
        beats = read_beats(client, namespace)
    except (redis.RedisError, OSError):
        return
    yield GaugeMetricFamily(
        "jobyard_schedulers_alive",
        f"Scheduler processes that beat within the last {DEAD_AFTER_S:.0f} s.",
        value=beats.alive,
    )
    yield GaugeMetricFamily(
        "jobyard_scheduler_last_beat_age_seconds",
        "Seconds since any scheduler last beat (+Inf: none did in the last day).",
        value=float("inf") if beats.last_beat_age_s is None else beats.last_beat_age_s,
    )

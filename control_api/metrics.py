"""GET /metrics in Prometheus's text format (scope `ops`).

Two sources. HTTP metrics (`jobyard_http_*`) come from Litestar's Prometheus middleware, counted in
each API process (with ``--workers N`` set PROMETHEUS_MULTIPROC_DIR, as prometheus-client wants).
Job metrics (`jobyard_job*`, queue and worker gauges) are computed at scrape time from Postgres and
Redis, never counted in memory: every API process answers the same, whichever workers ran the jobs,
and a restart of anything loses nothing. The workers write nothing extra for them. The history's
metrics (rows, pruning, table sizes, the xmin horizon) are control_api/history_metrics.py's; the
workers per queue and the schedulers' heartbeats control_api/farm_metrics.py's. The alert rules and
the Grafana dashboard built on all of them are in deploy/observability/.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from litestar import Response, get
from litestar.datastructures import State
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection

from control_api.auth import OPS_READ, reaches_every_tenant
from control_api.farm_metrics import farm_families
from control_api.history_metrics import history_families
from control_api.http_metrics import HttpMetricsMiddleware
from core.engine import stats as job_stats
from core.engine.job_types import job_types
from core.engine.jobs import JobStatus, utcnow
from core.engine.queues import Overview, queue_overview
from core.platform.db import snapshot
from core.platform.tables import webhook_deliveries, webhook_endpoints

#: HTTP metrics: paths grouped by route template (/v1/jobs/{job_id}), so ids do not make series.
#: The middleware is Litestar's, lightened (control_api/http_metrics.py).
PROMETHEUS = PrometheusConfig(
    app_name="jobyard", prefix="jobyard_http", group_path=True, middleware_class=HttpMetricsMiddleware
)


class _Fixed(Collector):
    """Metric families computed for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _job_families(counters: job_stats.Counters, overview: Overview) -> Iterator[Metric]:
    finished = CounterMetricFamily(
        "jobyard_jobs_finished",
        "Jobs that reached a final outcome (succeeded, dead); a redriven job counts again.",
        labels=["type", "outcome"],
    )
    known = {(name, status) for name in job_types() for status in (JobStatus.SUCCEEDED, JobStatus.DEAD)}
    for type_, status in sorted(known | set(counters.finished)):
        finished.add_metric([type_, status], counters.finished.get((type_, status), 0))
    yield finished

    attempts = CounterMetricFamily(
        "jobyard_job_attempts", "Finished attempts by outcome.", labels=["type", "outcome"]
    )
    for (type_, outcome), n in sorted(counters.attempts.items()):
        attempts.add_metric([type_, outcome], n)
    yield attempts

    retries = CounterMetricFamily(
        "jobyard_job_retries", "Failed attempts whose job was tried again.", labels=["type"]
    )
    for type_ in sorted(set(job_types()) | set(counters.retries)):
        retries.add_metric([type_], counters.retries.get(type_, 0))
    yield retries

    durations = HistogramMetricFamily(
        "jobyard_job_duration_seconds", "Run time of finished attempts.", labels=["type", "outcome"]
    )
    for (type_, outcome), tally in sorted(counters.durations.items()):
        cumulative, buckets = 0, []
        for bound, n in zip((*job_stats.DURATION_BUCKETS_S, float("inf")), tally.buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        durations.add_metric([type_, outcome], buckets, sum_value=tally.duration_s)
    yield durations

    yield from _gauges(overview)


def _gauges(overview: Overview) -> Iterator[Metric]:
    labels = ["type", "queue"]
    per_type: list[tuple[str, str, Any]] = [
        ("jobyard_jobs_queued", "Jobs queued in Postgres (ready, or fetched by a worker).", "queued"),
        ("jobyard_jobs_delayed", "Scheduled or retrying jobs already due, not yet published.", "delayed"),
        ("jobyard_jobs_running", "Jobs a worker is running.", "running"),
        ("jobyard_jobs_retrying", "Jobs waiting for their next attempt.", "retrying"),
        ("jobyard_scheduled_jobs", "Jobs waiting for their run time.", "scheduled"),
        ("jobyard_dead_letters", "Jobs in the dead letters.", "dead"),
        (
            "jobyard_queue_oldest_ready_age_seconds",
            "Seconds the longest-waiting queued job has waited (0 when none).",
            "oldest_ready_age_s",
        ),
    ]
    for name, doc, attr in per_type:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for row in overview.items:
            family.add_metric([row.type, row.queue], getattr(row, attr) or 0)
        yield family
    depth = GaugeMetricFamily(
        "jobyard_queue_depth", "Messages waiting in the queue's Redis list.", labels=["queue"]
    )
    for queue in overview.queues:
        if queue.ready is not None:
            depth.add_metric([queue.name], queue.ready)
    yield depth
    yield GaugeMetricFamily(
        "jobyard_redis_up", "Whether Redis answered this scrape.", value=0 if overview.redis_error else 1
    )
    yield GaugeMetricFamily(
        "jobyard_workers_alive", "Worker processes that beat recently.", value=overview.workers.alive
    )


def _paused_family(overview: Overview) -> Metric:
    """1 for each paused queue, 0 for the others: alerts on a queue's age or depth can leave out
    the queues someone paused on purpose (core/engine/pauses.py)."""
    paused = GaugeMetricFamily(
        "jobyard_queue_paused", "Whether the queue is paused (its jobs wait, none starts).", labels=["queue"]
    )
    for queue in overview.queues:
        paused.add_metric([queue.name], 1 if queue.paused else 0)
    return paused


def _job_metrics(state: State) -> bytes:
    settings = state.settings
    now = utcnow()
    job_stats.refresh(settings, now)
    with snapshot(settings) as conn:
        counters = job_stats.counters(job_stats.totals(conn))
        overview = queue_overview(
            conn, state.health_redis, settings.redis_namespace, now, settings.worker_dead_after_s
        )
        families = [
            *_job_families(counters, overview),
            *history_families(conn, settings, overview, now),
            *_webhook_families(conn),
            _paused_family(overview),
            *farm_families(overview, state.health_redis, settings.redis_namespace),
        ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def _webhook_families(conn: Connection) -> Iterator[Metric]:
    """The webhook endpoints the farm disabled or a caller did, and the deliveries waiting (read from
    the partial indexes of endpoints' pending deliveries)."""
    e, d = webhook_endpoints.c, webhook_deliveries.c
    disabled = conn.execute(sa.select(sa.func.count()).where(~e.enabled)).scalar_one()
    yield GaugeMetricFamily(
        "jobyard_webhook_endpoints_disabled", "Webhook endpoints that are disabled.", value=disabled
    )
    pending = conn.execute(sa.select(sa.func.count()).where(d.status == "pending")).scalar_one()
    yield GaugeMetricFamily(
        "jobyard_webhook_deliveries_pending",
        "Webhook deliveries waiting to be sent or tried again.",
        value=pending,
    )


def _http_metrics() -> bytes:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


@get(
    "/metrics",
    guards=[OPS_READ, reaches_every_tenant],
    sync_to_thread=True,
    tags=["queues and health"],
    media_type=CONTENT_TYPE_LATEST,
)
def metrics(state: State) -> Response[bytes]:
    """Prometheus text format: HTTP metrics of this process, then job, queue and worker metrics.
    The farm's, every tenant's together: a key that reaches every tenant (`admin`) only."""
    return Response(_http_metrics() + _job_metrics(state), media_type=CONTENT_TYPE_LATEST)

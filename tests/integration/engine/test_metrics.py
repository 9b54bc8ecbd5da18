"""GET /metrics: Prometheus text that prometheus-client parses, job counters that say exactly what the
workers did (two worker processes, an API process restarted in between, the minutes rolled up), and
HTTP metrics grouped by route."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.engine import stats as job_stats
from core.engine.jobs import utcnow
from core.platform.db import snapshot, transaction
from core.platform.settings import Settings
from core.platform.tables import job_stats_rollup
from tests.integration.conftest import Farm, make_key
from tests.services import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(base: str, key: str) -> Samples:
    r = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _job_figures(samples: Samples) -> dict[str, float]:
    flaky = {"type": "test_flaky"}
    return {
        "succeeded": _get(samples, "jobyard_jobs_finished_total", outcome="succeeded", **flaky),
        "dead": _get(samples, "jobyard_jobs_finished_total", outcome="dead", **flaky),
        "attempts_succeeded": _get(samples, "jobyard_job_attempts_total", outcome="succeeded", **flaky),
        "attempts_failed": _get(samples, "jobyard_job_attempts_total", outcome="failed", **flaky),
        "retries": _get(samples, "jobyard_job_retries_total", **flaky),
        "durations": _get(samples, "jobyard_job_duration_seconds_count", outcome="succeeded", **flaky),
        "slow_bucket": _get(
            samples, "jobyard_job_duration_seconds_bucket", outcome="succeeded", le="+Inf", **flaky
        ),
        "dead_letters": _get(samples, "jobyard_dead_letters", queue="test_flaky", **flaky),
        "workers": _get(samples, "jobyard_workers_alive"),
    }


EXPECTED = {
    "succeeded": 90,
    "dead": 10,
    "attempts_succeeded": 90,
    "attempts_failed": 10,
    "retries": 0,
    "durations": 90,
    "slow_bucket": 90,
    "dead_letters": 10,
    "workers": 2,
}


def _run_100_jobs(client: httpx.Client) -> list[str]:
    """90 jobs that succeed and 10 that die at once, enqueued in one batch; their ids."""
    ok = [{"type": "test_flaky", "payload": {}} for _ in range(90)]
    bad = [{"type": "test_flaky", "payload": {"fail_times": 1, "error": "permanent"}} for _ in range(10)]
    r = client.post("/v1/jobs/batch", json={"jobs": ok + bad})
    assert r.status_code == 201, r.text
    return [j["id"] for j in r.json()["items"]]


def test_metrics_count_exactly_what_the_workers_did(farm: Farm, settings: Settings) -> None:
    key = make_key(settings, "ops", "admin", "jobs:write", "jobs:read")
    farm.worker(processes=2)
    api, base = farm.api()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        ids = _run_100_jobs(client)

        def finished() -> bool:
            statuses = [client.get(f"/v1/jobs/{i}").json()["status"] for i in ids[-10:]]
            return (
                statuses == ["dead"] * 10
                and _scrape(base, key)[
                    ("jobyard_jobs_finished_total", (("outcome", "succeeded"), ("type", "test_flaky")))
                ]
                == 90
            )

        wait_for(finished, timeout=30, interval=0.2, what="the 100 jobs to finish")
    assert _job_figures(_scrape(base, key)) == EXPECTED

    # Another API process, after a restart, computes the same: nothing was counted in memory.
    api.stop()
    _, base = farm.api()
    assert _job_figures(_scrape(base, key)) == EXPECTED

    # Minutes later those attempts are folded into the rolled-up totals: still the same, counted once.
    with snapshot(settings) as conn:
        chart_before = job_stats.per_minute(conn, utcnow())
    job_stats.refresh(settings, utcnow() + timedelta(minutes=5))
    with transaction(settings) as conn:
        rolled_until = conn.execute(sa.select(job_stats_rollup.c.rolled_until)).scalar_one()
    assert rolled_until > utcnow()
    assert _job_figures(_scrape(base, key)) == EXPECTED
    with snapshot(settings) as conn:
        chart_after = job_stats.per_minute(conn, utcnow())
    assert sum(p.succeeded for p in chart_after) == sum(p.succeeded for p in chart_before) == 90
    assert sum(p.dead for p in chart_after) == 10


def test_http_metrics_group_paths_and_metrics_need_ops(api: TestClient[Any], settings: Settings) -> None:
    job = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}}).json()
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 200
    body = api.get("/metrics").text
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(body)
        if f.name == "jobyard_http_requests"
        for s in f.samples
        if s.name == "jobyard_http_requests_total"
    }
    grouped = {dict(k)["path"] for k in requests}
    assert "/v1/jobs/{job_id}" in grouped
    assert not any(job["id"] in p for p in grouped)

    reader = make_key(settings, "jobs:read")
    assert api.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401

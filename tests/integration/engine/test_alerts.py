"""The alerts of deploy/observability/ in a real Prometheus (Debian's /usr/bin/prometheus) scraping a
real farm (an API and a worker process) with a bearer token: 20 jobs die and the dead-letter alert
fires (Done-when 3 of issue 22). Also the metrics those alerts read that a farm's processes make:
the workers per queue and the schedulers' heartbeats."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.engine.scheduler_beats import beats_key
from core.platform.settings import Settings
from tests.deployfiles import PROMETHEUS_CONFIG, RULES, alert_rules, dashboard_exprs, metric_names
from tests.integration.conftest import Farm, make_key
from tests.services import Process, wait_for

PROMETHEUS = "/usr/bin/prometheus"
DEAD_LETTERS_ALERT = "JobyardDeadLettersGrowing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def prometheus(tmp_path: Path, api_base: str, key: str) -> Iterator[httpx.Client]:
    """Prometheus on a free port with the example prometheus.yml, pointed at the test's API and key,
    scraping and evaluating every second (the example's 15 s would make the test wait minutes). The
    rule file is the real one, unchanged. Yields a client of Prometheus's HTTP API."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    key_file = tmp_path / "jobyard-api-key"
    key_file.write_text(key)
    key_file.chmod(0o400)
    [job] = config["scrape_configs"]
    job["authorization"]["credentials_file"] = str(key_file)
    job["scrape_timeout"] = "1s"
    job["static_configs"] = [{"targets": [api_base.removeprefix("http://")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    argv = [
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = Process(argv, {"PATH": "/usr/bin:/bin"}, tmp_path / "prometheus.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            def ready() -> bool:
                assert proc.alive(), proc.log()
                try:
                    return client.get("/-/ready").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, timeout=30, interval=0.2, what="Prometheus to start")
            yield client
    finally:
        proc.stop()


def _target(client: httpx.Client) -> dict[str, Any]:
    """The one scrape target ({} until Prometheus has set it up)."""
    targets: list[dict[str, Any]] = client.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert len(targets) <= 1, targets
    return targets[0] if targets else {}


def _query(client: httpx.Client, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = client.get("/api/v1/query", params={"query": promql}).json()["data"][
        "result"
    ]
    return result


def _alerts(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    alerts = client.get("/api/v1/alerts").json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name]


def test_prometheus_scrapes_with_a_bearer_token_and_the_dead_letter_alert_fires_after_20_jobs_die(
    farm: Farm, settings: Settings, tmp_path: Path
) -> None:
    scraper = make_key(settings, "ops", "admin", name="prometheus")
    producer = make_key(settings, "jobs:write", "jobs:read", name="producer")
    farm.worker()
    _, base = farm.api()
    # Without the token, or with another one, /metrics refuses the scrape.
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer jy_" + "x" * 32}
    assert httpx.get(f"{base}/metrics", headers=wrong, timeout=10).status_code == 401

    with prometheus(tmp_path, base, scraper) as prom:
        # The token works: the target is up, and the dead-job counter has its first sample (0), the
        # start of the increase the alert measures.
        wait_for(lambda: _target(prom).get("health") == "up", timeout=20, interval=0.2, what="the target up")
        dead = 'jobyard_jobs_finished_total{type="test_flaky",outcome="dead"}'
        wait_for(lambda: _query(prom, dead), timeout=20, interval=0.2, what="the first scrape's samples")
        assert _query(prom, dead)[0]["value"][1] == "0"
        assert _alerts(prom, DEAD_LETTERS_ALERT) == []

        # Every metric the alert rules read is one Prometheus scraped from the farm, and Prometheus
        # runs every query of the Grafana dashboard (its variables given values, as Grafana does).
        scraped = set(prom.get("/api/v1/label/__name__/values").json()["data"])
        for rule in alert_rules():
            assert metric_names(rule["expr"]) <= scraped, rule["alert"]
        for expr in dashboard_exprs():
            promql = expr.replace("$queue", ".*").replace("$__rate_interval", "1m")
            if not promql.startswith("label_values("):  # a variable's query, Grafana's own syntax
                answer = prom.get("/api/v1/query", params={"query": promql}).json()
                assert answer["status"] == "success", (expr, answer)

        # 20 jobs that fail for good: each goes to the dead letters at its first attempt.
        jobs = [{"type": "test_flaky", "payload": {"fail_times": 1, "error": "permanent"}}] * 20
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {producer}"}, timeout=10) as api:
            r = api.post("/v1/jobs/batch", json={"jobs": jobs})
            assert r.status_code == 201, r.text
            ids = [job["id"] for job in r.json()["items"]]

            def all_dead() -> bool:
                return all(api.get(f"/v1/jobs/{i}").json()["status"] == "dead" for i in ids)

            wait_for(all_dead, timeout=30, interval=0.2, what="the 20 jobs to die")

        # It fires from the 10th death on: wait until Prometheus has counted all 20 in it.
        def firing() -> dict[str, Any] | None:
            alerts = _alerts(prom, DEAD_LETTERS_ALERT)
            return next((a for a in alerts if a["state"] == "firing" and float(a["value"]) >= 20), None)

        alert = wait_for(firing, timeout=45, interval=0.5, what=f"{DEAD_LETTERS_ALERT} to fire for 20 jobs")
        assert alert["labels"] == {
            "alertname": DEAD_LETTERS_ALERT,
            "severity": "warning",
            "type": "test_flaky",
        }
        assert alert["annotations"]["runbook"] == "docs/operations/alerts.md#jobyarddeadlettersgrowing"
        target = _target(prom)
        assert (target["health"], target["lastError"]) == ("up", "")


def _gauges(base: str, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_show_the_workers_of_each_queue_and_the_schedulers_alive(
    farm: Farm, settings: Settings
) -> None:
    key = make_key(settings, "ops", "admin")
    _, base = farm.api()
    before = _gauges(base, key)
    # No scheduler has ever beaten in this farm's namespace, and no worker runs.
    assert before[("jobyard_schedulers_alive", ())] == 0
    assert before[("jobyard_scheduler_last_beat_age_seconds", ())] == float("inf")
    assert before[("jobyard_queue_workers_alive", (("queue", "test_flaky"),))] == 0

    farm.scheduler()
    farm.worker()  # the light group: every queue but scrape and embeddings

    def alive() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        gauges = _gauges(base, key)
        return gauges if gauges[("jobyard_schedulers_alive", ())] == 1 else None

    after = wait_for(alive, timeout=20, interval=0.2, what="the scheduler's beat")
    assert after[("jobyard_scheduler_last_beat_age_seconds", ())] < 10
    assert after[("jobyard_queue_workers_alive", (("queue", "test_flaky"),))] == 1
    assert after[("jobyard_queue_workers_alive", (("queue", "scrape"),))] == 0
    assert after[("jobyard_workers_alive", ())] == 1


def test_a_scheduler_silent_for_a_minute_counts_as_gone(
    api: TestClient[Any], redis_conn: redis.Redis, settings: Settings
) -> None:
    # The beat a scheduler that stopped a minute ago left, on Redis's clock as every beat.
    seconds, _ = redis_conn.time()
    redis_conn.zadd(beats_key(settings.redis_namespace), {"gone-host-4242": seconds - 60})
    gauges = {
        s.name: s.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for s in family.samples
        if s.name.startswith("jobyard_scheduler")
    }
    assert gauges["jobyard_schedulers_alive"] == 0
    assert 60 <= gauges["jobyard_scheduler_last_beat_age_seconds"] < 70

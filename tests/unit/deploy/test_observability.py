"""deploy/observability/ checked offline: promtool accepts the alert rules and the example
prometheus.yml, each alert fires when it should and not before (`promtool test rules`), each names
its runbook section in docs/operations/alerts.md, and the rules and the Grafana dashboard name only
metrics /metrics exposes. (tests/integration/engine/test_alerts.py runs them in a real Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deployfiles import (
    DASHBOARD,
    PROMETHEUS_CONFIG,
    RULES,
    alert_rules,
    dashboard_exprs,
    exposed_metrics,
    metric_names,
)
from tests.services import ROOT

RUNBOOKS = ROOT / "docs" / "operations" / "alerts.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def _annotations(alert: str, summary: str) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them: the summary given, the rest as written."""
    annotations: dict[str, str] = next(r for r in alert_rules() if r["alert"] == alert)["annotations"]
    return {**annotations, "summary": summary}


def _fires(alert: str, at: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations(alert, summary)}],
    }


def _quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _run_rule_tests(tmp_path: Path, series: dict[str, str], checks: list[dict[str, Any]]) -> None:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        ],
    }
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_example_prometheus_config(tmp_path: Path) -> None:
    # Beside its rule file, as the docs say to install it; its key file where it says.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    key = tmp_path / "jobyard-api-key"
    key.write_text("jy_" + "x" * 32)
    for job in config["scrape_configs"]:
        job["authorization"]["credentials_file"] = str(key)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / RULES.name)
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert config["rule_files"] == [RULES.name]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["jobyard"]  # as the rules read `up`


def test_the_job_alerts_fire_when_they_should(tmp_path: Path) -> None:
    series = {
        # Two whatsapp_message jobs die a minute from the 11th minute: ten in 15 minutes by the 15th.
        'jobyard_jobs_finished_total{type="whatsapp_message",outcome="dead"}': "0x10 2+2x20",
        'jobyard_jobs_finished_total{type="whatsapp_message",outcome="succeeded"}': "0+100x30",
        # A job of another type dies every 3 minutes: never ten in 15 minutes.
        'jobyard_jobs_finished_total{type="scrape",outcome="dead"}': "0+0.34x30",
        # Embeddings wait longer and longer from the 5th minute: over 10 minutes at the 16th.
        'jobyard_queue_oldest_ready_age_seconds{type="embed",queue="embeddings"}': "0x5 60+60x30",
        'jobyard_queue_oldest_ready_age_seconds{type="scrape",queue="scrape"}': "30x35",
        # Paused on purpose all along: its jobs wait an hour and nobody is paged.
        'jobyard_queue_oldest_ready_age_seconds{type="whatsapp_message",queue="whatsapp_message"}': "3600x35",
        'jobyard_queue_paused{queue="whatsapp_message"}': "1x35",
        'jobyard_queue_paused{queue="embeddings"}': "0x35",
    }
    _run_rule_tests(
        tmp_path,
        series,
        [
            _quiet("JobyardDeadLettersGrowing", "13m"),
            _fires(
                "JobyardDeadLettersGrowing",
                "16m",
                "12 whatsapp_message jobs went to the dead letters in 15 minutes",
                severity="warning",
                type="whatsapp_message",
            ),
            # Over 10 minutes from the 16th, but not yet for 5 minutes.
            _quiet("JobyardOldestReadyJobTooOld", "19m"),
            _fires(
                "JobyardOldestReadyJobTooOld",
                "22m",
                "The oldest ready job of queue embeddings has waited 17m 0s",
                severity="warning",
                queue="embeddings",
            ),
        ],
    )


def test_the_farm_alerts_fire_when_they_should(tmp_path: Path) -> None:
    # From the 4th minute: the embeddings workers are gone with 5 jobs queued, the scrape workers are
    # gone with nothing queued, the scheduler stops beating, Redis and the API stop answering.
    series = {
        'jobyard_jobs_queued{type="embed",queue="embeddings"}': "0x3 5x30",
        'jobyard_queue_workers_alive{queue="embeddings"}': "1x3 0x30",
        'jobyard_jobs_queued{type="scrape",queue="scrape"}': "0x33",
        'jobyard_queue_workers_alive{queue="scrape"}': "1x3 0x30",
        'jobyard_jobs_queued{type="whatsapp_message",queue="whatsapp_message"}': "3x33",
        'jobyard_queue_workers_alive{queue="whatsapp_message"}': "2x33",
        'jobyard_schedulers_alive{instance="api:8000"}': "1x3 0x30",
        'jobyard_redis_up{instance="api:8000"}': "1x3 0x30",
        'up{job="jobyard",instance="api:8000"}': "1x3 0x30",
    }
    _run_rule_tests(
        tmp_path,
        series,
        [
            _quiet("JobyardNoWorkerForQueue", "8m"),
            _fires(
                "JobyardNoWorkerForQueue",
                "10m",
                "5 jobs wait in queue embeddings and no live worker consumes it",
                severity="critical",
                queue="embeddings",
            ),
            _quiet("JobyardSchedulerDown", "5m"),
            _fires(
                "JobyardSchedulerDown",
                "7m",
                "No Jobyard scheduler has beaten in the last 30 seconds",
                severity="critical",
            ),
            _quiet("JobyardRedisDown", "4m"),
            _fires("JobyardRedisDown", "6m", "Redis does not answer the Jobyard API", severity="critical"),
            _quiet("JobyardApiOrPostgresDown", "5m"),
            _fires(
                "JobyardApiOrPostgresDown",
                "7m",
                "Prometheus cannot scrape the Jobyard API at api:8000",
                severity="critical",
                job="jobyard",
                instance="api:8000",
            ),
        ],
    )


def test_the_alerts_fire_when_pruning_stops_or_a_transaction_stays_open(tmp_path: Path) -> None:
    # Prune lag grows a minute a minute from 50 minutes (pruning has stopped); a transaction is open
    # for 40 minutes and counting; the xmin horizon stays young.
    series = {
        'jobyard_prune_lag_seconds{table="jobs",status="succeeded"}': "3000+60x120",
        'jobyard_prune_lag_seconds{table="audit_log",status=""}': "0x120",
        "jobyard_postgres_oldest_transaction_seconds": "2400+60x120",
        "jobyard_postgres_xmin_age_transactions": "5000+100x120",
    }
    _run_rule_tests(
        tmp_path,
        series,
        [
            # Over an hour at 10m, but not yet for 15 minutes.
            _quiet("JobyardPruneLagging", "20m"),
            _fires(
                "JobyardPruneLagging",
                "40m",
                "jobs succeeded rows are 1h 30m 0s past their retention",
                severity="warning",
                table="jobs",
                status="succeeded",
            ),
            _quiet("JobyardPruneStalled", "40m"),
            _quiet("JobyardLongTransaction", "3m"),
            _fires(
                "JobyardLongTransaction",
                "10m",
                "A Postgres transaction has been open for 50m 0s",
                severity="warning",
            ),
            _quiet("JobyardXminHorizonOld", "100m"),
        ],
    )


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        m.lower() for m in re.findall(r"^#{2,3} (Jobyard[A-Za-z]+)$", RUNBOOKS.read_text(), re.MULTILINE)
    }
    for rule in alert_rules():
        assert rule["alert"].startswith("Jobyard"), rule["alert"]
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == str(RUNBOOKS.relative_to(ROOT)), rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]


def test_the_rules_and_the_dashboard_name_only_metrics_jobyard_exposes() -> None:
    exposed = exposed_metrics()
    for expr in [rule["expr"] for rule in alert_rules()] + dashboard_exprs():
        named = metric_names(expr)
        assert named <= exposed, (expr, named - exposed)


def test_the_dashboard_shows_the_farm_from_an_imported_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    # Grafana's import asks for the data source the `${DS_PROMETHEUS}` input names.
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            assert panel["targets"], panel["title"]
    shown = set().union(*map(metric_names, dashboard_exprs()))
    assert {
        "jobyard_queue_depth",
        "jobyard_queue_oldest_ready_age_seconds",
        "jobyard_jobs_finished_total",
        "jobyard_job_duration_seconds_bucket",
        "jobyard_dead_letters",
        "jobyard_workers_alive",
        "jobyard_queue_workers_alive",
        "jobyard_schedulers_alive",
        "jobyard_job_retries_total",
        "jobyard_http_requests_total",
        "jobyard_http_request_duration_seconds_bucket",
        "jobyard_prune_lag_seconds",
        "jobyard_webhook_deliveries_pending",
    } <= shown

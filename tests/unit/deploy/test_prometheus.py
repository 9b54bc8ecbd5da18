"""The Prometheus alert rules (deploy/prometheus/), checked offline: promtool accepts them, they fire
when they should and not before, and they name only metrics /metrics exposes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.deployfiles import DEPLOY
from tests.services import ROOT

RULES = DEPLOY / "prometheus" / "jobyard-rules.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def _description(alert: str) -> str:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    description: str = next(r for r in rules if r["alert"] == alert)["annotations"]["description"]
    return description


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_when_pruning_stops_or_a_transaction_stays_open(tmp_path: Path) -> None:
    # Prune lag grows a minute a minute from 50 minutes (pruning has stopped); a transaction is open
    # for 40 minutes and counting; the xmin horizon stays young.
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'jobyard_prune_lag_seconds{table="jobs",status="succeeded"}',
                        "values": "3000+60x120",
                    },
                    {
                        "series": 'jobyard_prune_lag_seconds{table="audit_log",status=""}',
                        "values": "0x120",
                    },
                    {"series": "jobyard_postgres_oldest_transaction_seconds", "values": "2400+60x120"},
                    {"series": "jobyard_postgres_xmin_age_transactions", "values": "5000+100x120"},
                ],
                "alert_rule_test": [
                    # Over an hour at 10m, but not yet for 15 minutes.
                    {"eval_time": "20m", "alertname": "JobyardPruneLagging", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "JobyardPruneLagging",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "table": "jobs", "status": "succeeded"},
                                "exp_annotations": {
                                    "summary": "jobs succeeded rows are 1h 30m 0s past their retention",
                                    "description": _description("JobyardPruneLagging"),
                                },
                            }
                        ],
                    },
                    {"eval_time": "40m", "alertname": "JobyardPruneStalled", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "JobyardLongTransaction", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "JobyardLongTransaction",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {
                                    "summary": "A Postgres transaction has been open for 50m 0s",
                                    "description": _description("JobyardLongTransaction"),
                                },
                            }
                        ],
                    },
                    {"eval_time": "100m", "alertname": "JobyardXminHorizonOld", "exp_alerts": []},
                ],
            }
        ],
    }
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_name_only_metrics_jobyard_exposes() -> None:
    exposed = {
        name
        for module in ("history_metrics.py", "metrics.py")
        for name in re.findall(r'"(jobyard_[a-z_]+)"', (ROOT / "control_api" / module).read_text())
    }
    rules = yaml.safe_load(RULES.read_text())
    named = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bjobyard_[a-z_]+", rule["expr"])
    }
    assert named and named <= exposed, named - exposed

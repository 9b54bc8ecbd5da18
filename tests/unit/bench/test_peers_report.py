"""The report's section on the queue peers, without services: a row per system, the ratios of issue 23
with their goals, the peers that could not run named with the reason, and the goals table."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.peers import queues

META = {
    "date": "d",
    "commit": "c",
    "cpus": 2,
    "load_average_at_end": [1, 1, 1],
    "seconds": 60,
    "command": "x",
}


def _lat(p50: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p99, "max_ms": p99, "jobs": 300, **extra}


def _drain(rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "steady_per_s": rate,
        "whole_per_s": rate * 0.9,
        "seconds": 1.0,
        "cpu_ms_per_1000_jobs": 100.0,
        **extra,
    }


def _enqueue(rate: float) -> dict[str, Any]:
    return {"jobs_per_s": rate, "tasks": 16, "client_cpu_share": 0.25}


OBAN_MISSING = {"error": "Oban needs Python >= 3.12: no peers' venv at /x", "unavailable": True}


def _results() -> dict[str, Any]:
    part = {"finished": _lat(8, 20), "http_answer": _lat(3, 10), "postgres_commit": _lat(1, 5)}
    return {
        "latency": {
            "rate_per_s": 100.0,
            "jobyard": _lat(1.2, 9.0, **part),
            "dramatiq": _lat(4.0, 18.0),
            "celery": _lat(1.5, 5.0),
            "procrastinate": _lat(8.0, 130.0, version="3.10.0"),
            "pgqueuer": _lat(6.0, 300.0, version="1.6.0"),
            "oban": OBAN_MISSING,
            "arq": {"error": "RuntimeError: boom\nmore"},
        },
        "drain": {
            "jobs": 3000,
            "jobyard": _drain(6000.0),
            "dramatiq": _drain(1500.0),
            "celery": _drain(800.0),
            "ratio_vs_dramatiq": 4.0,
            "ratio_vs_celery": 7.5,
            "procrastinate": _drain(500.0, version="3.10.0"),
            "pgqueuer": _drain(1200.0, version="1.6.0"),
            "oban": OBAN_MISSING,
            "arq": _drain(900.0, version="0.28.0"),
            "fastest_postgres_peer": "pgqueuer",
            "ratio_vs_fastest_postgres_peer": 5.0,
        },
        "enqueue": {
            "api_workers": 2,
            "single": {
                **_enqueue(6500.0),
                "connections": 64,
                "client_cpu_share": 0.2,
                "api_cpu_ms_per_1000_jobs": 300.0,
                "server_cpu_ms_per_1000_jobs": 100.0,
                "non_2xx": 0,
            },
            "batch": {
                **_enqueue(30000.0),
                "connections": 4,
                "client_cpu_share": 0.1,
                "api_cpu_ms_per_1000_jobs": 30.0,
                "server_cpu_ms_per_1000_jobs": 20.0,
                "non_2xx": 0,
            },
            "procrastinate": {"version": "3.10.0", "single": _enqueue(700.0), "batch": _enqueue(15000.0)},
            "pgqueuer": {"version": "1.6.0", "single": _enqueue(1000.0), "batch": _enqueue(25000.0)},
            "oban": OBAN_MISSING,
            "arq": {"version": "0.28.0", "single": _enqueue(2000.0)},
            "fastest_postgres_peer_single": "pgqueuer",
            "ratio_vs_fastest_postgres_peer_single": 6.5,
            "fastest_postgres_peer_batch": "pgqueuer",
            "ratio_vs_fastest_postgres_peer_batch": 1.2,
        },
    }


def test_every_peer_has_a_row_and_the_ones_that_could_not_run_say_why() -> None:
    doc = report.markdown(_results(), META)
    assert (
        "| PgQueuer (Postgres) | 1.6.0 | 6.00 / 300.00 | 1,200.0 | 1,080.0 | 100.0 | 1,000.0 | 25,000.0 | - |"
        in doc
    )
    assert "| Oban (Postgres) | - | not run | not run | not run | not run | not run | not run | - |" in doc
    assert "| arq (Redis) | 0.28.0 | failed | 900.0 | 810.0 | 100.0 | 2,000.0 | no batch API | - |" in doc
    assert (
        "| Jobyard | this commit | 1.20 / 9.00 | 6,000.0 | 5,400.0 | 100.0 | 6,500.0 (HTTP) | 30,000.0 (HTTP) |"
        in doc
    )
    assert "- Oban, drain: Oban needs Python >= 3.12: no peers' venv at /x" in doc
    assert (
        "from one process, 16 concurrent tasks" in doc
        and "single jobs: procrastinate 25%, PgQueuer 25%, arq 25%." in doc
    )
    assert "- arq, latency: RuntimeError: boom" in doc and "more" not in doc.split("- arq, latency:")[1][:30]


def test_the_ratios_of_issue_23_and_the_new_goals() -> None:
    doc = report.markdown(_results(), META)
    assert "| Jobyard drain / fastest Postgres peer's drain (PgQueuer) | 5.00 | >= 2x | yes |" in doc
    assert "| Jobyard drain / bare Dramatiq's drain | 4.00 | >= 3x | yes |" in doc
    assert (
        "| Jobyard HTTP enqueue / fastest Postgres peer's own enqueue, batched (PgQueuer) | 1.20 | >= 1.5x | **no** |"
        in doc
    )
    assert "| Jobyard idle latency p50 / Celery's p50 | 0.80 | <= 1x | yes |" in doc
    assert "| Jobyard idle latency p99 / Celery's p99 | 1.80 | <= 2x | yes |" in doc
    assert "| drain >= 2x the fastest Postgres peer | yes |" in doc
    assert (
        "| HTTP enqueue >= 1.5x the fastest Postgres peer's own enqueue (single and batched) | **no** |"
        in doc
    )
    assert "| HTTP enqueue >= 40,000 jobs/s batched | **no** |" in doc
    assert "| HTTP enqueue >= 6,000 jobs/s single | yes |" in doc
    assert "| scheduler dispatch lag p99 < 250 ms | not run |" in doc


def test_without_a_postgres_peer_the_goals_that_need_one_are_not_applicable() -> None:
    results = _results()
    for name in queues.POSTGRES_PEERS:
        results["drain"][name] = OBAN_MISSING
        results["enqueue"][name] = OBAN_MISSING
    for key in ("fastest_postgres_peer", "ratio_vs_fastest_postgres_peer"):
        del results["drain"][key]
    for key in list(results["enqueue"]):
        if "fastest" in key:
            del results["enqueue"][key]
    doc = report.markdown(results, META)
    assert "| drain >= 2x the fastest Postgres peer | n/a |" in doc
    assert "| Jobyard drain / fastest Postgres peer's drain (none ran) | - | >= 2x | n/a |" in doc

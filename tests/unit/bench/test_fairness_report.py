"""The fairness benchmark's parts that need no services: the medians over rounds, the two goals and
the report's section."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import report
from bench.__main__ import parse
from bench.scenarios import fairness


def _round(b_alone_p99: float, b_together_p99: float, a_alone: float, a_together: float) -> dict[str, Any]:
    def b(p99: float) -> dict[str, Any]:
        return {"p50_ms": p99 / 3, "p99_ms": p99, "max_ms": p99 * 1.5, "jobs": 100}

    def a(rate: float) -> dict[str, Any]:
        return {"steady_per_s": rate, "whole_per_s": rate * 0.9, "seconds": 5.0}

    return {
        "b_alone": b(b_alone_p99),
        "a_alone": a(a_alone),
        "together": {"b": b(b_together_p99), "a": a(a_together)},
    }


def test_the_goals_compare_the_medians_of_the_rounds() -> None:
    rounds = [_round(10, 25, 5000, 4500), _round(12, 50, 5200, 4000), _round(30, 28, 4800, 4600)]
    r = fairness.summarize(rounds, None)
    assert (r["b_alone_p99_ms"], r["b_together_p99_ms"]) == (12, 28)
    assert (r["a_alone_per_s"], r["a_together_per_s"]) == (5000, 4500)
    assert (r["b_p99_ratio"], r["a_rate_ratio"]) == (2.33, 0.9)
    assert r["goal_b_p99_within_3x"] and r["goal_a_rate_at_least_0_8x"]

    slow = fairness.summarize([_round(10, 31, 5000, 3900)], None)
    assert not slow["goal_b_p99_within_3x"] and not slow["goal_a_rate_at_least_0_8x"]


def test_the_report_shows_the_figures_every_round_the_goals_and_the_run_without_turns() -> None:
    rounds = [_round(10, 25, 5000, 4500), _round(12, 50, 5200, 4000)]
    same = {
        "b": {"p50_ms": 2100.0, "p99_ms": 4800.0, "max_ms": 4900.0, "jobs": 50},
        "a": {"steady_per_s": 5100},
    }
    results = {"fairness": {"jobs": 50_000, "b_interval_ms": 100.0, **fairness.summarize(rounds, same)}}
    meta = {
        "date": "d",
        "commit": "c",
        "cpus": 2,
        "load_average_at_end": [1, 1, 1],
        "seconds": 60,
        "command": "x",
    }
    doc = report.markdown(results, meta)
    assert "| B enqueue -> start p99, ms | 11.00 | 37.50 | 3.41 | <= 3x | **no** |" in doc
    assert "| A drain, jobs/s (10-90 %) | 5,100.0 | 4,250.0 | 0.83 | >= 0.8x | yes |" in doc
    assert doc.count("\n| 1 | ") == 1 and doc.count("\n| 2 | ") == 1
    assert "B p50 / p99 / max 2,100.00 / 4,800.00 / 4,900.00 ms over 50 jobs" in doc
    assert "| fairness: B's enqueue -> start p99 beside A's backlog <= 3x alone | **no** |" in doc
    assert "| fairness: A's drain beside B >= 0.8x alone | yes |" in doc


def test_fairness_runs_only_when_named_with_its_defaults(tmp_path: Path) -> None:
    assert "fairness" not in parse([]).only
    args: argparse.Namespace = parse(["--only", "fairness", "--out", str(tmp_path)])
    assert args.only == ["fairness"]
    assert (args.fairness_jobs, args.fairness_rounds, args.fairness_baseline) == (50_000, 5, True)

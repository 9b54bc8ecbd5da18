"""The growth benchmark's parts that need no services: the history it writes has the farm's shape
(the columns of job_history, the keys of attempt_log as the farm's move folds them), the days a fill
covers, and the report's growth tables and verdicts."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from bench import report
from bench.scenarios import growth, history
from core.engine import finished
from core.platform.tables import job_history


def test_attempt_log_has_the_keys_of_the_farms_move_in_its_order() -> None:
    folded = re.findall(r"'(\w+)', (\w+)", finished._MOVE.text)
    assert [key for key, _ in folded] == list(history.ATTEMPT)
    assert all(key == column for key, column in folded)


def test_the_fill_writes_every_column_job_history_requires() -> None:
    written = {c.strip() for c in history.JOB_COLUMNS.split(",")} | {"retry_base", "attempt_log"}
    columns = {c.name for c in job_history.columns}
    assert written <= columns
    required = {c.name for c in job_history.columns if not c.nullable and c.server_default is None}
    assert required <= written


def test_a_fill_makes_the_partitions_of_the_days_it_touches() -> None:
    t0 = datetime(2026, 12, 2, tzinfo=UTC)
    kept = history.days(datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 12, 2, 16, 14, tzinfo=UTC))
    assert (kept[0], kept[-1], len(kept)) == (date(2026, 11, 17), t0.date(), 16)
    # The prunable half ends where the kept half's first day begins: that day is not its own.
    prunable = history.days(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC))
    assert (prunable[0], prunable[-1], len(prunable)) == (date(2026, 11, 2), date(2026, 11, 16), 15)


def _sizes(jobs: int, attempts: int, moved: int, parts: int, mib: float) -> dict[str, dict[str, int]]:
    def table(rows: int, share: float) -> dict[str, int]:
        total = int(mib * share * 2**20)
        return {
            "rows": rows,
            "total_bytes": total,
            "index_bytes": total // 3,
            "table_bytes": total - total // 3,
        }

    return {
        "jobs": table(jobs, 0.05),
        "job_attempts": table(attempts, 0.05),
        "job_history": {**table(moved, 0.9), "partitions": parts},
    }


def _growth(after_mib: float) -> dict[str, Any]:
    half = {
        "jobs": 10_000,
        "finished_from": "2026-11-17T00:00:00+00:00",
        "finished_to": "2026-12-02T16:14:00+00:00",
        "partitions_made": 15,
        "insert_s": 1.0,
        "jobs_per_s": 10_000,
        "vacuum_analyze_s": 0.5,
    }
    window = {
        "requests": 5000,
        "failed": {},
        "jobs_per_s": 500.0,
        "p50_ms": 5.0,
        "p99_ms": 20.0,
        "max_ms": 40.0,
    }
    ratio = {"figure": "drain, jobs/s (10-90 %)", "kind": "throughput", "empty": 10.0, "history": 9.5}
    return {
        "history_jobs": 20_000,
        "fill": {
            **{"kept": half, "prunable": half},
            "insert_s": 2.0,
            "jobs_per_s": 10_000,
            "vacuum_analyze_s": 1.0,
        },
        "ratios": [{**ratio, "ratio": 0.95, "met": True, "rounds": [[11.0, 10.0, 9.0], [9.5, 8.0, 9.9]]}],
        "prune": {
            "retention_s": 15 * 86400.0,
            "prune_batch": 500,
            "load_threads": 32,
            "load_rate_asked": 500.0,
            "history_jobs_before": 20_000,
            "history_jobs_after": 9_990,
            "partitions_before": 31,
            "partitions_after": 16,
            "partitions_dropped": [f"job_history_202611{d:02}" for d in range(2, 17)],
            "day_changed": False,
            "pruned_counts": {"jobs/dead": 310, "jobs/succeeded": 9_500, "jobs/cancelled": 200},
            "prune_s": 1.5,
            "jobs_pruned_per_s": 6_673,
            "enqueue_before": window,
            "enqueue_during": {**window, "p99_ms": 30.0},
            "p99_ratio": 1.5,
            "vacuum_s": 0.4,
        },
        "sizes": {
            "before_fill": _sizes(0, 0, 0, 0, 0.2),
            "after_kept_half": _sizes(300, 1200, 9_700, 16, 10.0),
            "after_fill": _sizes(600, 2400, 19_400, 31, 20.0),
            "before_prune": _sizes(600, 2400, 19_400, 31, 22.0),
            "after_prune_vacuum": _sizes(290, 1160, 9_700, 16, after_mib),
        },
        "size_after_vs_before_fill": round(after_mib / 10.0, 2),
        "size_after_vs_empty": round(after_mib / 0.2, 1),
        "verdicts": {
            "throughputs_and_latencies": True,
            "reads_under_100_ms": True,
            "prune_under_60_s": True,
            "prune_p99_under_2x": True,
            "size_within_20_percent_of_before_fill": after_mib <= 12.0,
        },
    }


def test_the_report_gives_the_sizes_of_all_three_tables_at_each_step() -> None:
    lines = report.growth_markdown(_growth(after_mib=11.0))
    text = "\n".join(lines)
    header = next(line for line in lines if line.startswith("| size, MiB"))
    assert header.count("|") == 7  # the label and five steps
    assert "after the kept half" in header and "before the fill (empty)" in header
    for table in ("jobs", "job_attempts", "job_history"):
        assert f"| {table}, table |" in text and f"| {table}, indexes |" in text
    assert "| job_history, partitions | 0 | 16 | 31 | 31 | 16 |" in text
    assert "| days dropped (the prunable half's: 15) | 15: 20261102 to 20261116 |" in text
    assert "1.10x their size after the kept half" in text and "(goal: within 20 %: met)" in text
    assert "crossed UTC midnight" not in text


def test_the_report_gives_every_round_of_both_sides() -> None:
    text = "\n".join(report.growth_markdown(_growth(after_mib=11.0)))
    assert "the median of 3 rounds on each side" in text
    assert "| drain, jobs/s (10-90 %) | 11.0, 10.0, 9.0 | 9.5, 8.0, 9.9 |" in text


def test_several_rounds_make_one_result_of_medians() -> None:
    rounds = [
        {"p50_ms": 5.0, "p99_ms": 30.0, "single": {"jobs_per_s": 100}, "system": "jobyard"},
        {"p50_ms": 4.0, "p99_ms": 20.0, "single": {"jobs_per_s": 300}, "system": "jobyard"},
        {"p50_ms": 6.0, "p99_ms": 90.0, "single": {"jobs_per_s": 200}, "system": "jobyard"},
    ]
    result = growth.median_of(rounds)
    assert (result["p50_ms"], result["p99_ms"], result["single"]["jobs_per_s"]) == (5.0, 30.0, 200)
    assert result["system"] == "jobyard"
    assert result["rounds"] == {"p50_ms": [5.0, 4.0, 6.0], "p99_ms": [30.0, 20.0, 90.0]}
    assert result["single"]["rounds"] == {"jobs_per_s": [100, 300, 200]}


def test_the_size_goal_is_judged_against_the_size_after_the_kept_half() -> None:
    results = {"growth": _growth(after_mib=13.0)}
    text = report.markdown(
        results,
        {"date": "d", "commit": "c", "cpus": 2, "load_average_at_end": [], "seconds": 1.0, "command": "x"},
    )
    assert "1.30x their size after the kept half" in text and "**not met**" in text
    label = "jobs tables after prune + VACUUM within 20 % of their size before the pruned half's fill"
    assert f"| growth: {label} | **no** |" in text
    assert "| growth: pruning the older half of the history < 60 s | yes |" in text

"""The growth benchmark's history on a real Postgres (bench/scenarios/history.py): written as the farm
leaves it, in its two halves; measured over jobs, job_attempts and job_history's partitions; left
alone by a reset, which deletes the measurements' own jobs from both tables; and pruned by the farm's
retention, kept 15 days, down to its kept half: the prunable half's days dropped whole."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench import harness
from bench.harness import Bench
from bench.scenarios import history
from core.engine import finished
from core.engine.retention import prune
from core.platform.db import transaction
from core.platform.settings import Settings

KEEP = timedelta(days=15)
HALF = 600


@pytest.fixture
def bench(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    # A reset also flushes the peers' Redis databases; here it only empties this test's namespace.
    monkeypatch.setattr(harness, "DRAMATIQ_DB", 0)
    monkeypatch.setattr(harness, "CELERY_DB", 0)
    return Bench(workdir=tmp_path, settings=settings)


def _rows(bench: Bench, sql: str, **params: object) -> list[sa.Row[Any]]:
    with transaction(bench.settings) as conn:
        return list(conn.execute(sa.text(sql), params).all())


def test_the_history_is_written_measured_reset_and_pruned_as_the_farm_leaves_it(bench: Bench) -> None:
    bench.since = history.db_now(bench)  # as the growth scenario: the history is older than what it measures
    today = history.today_start(bench)
    end = history.db_now(bench) - timedelta(minutes=3)
    kept = history.fill(bench, HALF, 1, today - KEEP, end, "kept")
    after_kept = history.sizes(bench)
    prunable = history.fill(bench, HALF, HALF + 1, today - 2 * KEEP, today - KEEP, "prunable")
    assert kept["partitions_made"] == len(history.days(today - KEEP, end))
    assert prunable["partitions_made"] == 15
    kept_days = history.partitions(bench)[15:]

    # Dead jobs in jobs, each with its 4 attempts; the others in job_history, their attempts folded.
    assert _rows(bench, "SELECT DISTINCT status, attempts FROM jobs") == [("dead", 4)]
    assert bench.scalar("SELECT count(*) FROM job_attempts") == 4 * bench.scalar("SELECT count(*) FROM jobs")
    log = _rows(
        bench,
        "SELECT DISTINCT status, attempts, jsonb_array_length(attempt_log), "
        "attempt_log -> -1 ->> 'job_status', attempt_log -> 0 ->> 'outcome' FROM job_history ORDER BY 1, 2",
    )
    assert log == [
        ("cancelled", 0, 0, None, None),
        ("succeeded", 1, 1, "succeeded", "succeeded"),
        ("succeeded", 2, 2, "succeeded", "failed"),
    ]
    assert history.kept_jobs(bench) == 2 * HALF
    keys = "SELECT idempotency_key FROM jobs UNION ALL SELECT idempotency_key FROM job_history"
    assert bench.scalar(f"SELECT count(idempotency_key) = count(DISTINCT idempotency_key) FROM ({keys}) k")
    # Each half finishes within its own days (a job's message id is the md5 of its number).
    first_kept = today - KEEP
    halves = _rows(
        bench,
        "SELECT g <= :half AS kept, min(finished_at) AS first, max(finished_at) AS last FROM ("
        "  SELECT message_id, finished_at FROM jobs UNION ALL SELECT message_id, finished_at FROM job_history"
        ") j JOIN generate_series(1, 2 * :half) g ON j.message_id = md5(g::text) GROUP BY 1 ORDER BY 1",
        half=HALF,
    )
    prunable_half, kept_half = halves
    assert (prunable_half.kept, kept_half.kept) == (False, True)
    assert today - 2 * KEEP <= prunable_half.first <= prunable_half.last < first_kept
    assert first_kept <= kept_half.first <= kept_half.last < end
    sizes = history.sizes(bench)
    assert sizes["job_history"]["partitions"] == 15 + len(kept_days)
    assert sizes["job_history"]["rows"] == bench.scalar("SELECT count(*) FROM job_history")
    assert sizes["job_history"]["total_bytes"] > after_kept["job_history"]["total_bytes"] > 0
    assert {name: s["rows"] for name, s in after_kept.items()} == {
        "jobs": bench.scalar("SELECT count(*) FROM jobs WHERE finished_at >= :f", f=first_kept),
        "job_attempts": 4 * bench.scalar("SELECT count(*) FROM jobs WHERE finished_at >= :f", f=first_kept),
        "job_history": bench.scalar("SELECT count(*) FROM job_history WHERE finished_at >= :f", f=first_kept),
    }

    # A measurement's own jobs, one still in jobs and one a scheduler moved: a reset deletes both.
    with transaction(bench.settings) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, type, queue, status, payload, max_retries, created_at, updated_at) "
                "VALUES (gen_random_uuid(), 'unread_count', 'unread_count', 'queued', '{}', 3, "
                "clock_timestamp(), clock_timestamp())"
            )
        )
        copied = history.JOB_COLUMNS.replace("id, ", "gen_random_uuid(), ", 1).replace(
            "created_at", "clock_timestamp()"
        )
        conn.execute(
            sa.text(
                f"INSERT INTO job_history ({history.JOB_COLUMNS}, retry_base, attempt_log) "
                f"SELECT {copied}, retry_base, attempt_log FROM job_history LIMIT 1"
            )
        )
    assert history.kept_jobs(bench) == 2 * HALF
    assert bench.scalar(f"SELECT count(*) FROM job_history WHERE {bench.fresh()}") == 1
    bench.reset()
    assert bench.scalar(f"SELECT count(*) FROM job_history WHERE {bench.fresh()}") == 0
    assert bench.scalar(f"SELECT count(*) FROM jobs WHERE {bench.fresh()}") == 0
    assert history.kept_jobs(bench) == 2 * HALF

    # Kept 15 days: the prunable half's days go whole, the kept half's stay; dead jobs go by their age.
    dead = _rows(bench, "SELECT id, finished_at FROM jobs")
    moved = bench.scalar("SELECT count(*) FROM job_history WHERE finished_at >= :f", f=first_kept)
    pruned_from = history.db_now(bench)
    keep_s = KEEP.total_seconds()
    prune(
        history.unbounded(bench.settings).replace(
            retain_succeeded_s=keep_s, retain_cancelled_s=keep_s, retain_dead_s=keep_s
        )
    )
    pruned_to = history.db_now(bench)
    # The kept half's days stay; the pass also made tomorrow's day ahead (empty).
    assert [d for d in history.partitions(bench) if d <= kept_days[-1]] == kept_days
    assert bench.scalar("SELECT count(*) FROM job_history") == moved
    left = {row.id for row in _rows(bench, "SELECT id FROM jobs")}
    assert all(row.id not in left for row in dead if row.finished_at < pruned_from - KEEP)
    assert all(row.id in left for row in dead if row.finished_at >= pruned_to - KEEP)
    assert [d for d in history.partitions(bench) if finished.day_of(d) < (today - KEEP).date()] == []
    assert history.vacuum(bench, analyze=False) >= 0

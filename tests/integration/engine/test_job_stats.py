"""The job counters' arithmetic on real Postgres: duration buckets with Prometheus's `le` meaning,
totals that read the same before and after the rollup, and one rollup at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core.engine import stats as job_stats
from core.platform.db import get_engine, snapshot, transaction
from core.platform.settings import Settings
from core.platform.tables import job_attempts, jobs

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _attempt(
    settings: Settings,
    type_: str,
    seconds: float,
    outcome: str,
    job_status: str,
    end: datetime,
    *,
    before_0006: bool = False,
) -> None:
    """One finished attempt of a new job; ``before_0006``: written as before attempts recorded their
    type and the status they left (both are then worked out)."""
    job_id = uuid.uuid4()
    with transaction(settings) as conn:
        conn.execute(
            sa.insert(jobs).values(
                id=job_id,
                type=type_,
                queue=type_,
                status=job_status,
                payload={},
                max_retries=1,
                run_at=T0,
            )
        )
        conn.execute(
            sa.insert(job_attempts).values(
                job_id=job_id,
                number=1,
                type=None if before_0006 else type_,
                worker="w",
                started_at=end - timedelta(seconds=seconds),
                finished_at=end,
                outcome=outcome,
                job_status=None if before_0006 else job_status,
            )
        )


def _totals(settings: Settings) -> dict[job_stats.Key, job_stats.Tally]:
    with snapshot(settings) as conn:
        return dict(job_stats.totals(conn))


def test_durations_fall_in_the_bucket_whose_bound_they_do_not_exceed(settings: Settings) -> None:
    end = T0 + timedelta(seconds=30)
    # Exactly a bound: that bucket (and an attempt from before 0006, its type read from its job).
    _attempt(settings, "a", 0.1, "succeeded", "succeeded", end, before_0006=True)
    _attempt(settings, "a", 0.100001, "succeeded", "succeeded", end)  # a microsecond over: the next
    _attempt(settings, "a", 5000.0, "succeeded", "succeeded", end)  # past every bound: +Inf
    _attempt(settings, "a", 0.2, "failed", "dead", end)
    _attempt(settings, "a", 0.3, "failed", "retrying", end)
    _attempt(settings, "a", 0.3, "rate_limited", "retrying", end)
    live = _totals(settings)
    ok = live[("a", "succeeded", "succeeded")]
    bounds = job_stats.DURATION_BUCKETS_S
    assert ok.attempts == 3
    assert ok.buckets[bounds.index(0.1)] == 1
    assert ok.buckets[bounds.index(0.25)] == 1
    assert ok.buckets[-1] == 1
    assert abs(ok.duration_s - 5000.200001) < 1e-6
    counters = job_stats.counters(live)
    assert counters.finished == {("a", "succeeded"): 3, ("a", "dead"): 1}
    assert counters.retries == {"a": 1}  # the rate-limited wait is not a retry
    assert counters.attempts[("a", "failed")] == 2

    # Rolled up (an hour later), the totals read the same, and a second rollup changes nothing.
    with transaction(settings) as conn:
        assert job_stats.roll_up(conn, T0 + timedelta(hours=1)) is True
    assert _totals(settings) == live
    with transaction(settings) as conn:
        assert job_stats.roll_up(conn, T0 + timedelta(hours=1)) is False
    assert _totals(settings) == live
    with snapshot(settings) as conn:
        points = job_stats.per_minute(conn, T0 + timedelta(minutes=30))
    at_t0 = next(p for p in points if p.minute == T0)
    assert (at_t0.succeeded, at_t0.failed, at_t0.dead) == (3, 2, 1)


def test_a_rollup_in_progress_is_not_repeated_by_another_process(settings: Settings) -> None:
    _attempt(settings, "b", 0.01, "succeeded", "succeeded", T0)
    later = T0 + timedelta(hours=1)
    with get_engine(settings).connect() as first, first.begin():
        assert job_stats.roll_up(first, later) is True
        # While the first has not committed, a second reader skips the rollup instead of waiting or
        # folding the same minutes again.
        with transaction(settings) as second:
            assert job_stats.roll_up(second, later) is False
    assert _totals(settings)[("b", "succeeded", "succeeded")].attempts == 1

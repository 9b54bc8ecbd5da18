"""The retry policy (core/engine/retry.py): backoff within its bounds, and a postponement that waits
without spending the retry budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.catalog import load_job_types
from core.chats.unread import UnreadCountPayload
from core.engine.job_types import JobType, get_job_type
from core.engine.retry import decide, error_record, next_retry_at
from core.errors import Postponed
from core.platform.settings import Settings


def test_backoff_grows_and_stays_within_bounds() -> None:
    jt = JobType(name="t", payload=UnreadCountPayload, min_backoff_s=1, max_backoff_s=10)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for attempt in range(1, 12):
        delays = [(next_retry_at(jt, attempt, now) - now).total_seconds() for _ in range(50)]
        assert all(1 <= d <= 10 for d in delays)
    late = [(next_retry_at(jt, 10, now) - now).total_seconds() for _ in range(200)]
    assert max(late) > 5  # later attempts do wait longer


def test_a_postponement_waits_until_then_without_spending_the_budget() -> None:
    load_job_types(Settings())
    job_type = get_job_type("whatsapp_message")
    now = datetime(2026, 3, 10, 17, 30, tzinfo=UTC)
    until = now + timedelta(hours=10)
    error = error_record(Postponed(until, "quiet hours"))
    assert (error["code"], error["retryable"], error["postponed_until"]) == (
        "postponed",
        True,
        until.isoformat(),
    )
    # Even with the budget used up, a postponement is a free wait.
    d = decide(job_type, attempt=9, retry_base=0, max_retries=0, error=error, rate_limit_waits=99, now=now)
    assert (d.status, d.run_at, d.free, d.outcome) == ("retrying", until, True, "postponed")
    # A postponement to a moment already past cannot spin: it waits at least the minimum backoff.
    past = error_record(Postponed(now - timedelta(seconds=1)))
    d = decide(job_type, attempt=1, retry_base=0, max_retries=5, error=past, rate_limit_waits=0, now=now)
    assert d.run_at == now + timedelta(seconds=job_type.min_backoff_s)
